"""chunkseg evaluate / report-training: end to end against direct NumPy computations."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from chunkseg.cli import main
from chunkseg.engine.blocks import write_volume
from chunkseg.engine.reduce import compute, overlap_reduce
from chunkseg.errors import (
    DTypeError,
    FormatError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    ParameterError,
    ShapeError,
)
from chunkseg.io.store import create_image, mark_complete
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.ops.metrics import EvalSpec, block_statistics, threshold_array, volume_statistics
from chunkseg.pipeline.evaluate import run_evaluate
from chunkseg.pipeline.report_training import run_report_training

VS = (0.5, 0.2, 0.2)
SHAPE = (2, 11, 23, 19)
CHUNKS = (1, 5, 8, 7)  # do not divide the shape


def _labels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seeds = np.zeros(SHAPE[1:], np.uint32)
    pts = rng.integers(0, SHAPE[1:], size=(9, 3))
    seeds[tuple(pts.T)] = np.arange(1, 10)
    _, (iz, iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[iz, iy, ix]
    lab[:, :2] = 0  # unlabelled margin
    return lab


def _data(dtype=np.float32):
    labels = np.stack([_labels(s) for s in range(SHAPE[0])])
    mask = np.stack([membrane_mask(x) for x in labels])
    rng = np.random.default_rng(7)
    p = ndi.gaussian_filter(mask.astype(np.float64), (0, 0.6, 1.0, 1.0)) * 1.8 - 0.1
    p = np.clip(p + rng.normal(0, 0.15, SHAPE), 0, 1)
    prob = np.round(p * 255).astype(np.uint8) if dtype == np.uint8 else p.astype(dtype)
    return prob, mask, labels


def _store(path, arr, kind, **attrs):
    create_image(path, shape=arr.shape, dtype=arr.dtype, voxel_size=VS, chunks=CHUNKS,
                 shards=False, attrs={"kind": kind, **attrs})
    write_volume(da.from_array(arr, chunks=CHUNKS), path, progress=False)
    mark_complete(path)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("ev")
    prob, mask, labels = _data()
    return {"dir": d, "prob": prob, "mask": mask, "labels": labels,
            "p": _store(d / "prob.zarr", prob, "probability", model="stand-in", halo=[4, 8, 8]),
            "m": _store(d / "mask.zarr", mask, "mask"),
            "l": _store(d / "labels.zarr", labels, "labels")}


def _direct(p64, truth, t):
    pred, tr = p64 >= t, truth.astype(bool)
    return [int(np.sum(pred & tr)), int(np.sum(pred & ~tr)), int(np.sum(~pred & tr)),
            int(np.sum(~pred & ~tr))]


def _check_section(sec, p64, truth):
    sw = sec["sweep"]
    th = np.array(sw["threshold"])
    assert len(th) == 101
    for k in (0, 1, 13, 50, 71, 100):
        got = [sw["tp"][k], sw["fp"][k], sw["fn"][k], sw["tn"][k]]
        assert got == _direct(p64, truth, th[k])
    tp, fp, fn, tn = (np.array(sw[k]) for k in ("tp", "fp", "fn", "tn"))
    iou = tp / (tp + fp + fn)
    assert np.allclose(np.array(sw["iou"], float), iou, rtol=0, atol=0)
    assert sec["best"]["iou"]["threshold"] == th[int(np.argmax(iou))]
    assert sec["voxels"] == truth.size and sec["membrane_voxels"] == int(truth.sum())
    # boundary-tolerant precision / recall at 0.5
    cube = np.ones((1, 3, 3, 3) if truth.ndim == 4 else (3, 3, 3), bool)
    pred = p64 >= 0.5
    near_t = ndi.binary_dilation(truth.astype(bool), cube)
    near_p = ndi.binary_dilation(pred, cube)
    b = sec["boundary"]["at_0.5"]
    assert b["precision"] == np.sum(pred & near_t) / pred.sum()
    assert b["recall"] == np.sum(truth.astype(bool) & near_p) / truth.sum()
    # ECDF and heat map totals
    x = np.array(sec["ecdf"]["x"])
    j = int(np.searchsorted(x, 0.37))
    assert sec["ecdf"]["all"][j] == np.mean(p64 < x[j])
    assert np.sum(sec["heat_map"]["counts"]) == truth.size


def test_evaluate_end_to_end(stores, tmp_path):
    out = tmp_path / "rep"
    hist = tmp_path / "history.json"
    hist.write_text(json.dumps({"history": {"loss": [0.9, 0.5, 0.4], "val_loss": [1, 0.6, 0.5],
                                            "accuracy": [0.7, 0.8, 0.85]}, "best_epoch": 3}))
    rep = run_evaluate(stores["p"], truth=stores["m"], out=out, history=hist)
    prob, mask = stores["prob"], stores["mask"]
    _check_section(rep["overall"], prob.astype(np.float64), mask)
    for t in range(2):
        assert rep["per_timepoint"][t]["t"] == t
        _check_section(rep["per_timepoint"][t], prob[t].astype(np.float64), mask[t])
    saved = json.loads((out / "report.json").read_text())
    assert saved["overall"]["sweep"]["tp"] == rep["overall"]["sweep"]["tp"]
    assert saved["inputs"]["probability"]["attrs"]["model"] == "stand-in"
    assert saved["parameters"]["voxel_size_um"] == list(VS)
    page = (out / "report.html").read_text()
    for name in ("threshold_sweep.png", "ecdf.png", "heat_map.png", "per_timepoint.png",
                 "training_curves.png"):
        assert (out / name).stat().st_size > 10_000 and f'src="{name}"' in page
    assert "stand-in" in page
    with pytest.raises(OutputExistsError, match="report"):
        run_evaluate(stores["p"], truth=stores["m"], out=out)
    # another processing block, figures off: the same numbers
    rep2 = run_evaluate(stores["p"], truth=stores["m"], out=tmp_path / "b", block=(3, 7, 5),
                        figures=False)
    assert rep2["parameters"]["block"] == [3, 7, 5]
    assert rep2["overall"] == rep["overall"] and rep2["per_timepoint"] == rep["per_timepoint"]


def test_uint8_labels_timepoints_tiff(stores, tmp_path):
    d = stores["dir"]
    prob8, _, labels = _data(np.uint8)
    p8 = _store(tmp_path / "p8.zarr", prob8, "probability")
    rep = run_evaluate(p8, labels=stores["l"], timepoints="1:2", out=tmp_path / "r1",
                       figures=False)
    assert [s["t"] for s in rep["per_timepoint"]] == [1]
    _check_section(rep["overall"], prob8[1] / 255.0, membrane_mask(labels[1]))
    assert not (tmp_path / "r1" / "report.html").exists()
    tif = tmp_path / "mask.tif"
    tifffile.imwrite(tif, stores["mask"][0])
    p1 = _store(tmp_path / "p1.zarr", stores["prob"][:1], "probability")
    rep = run_evaluate(p1, truth=tif, out=tmp_path / "r2", figures=False, voxel_size=VS)
    _check_section(rep["overall"], stores["prob"][0].astype(np.float64), stores["mask"][0])
    assert d.exists()


def test_instances_section(stores, tmp_path):
    rep = run_evaluate(stores["p"], truth=stores["m"], labels=stores["l"], cells=stores["l"],
                       out=tmp_path / "r", figures=False)
    assert rep["instances"]["per_timepoint"][0]["f1"] == 1.0


class _Tracked:
    """Array-like that records the largest region ever read from it."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim, self.largest = a, a.shape, a.dtype, a.ndim, 0

    def __getitem__(self, key):
        out = self.a[key]
        self.largest = max(self.largest, out.size)
        return out


