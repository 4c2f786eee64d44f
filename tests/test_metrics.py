"""chunkseg.ops.metrics and chunkseg.engine.reduce against direct NumPy computations."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

from chunkseg.engine.reduce import compute, overlap_reduce
from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.metrics import (
    EvalSpec,
    auc_scores,
    best_thresholds,
    block_statistics,
    boundary_scores,
    confusion_at,
    distance_halo,
    ecdf,
    scores_from_counts,
    threshold_array,
    truth_distance,
    volume_statistics,
)

VS = (0.4, 0.13, 0.1)


def _volume(seed=0, shape=(13, 22, 19), dtype=np.float32):
    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, np.uint8)
    truth[:, 7, :] = 1
    truth[4, :, :] = 1
    truth[:, :, 11] = 1
    truth &= rng.random(shape) > 0.1
    blur = ndi.gaussian_filter(truth.astype(np.float64), 1.0) * 2.5
    p = np.clip(blur + rng.normal(0, 0.15, shape), 0, 1)
    if dtype == np.uint8:
        return np.round(p * 255).astype(np.uint8), truth
    p = p.astype(dtype)
    # values exactly on thresholds, and float32 values next to a float64 threshold
    flat = p.reshape(-1)
    flat[:50] = np.linspace(0, 1, 101)[:50]
    flat[50:60] = np.float32(0.3)
    flat[60:70] = np.nextafter(np.float32(0.3), np.float32(0))
    flat[70:75] = 1.0
    flat[75:80] = 0.0
    return p, truth


def _prob64(p):
    return p / 255.0 if p.dtype == np.uint8 else p.astype(np.float64)


def _direct(p, truth, thresholds):
    p64, t = _prob64(p), truth.astype(bool)
    rows = []
    for th in thresholds:
        pred = p >= th if p.dtype != np.uint8 else p64 >= th
        rows.append([np.sum(pred & t), np.sum(pred & ~t), np.sum(~pred & t), np.sum(~pred & ~t)])
    return np.array(rows, np.int64).T


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.float64])
def test_confusion_counts_exact(dtype):
    p, truth = _volume(dtype=dtype)
    th = threshold_array(101)
    spec = EvalSpec.make(thresholds=th, dtype=p.dtype, voxel_size=VS)
    stats = volume_statistics(p, truth, spec)
    c = confusion_at(stats["hist"], spec.grid, th)
    np.testing.assert_array_equal(np.stack([c["tp"], c["fp"], c["fn"], c["tn"]]),
                                  _direct(p, truth, th))
    s = scores_from_counts(c["tp"], c["fp"], c["fn"], c["tn"])
    k = 30  # threshold 0.3
    tp, fp, fn, tn = _direct(p, truth, [0.3])[:, 0]
    assert s["iou"][k] == tp / (tp + fp + fn)
    assert s["dice"][k] == 2 * tp / (2 * tp + fp + fn)
    assert s["accuracy"][k] == (tp + tn) / p.size
    assert s["precision"][k] == tp / (tp + fp)
    assert s["recall"][k] == tp / (tp + fn)
    assert s["specificity"][k] == tn / (tn + fp)
    assert int(stats["voxels"][0]) == p.size and stats["bad"].tolist() == [0, 0]


def test_custom_thresholds_and_ecdf():
    p, truth = _volume(seed=3)
    th = threshold_array([0.05, 0.3, 0.123456789, 0.3000001, 1.0])
    spec = EvalSpec.make(thresholds=th, dtype=p.dtype, voxel_size=VS)
    stats = volume_statistics(p, truth, spec)
    c = confusion_at(stats["hist"], spec.grid, th)
    np.testing.assert_array_equal(np.stack([c["tp"], c["fp"], c["fn"], c["tn"]]),
                                  _direct(p, truth, th))
    e = ecdf(stats["hist"], spec.grid)
    for j in (0, 17, 300, spec.grid.size - 1):
        x = spec.grid[j]
        assert e["all"][j] == np.mean(p < x)
        assert e["membrane"][j] == np.mean(p[truth == 1] < x)
        assert e["background"][j] == np.mean(p[truth == 0] < x)
    with pytest.raises(ParameterError, match="grid"):
        confusion_at(stats["hist"], spec.grid, np.array([0.1234567]))


def test_scores_zero_denominators_and_best():
    s = scores_from_counts([0, 5, 5], [0, 0, 5], [0, 5, 0], [10, 0, 0])
    assert np.isnan(s["iou"][0]) and np.isnan(s["precision"][0]) and s["accuracy"][0] == 1
    b = best_thresholds(np.array([0.1, 0.5, 0.9]), {"iou": np.array([np.nan, 0.5, 0.5]),
                                                    "dice": np.array([np.nan] * 3)})
    assert b["iou"] == {"threshold": 0.5, "value": 0.5}
    assert b["dice"] == {"threshold": None, "value": None}


def test_boundary_tolerant_scores_exact():
    p, truth = _volume(seed=5)
    th = threshold_array(101)
    spec = EvalSpec.make(thresholds=th, dtype=p.dtype, voxel_size=VS)
    stats = volume_statistics(p, truth, spec)
    b = boundary_scores(stats, spec.grid, th)
    cube = np.ones((3, 3, 3), bool)
    near_truth = ndi.binary_dilation(truth.astype(bool), cube)
    for k in (0, 10, 50, 77, 100):
        pred = p >= th[k]
        near_pred = ndi.binary_dilation(pred, cube)
        assert b["predicted"][k] == pred.sum()
        assert b["predicted_near_truth"][k] == np.sum(pred & near_truth)
        assert b["truth_near_predicted"][k] == np.sum(truth.astype(bool) & near_pred)
        if pred.sum():
            assert b["precision"][k] == np.sum(pred & near_truth) / pred.sum()
        assert b["recall"][k] == np.sum(truth.astype(bool) & near_pred) / truth.sum()


def test_truth_distance_matches_edt():
    _, truth = _volume(seed=1)
    cap = 1.0
    d = truth_distance(truth, voxel_size=VS, max_distance=cap)
    ref = ndi.distance_transform_edt(truth == 0, sampling=VS)
    ok = ref <= cap
    np.testing.assert_array_equal(d[ok], ref[ok])
    assert np.all(np.isinf(d[~ok]))
    assert np.all(np.isinf(truth_distance(np.zeros((3, 4, 5)), voxel_size=VS, max_distance=1)))
    assert distance_halo((0.4, 0.13, 0.1), 1.0) == (3, 8, 11)
    with pytest.raises(ParameterError, match="max_distance"):
        distance_halo(VS, 0)


def test_heat_map_counts():
    p, truth = _volume(seed=2)
    spec = EvalSpec.make(thresholds=threshold_array(101), dtype=p.dtype, voxel_size=VS,
                         max_distance=0.8, prob_bins=10)
    stats = volume_statistics(p, truth, spec)
    heat = stats["heat"]
    assert heat.shape == (10, spec.dist_edges.size) and heat.sum() == p.size
    ref = ndi.distance_transform_edt(truth == 0, sampling=VS)
    assert heat[:, -1].sum() == np.sum(ref > 0.8)
    assert heat[:, 0].sum() == np.sum(ref < spec.dist_edges[1])
    pbin = np.minimum((p.astype(np.float64) * 10).astype(int), 9)
    assert np.array_equal(heat.sum(1), np.bincount(pbin.ravel(), minlength=10))


@pytest.mark.parametrize("chunks", [(5, 7, 6), (13, 4, 19), (3, 22, 5)])
def test_chunked_equals_in_memory(chunks):
    """Odd chunks, halos larger than chunks: every histogram equals the in-memory one."""
    p, truth = _volume(seed=4)
    spec = EvalSpec.make(thresholds=threshold_array(101), dtype=p.dtype, voxel_size=VS,
                         max_distance=1.1)
    ref = volume_statistics(p, truth, spec)
    dp, dt = da.from_array(p, chunks=chunks), da.from_array(truth, chunks=chunks)
    red = overlap_reduce(lambda a, b: block_statistics(a, b, spec), [dp, dt],
                         depths=[spec.halo_prob, spec.halo_truth])
    (got,) = compute([red])
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def test_chunked_distance_equals_whole_volume():
    _, truth = _volume(seed=6, shape=(17, 30, 26))
    cap, chunks = 0.6, (4, 9, 7)
    halo = distance_halo(VS, cap)
    whole = ndi.distance_transform_edt(truth == 0, sampling=VS)
    dt = da.from_array(truth, chunks=chunks)
    got = da.map_overlap(lambda b: truth_distance(b, voxel_size=VS, max_distance=cap), dt,
                         depth=dict(enumerate(halo)), boundary=0, trim=True,
                         dtype=np.float64).compute()
    ok = whole <= cap
    assert 0.05 < ok.mean() < 0.95  # both exact and capped distances occur
    np.testing.assert_array_equal(got[ok], whole[ok])  # bit-equal (same nearest distance)
    assert np.all(np.isinf(got[~ok]))


def test_bad_values_counted_and_parameters():
    p, truth = _volume(seed=7)
    p = p.copy()
    p.flat[0], p.flat[1] = np.nan, 1.5
    t = truth.copy()
    t.flat[2] = 3
    spec = EvalSpec.make(thresholds=threshold_array(11), dtype=p.dtype, voxel_size=VS)
    assert volume_statistics(p, t, spec)["bad"].tolist() == [2, 1]
    with pytest.raises(ParameterError, match="at least 2"):
        threshold_array(1)
    with pytest.raises(ParameterError, match=r"\[0, 1\]"):
        threshold_array([0.5, 1.2])
    with pytest.raises(ParameterError, match="uint8"):
        EvalSpec.make(thresholds=threshold_array(11), dtype=np.uint16, voxel_size=VS)
    with pytest.raises(ParameterError, match="voxel_size"):
        EvalSpec.make(thresholds=threshold_array(11), dtype=np.float32, voxel_size=(1, 0, 1))
    with pytest.raises(ShapeError, match="one shape"):
        overlap_reduce(np.sum, [da.zeros((4, 4, 4)), da.zeros((4, 4, 5))])


def test_auc_scores_uint8_exact():
    p, truth = _volume(seed=8, dtype=np.uint8)
    spec = EvalSpec.make(thresholds=threshold_array(101), dtype=p.dtype, voxel_size=VS)
    got = auc_scores(volume_statistics(p, truth, spec)["hist"])
    v1, v0 = p[truth == 1].astype(np.int64), p[truth == 0].astype(np.int64)
    c1, c0 = np.bincount(v1, minlength=256), np.bincount(v0, minlength=256)
    below = np.cumsum(c0) - c0
    auc = np.sum(c1 * (below + 0.5 * c0)) / (v1.size * v0.size)
    assert np.isclose(got["roc_auc"], auc, rtol=1e-12)
    ap = 0.0  # scikit-learn's average precision, thresholds at the stored values
    for v in np.unique(v1):
        ap += np.sum(v1 == v) / v1.size * np.sum(v1 >= v) / (np.sum(v1 >= v) + np.sum(v0 >= v))
    assert np.isclose(got["average_precision"], ap, rtol=1e-12)
    assert auc_scores(np.zeros((2, 5)))["roc_auc"] is None
