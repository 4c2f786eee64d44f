"""Instance metrics: skimage references, blockwise accumulation, matching, report on stores."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from chunkseg.engine.blocks import write_volume
from chunkseg.errors import DTypeError, ParameterError, ShapeError
from chunkseg.io.store import create_image, mark_complete
from chunkseg.ops.instance_metrics import (
    combine_contingency, contingency, instance_scores, match_scores,
)
from chunkseg.engine.instances import instance_report


def _pair(seed=0, shape=(10, 24, 20)):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, shape).astype(np.uint16)
    truth = np.repeat(np.repeat(truth[:, ::4, ::4], 4, 1), 4, 2)[:, :shape[1], :shape[2]]
    pred = truth.astype(np.uint32) * 7 + 3
    pred[:, :, :5] = 99  # a merge
    pred[2:5] = rng.integers(0, 4, pred[2:5].shape)  # noise and unassigned voxels
    return truth, pred


def test_rand_and_vi_equal_skimage():
    truth, pred = _pair()
    s = instance_scores(contingency(truth, pred))
    are, prec, rec = adapted_rand_error(truth, pred, ignore_labels=(0,))
    assert s["adapted_rand_error"] == pytest.approx(are, rel=1e-12)
    # skimage divides its "precision" by the truth pair count; we use the SNEMI3D naming
    # (precision over pairs joined in the prediction), so the two are swapped
    assert s["rand_precision"] == pytest.approx(rec) and s["rand_recall"] == pytest.approx(prec)
    split, merge = variation_of_information(truth, pred, ignore_labels=(0,))
    assert s["vi_split"] == pytest.approx(split, abs=1e-12)
    assert s["vi_merge"] == pytest.approx(merge, abs=1e-12)
    assert s["voxels"] == int((truth != 0).sum())


def test_blockwise_table_equals_whole():
    truth, pred = _pair(1)
    whole = contingency(truth, pred)
    parts = [contingency(truth[z:z + 3, y:y + 7], pred[z:z + 3, y:y + 7])
             for z in range(0, 10, 3) for y in range(0, 24, 7)]
    np.testing.assert_array_equal(combine_contingency(parts), whole)


def _brute_matching(truth, pred, iou):
    tids = [t for t in np.unique(truth) if t]
    lab = truth != 0
    pids = [p for p in np.unique(pred[lab]) if p]
    tp = 0
    for t in tids:
        for p in pids:
            a, b = (truth == t), (pred == p) & lab
            if (a & b).sum() / (a | b).sum() > iou:
                tp += 1
    return tp, len(tids), len(pids)


@pytest.mark.parametrize("iou", [0.5, 0.75])
def test_matching_equals_brute_force(iou):
    truth, pred = _pair(2)
    m = match_scores(contingency(truth, pred), iou=iou)
    tp, nt, npred = _brute_matching(truth, pred, iou)
    assert (m["tp"], m["fn"], m["fp"]) == (tp, nt - tp, npred - tp)
    assert m["f1"] == pytest.approx(2 * tp / (nt + npred))


def test_perfect_and_permuted():
    truth, _ = _pair(3)
    perm = np.random.default_rng(0).permutation(100).astype(np.uint32) + 1
    s = instance_scores(contingency(truth, perm[truth]))
    assert s["f1"] == 1 and s["ap"] == 1 and s["adapted_rand_error"] == pytest.approx(0)
    assert s["vi"] == pytest.approx(0, abs=1e-12)


def test_unlabelled_truth_voxels_are_ignored():
    truth, pred = _pair(4)
    other = pred.copy()
    other[truth == 0] = 12345  # anything predicted in unlabelled voxels does not count
    a = instance_scores(contingency(truth, pred))
    b = instance_scores(contingency(truth, other))
    assert {k: v for k, v in a.items() if k != "matching"} == {
        k: v for k, v in b.items() if k != "matching"}


def test_bad_input():
    with pytest.raises(ShapeError):
        contingency(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ParameterError):
        match_scores(np.array([[1, 1, 3]], np.uint64), iou=0.3)
    with pytest.raises(ShapeError, match="no labelled"):
        instance_scores(contingency(np.zeros((3, 3), int), np.ones((3, 3), int)))


def _store(path, arr, chunks):
    create_image(path, shape=arr.shape, dtype=arr.dtype, chunks=chunks, attrs={"kind": "labels"})
    write_volume(da.from_array(arr), path, progress=False)
    mark_complete(path)
    return path


def test_instance_report_on_stores(tmp_path):
    truth, pred = _pair(5)
    t4 = np.stack([truth, truth])
    p4 = np.stack([pred, truth.astype(np.uint32)])
    tp = _store(tmp_path / "t.zarr", t4, (3, 7, 6))
    pp = _store(tmp_path / "p.zarr", p4, (4, 10, 9))
    r = instance_report(pp, tp)
    ref = instance_scores(contingency(truth, pred))
    assert r["per_timepoint"][0]["adapted_rand_error"] == pytest.approx(ref["adapted_rand_error"])
    assert r["per_timepoint"][1]["f1"] == 1
    assert r["f1"] == pytest.approx((ref["f1"] + 1) / 2)
    one = instance_report(pp, tp, timepoints="1:2")
    assert one["f1"] == 1 and one["timepoints"] == [1, 2]
    with pytest.raises(ShapeError):
        instance_report(pp, _store(tmp_path / "s.zarr", t4[:, :5], (3, 5, 5)))
    with pytest.raises(DTypeError):
        instance_report(_store(tmp_path / "f.zarr", p4.astype(np.float32), (4, 10, 9)), tp)