def test_streaming_pass_never_materialises(stores):
    prob, mask = stores["prob"][0], stores["mask"][0]
    spec = EvalSpec.make(thresholds=threshold_array(101), dtype=prob.dtype, voxel_size=VS,
                         max_distance=0.6)
    tp, tm = _Tracked(prob), _Tracked(mask)
    chunks = (4, 6, 5)
    seen = []

    def fn(p, t):
        seen.append(max(p.size, t.size))
        return block_statistics(p, t, spec)

    red = overlap_reduce(fn, [da.from_array(tp, chunks=chunks, fancy=False),
                              da.from_array(tm, chunks=chunks, fancy=False)],
                         depths=[spec.halo_prob, spec.halo_truth])
    (got,) = compute([red], None)
    ref = volume_statistics(prob, mask, spec)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k])
    block = int(np.prod(chunks))
    assert max(tp.largest, tm.largest) <= block
    ext = np.prod([c + 2 * h for c, h in zip(chunks, spec.halo_truth)])
    assert max(seen) <= ext < prob.size


def test_errors(stores, tmp_path):
    d = stores["dir"]
    with pytest.raises(ParameterError, match="neither"):
        run_evaluate(stores["p"], out=tmp_path / "a")
    bad = stores["prob"].copy()
    bad[0, 0, 0, 0] = 1.5
    pb = _store(tmp_path / "bad.zarr", bad, "probability")
    with pytest.raises(InputError, match=r"\[0, 1\]; found 1 voxels"):
        run_evaluate(pb, truth=stores["m"], out=tmp_path / "b", figures=False)
    with pytest.raises(InputError, match="0/1 membrane mask; found"):
        run_evaluate(stores["p"], truth=stores["l"], out=tmp_path / "c", figures=False)
    small = _store(tmp_path / "small.zarr", stores["prob"][:, :5], "probability")
    with pytest.raises(ShapeError, match="differs"):
        run_evaluate(small, truth=stores["m"], out=tmp_path / "d")
    one = _store(tmp_path / "one.zarr", stores["mask"][:1], "mask")
    with pytest.raises(ShapeError, match="time points"):
        run_evaluate(stores["p"], truth=one, out=tmp_path / "d2")
    p16 = _store(tmp_path / "p16.zarr", stores["mask"].astype(np.uint16), "probability")
    with pytest.raises(DTypeError, match="uint8"):
        run_evaluate(p16, truth=stores["m"], out=tmp_path / "e")
    fm = _store(tmp_path / "fm.zarr", stores["mask"].astype(np.float32), "mask")
    with pytest.raises(DTypeError, match="0/1 membrane mask"):
        run_evaluate(stores["p"], truth=fm, out=tmp_path / "f")
    with pytest.raises(ParameterError, match="labels"):
        run_evaluate(stores["p"], truth=stores["m"], cells=stores["l"], out=tmp_path / "g")
    with pytest.raises(ParameterError, match="thresholds"):
        run_evaluate(stores["p"], truth=stores["m"], thresholds=[0.5, 2], out=tmp_path / "h")
    with pytest.raises(ParameterError, match="timepoints"):
        run_evaluate(stores["p"], truth=stores["m"], timepoints="1:5", out=tmp_path / "i")
    with pytest.raises(ParameterError, match="max_distance"):
        run_evaluate(stores["p"], truth=stores["m"], max_distance=-1, out=tmp_path / "j")
    assert d.exists()


def test_offset_truth_from_predict_attrs(stores, tmp_path):
    """A prediction of time point 1 only is scored against time point 1 of the truth."""
    p = _store(tmp_path / "p.zarr", stores["prob"][1:], "probability",
               predict={"timepoints": [1, 2]})
    rep = run_evaluate(p, truth=stores["m"], out=tmp_path / "r", figures=False)
    assert rep["per_timepoint"][0]["t"] == 1
    _check_section(rep["overall"], stores["prob"][1].astype(np.float64), stores["mask"][1])


def test_cli_and_report_training(stores, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["evaluate", str(stores["p"]), "--truth", str(stores["m"]), "--out", str(out),
                 "--no-figures", "--scheduler", "sync", "--thresholds", "201"]) == 0
    assert "best IoU" in capsys.readouterr().out
    assert len(json.loads((out / "report.json").read_text())["overall"]["sweep"]["iou"]) == 201
    assert main(["evaluate", str(stores["p"]), "--out", str(tmp_path / "x")]) == 2
    assert "neither" in capsys.readouterr().err
    h = tmp_path / "hist.json"
    h.write_text(json.dumps({"loss": [1.0, 0.5], "accuracy": [0.5, 0.9]}))
    assert main(["report-training", str(h)]) == 0
    assert (tmp_path / "training_curves.png").stat().st_size > 5_000
    with pytest.raises(OutputExistsError):
        run_report_training(h)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="invalid JSON"):
        run_report_training(bad, out=tmp_path / "b.png")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(FormatError, match="expected"):
        run_report_training(bad, out=tmp_path / "b.png")
    with pytest.raises(InputNotFoundError):
        run_report_training(tmp_path / "missing.json")
