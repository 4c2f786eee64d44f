"""Intensity scaling and exact percentiles (ops layer)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from chunkseg.errors import DTypeError, InputError, ParameterError
from chunkseg.ops.normalize import (
    check_percentiles,
    histogram_float,
    histogram_uint,
    merge_histograms,
    percentiles_from_histogram,
    scale_to_uint8,
)


def _exact_reference(x, low, high):
    """Round half up of clip(255 (x - low) / (high - low), 0, 255), in exact rationals."""
    out = []
    for v in np.asarray(x).ravel().tolist():
        r = Fraction(255) * (Fraction(v) - Fraction(low)) / (Fraction(high) - Fraction(low))
        r = min(max(r, Fraction(0)), Fraction(255))
        out.append(int((r + Fraction(1, 2)).__floor__()))
    return np.array(out, dtype=np.uint8).reshape(np.shape(x))


@pytest.mark.parametrize("low, high", [(0, 493), (100, 610), (3, 4), (0, 510), (0, 65535),
                                       (-7, 1000)])
def test_scale_exact_round_half_up_all_uint16(low, high):
    x = np.arange(0, 65536, dtype=np.uint16)
    sel = x[(x >= max(low - 3, 0)) & (x <= high + 3)][:4000]   # the interesting part
    got = scale_to_uint8(x, low, high)
    np.testing.assert_array_equal(got[sel], _exact_reference(sel, low, high))
    assert got[: max(low, 0)].max(initial=0) == 0 and got[high:].min() == 255


def test_scale_ties_go_up_and_paper_formula():
    # 255 * 1 / 510 = 0.5 exactly -> 1 ; 255 * 3 / 510 = 1.5 -> 2
    np.testing.assert_array_equal(scale_to_uint8(np.array([1, 3, 509], np.uint16), 0, 510),
                                  [1, 2, 255])
    x = np.array([0, 1, 2, 3, 4], np.uint16)
    np.testing.assert_array_equal(scale_to_uint8(x, 0, 4), [0, 64, 128, 191, 255])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                   np.int64, np.float32, np.float64])
def test_scale_same_result_for_every_dtype(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    lo, hi = (max(info.min, -100), min(info.max, 400)) if info else (-100, 400)
    x = rng.integers(lo, hi, size=(7, 9, 11), endpoint=True).astype(dtype)
    got = scale_to_uint8(x, 12, 251)
    assert got.dtype == np.uint8 and got.shape == x.shape
    np.testing.assert_array_equal(got, _exact_reference(x.astype(np.int64), 12, 251))


def test_scale_float_range_and_specials():
    x = np.array([np.nan, -np.inf, np.inf, 0.25, 0.75, 2.0], np.float32)
    np.testing.assert_array_equal(scale_to_uint8(x, 0.25, 1.25), [0, 0, 255, 0, 128, 255])
    # large float block takes the slab path
    big = np.linspace(0, 1, 3_000_001)
    np.testing.assert_array_equal(scale_to_uint8(big, 0, 1)[[0, 1_500_000, -1]], [0, 128, 255])


@pytest.mark.parametrize("low, high, match", [(5, 5, "zero range"), (6, 5, "low < high"),
                                              (0, np.inf, "finite"), (np.nan, 3, "finite")])
def test_scale_bad_range(low, high, match):
    with pytest.raises(ParameterError, match=match):
        scale_to_uint8(np.zeros(3, np.uint16), low, high)


def test_scale_bad_dtype():
    with pytest.raises(DTypeError, match="complex128"):
        scale_to_uint8(np.zeros(3, complex), 0, 1)


@pytest.mark.parametrize("ps, match", [((-1, 50), r"\[0, 100\]"), ((0, 100.5), r"\[0, 100\]"),
                                       ((99, 1), "ascending"), ((), "at least one"),
                                       ((np.nan, 1), r"\[0, 100\]")])
def test_bad_percentiles(ps, match):
    with pytest.raises(ParameterError, match=match):
        check_percentiles(ps)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.uint32, np.int32,
                                   np.uint64, np.int64])
def test_percentiles_from_merged_histograms_equal_numpy(dtype):
    rng = np.random.default_rng(2)
    ps = [0, 0.1, 1, 25, 50, 73.3, 99, 99.9, 99.99, 100]
    info = np.iinfo(dtype)
    for trial in range(40):
        n = int(rng.integers(1, 2000))
        hi = int(min(info.max, rng.choice([2, 300, 70_000, 2**62])))
        lo = max(info.min, -hi)
        x = rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64).astype(dtype)
        parts = np.array_split(x, int(rng.integers(1, 7)))
        hist = merge_histograms([histogram_uint(p) for p in parts])
        got = percentiles_from_histogram(hist, ps)
        np.testing.assert_array_equal(got, np.percentile(x, ps), err_msg=f"trial {trial}")


def test_histogram_errors():
    with pytest.raises(DTypeError, match="float32"):
        histogram_uint(np.zeros(3, np.float32))
    with pytest.raises(InputError, match="empty"):
        merge_histograms([histogram_uint(np.zeros(0, np.uint16))])
    with pytest.raises(InputError, match="empty"):
        percentiles_from_histogram((np.zeros(0, np.uint16), np.zeros(0, np.int64)), [50])


def test_histogram_float_bins():
    x = np.array([0.0, 0.5, 0.99, 1.0, 2.0])
    np.testing.assert_array_equal(histogram_float(x, 0.0, 2.0, 4), [1, 2, 1, 1])
    np.testing.assert_array_equal(histogram_float(np.ones(3), 1.0, 1.0, 4), [3, 0, 0, 0])


# --------------------------------------------------------------------------- chunked pipeline

import dask.array as da  # noqa: E402
import tifffile  # noqa: E402

from chunkseg.cli import main  # noqa: E402
from chunkseg.engine.stats import intensity_histogram, percentiles  # noqa: E402
from chunkseg.io.store import create_image, mark_complete, open_volume, read_attrs  # noqa: E402
from chunkseg.engine.blocks import write_volume  # noqa: E402
from chunkseg.pipeline.normalize import run_normalize  # noqa: E402

PS = (0.0, 99.99)


def _store(path, x, chunks=(5, 7, 11), attrs=None):
    """An OME-Zarr volume with odd, unsharded chunks (dask sees exactly these chunks)."""
    create_image(path, shape=x.shape, dtype=x.dtype, chunks=chunks, shards=False,
                 attrs={"kind": "raw", **(attrs or {})})
    write_volume(da.from_array(x), path, progress=False)
    mark_complete(path)
    return path


@pytest.fixture(scope="module")
def raw4d():
    rng = np.random.default_rng(7)
    x = rng.gamma(1.3, 70.0, (3, 13, 29, 37)).astype(np.uint16)
    x[1] += 40  # time points differ
    x[2, 5, 6, 7] = 9000  # a hot pixel in the tail
    return x


def test_streaming_percentiles_equal_numpy_on_odd_chunks(raw4d):
    d = da.from_array(raw4d, chunks=(2, 5, 7, 11))
    ps = [0, 0.5, 50, 99, 99.9, 99.99, 100]
    r = percentiles(d, ps, per_timepoint=True)
    assert r["values"] == np.percentile(raw4d, ps).tolist()
    assert r["method"] == "exact" and r["error_bound"] == 0 and r["n"] == raw4d.size
    for t in range(raw4d.shape[0]):
        assert r["per_timepoint"][t] == np.percentile(raw4d[t], ps).tolist()


def test_float_percentiles_within_stated_bound(raw4d):
    x = raw4d.astype(np.float32) * np.float32(0.173) - 3
    ps = [0, 1, 50, 99.99, 100]
    h = intensity_histogram(da.from_array(x, chunks=(1, 6, 10, 10)), bins=4096)
    assert h.method == "binned"
    assert h.error_bound == pytest.approx((x.max() - x.min()) / 4096)
    err = np.abs(h.percentiles(ps) - np.percentile(x, ps))
    assert (err <= h.error_bound).all(), err


def test_float_nan_inf_rejected_with_count(tmp_path):
    x = np.ones((1, 4, 5, 6), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="2 NaN/Inf voxels of 120"):
        intensity_histogram(da.from_array(x, chunks=(1, 2, 2, 2)), name="x.tif")


def test_run_normalize_equals_in_memory_reference(tmp_path, raw4d):
    src = _store(tmp_path / "raw.ome.zarr", raw4d)
    out = tmp_path / "norm.ome.zarr"
    s = run_normalize(src, out, percentiles=PS, chunks=(4, 9, 10), progress=False)
    low, high = np.percentile(raw4d, PS)
    assert (s["low"], s["high"]) == (low, high)
    vol = open_volume(out)
    assert vol.dtype == np.uint8 and vol.attrs["kind"] == "normalized"
    np.testing.assert_array_equal(vol.data.compute(), scale_to_uint8(raw4d, low, high))
    norm = read_attrs(out)["normalization"]
    assert (norm["low"], norm["high"], norm["percentiles"]) == (low, high, list(PS))
    assert norm["percentile_method"] == "exact" and norm["per_timepoint"] is False


def test_per_timepoint_and_fixed_range(tmp_path, raw4d):
    src = _store(tmp_path / "raw.ome.zarr", raw4d)
    out = tmp_path / "pt.ome.zarr"
    s = run_normalize(src, out, percentiles=(1, 99), per_timepoint=True, progress=False)
    got = open_volume(out).data.compute()
    for t in range(raw4d.shape[0]):
        lo, hi = np.percentile(raw4d[t], (1, 99))
        assert s["per_timepoint"][t] == [lo, hi]
        np.testing.assert_array_equal(got[t], scale_to_uint8(raw4d[t], lo, hi))
    assert read_attrs(out)["normalization"]["lows"] == [p[0] for p in s["per_timepoint"]]
    out2 = tmp_path / "fixed.ome.zarr"
    s2 = run_normalize(src, out2, range=(10, 493), progress=False)
    assert "percentile_values" not in s2  # no percentile pass needed
    np.testing.assert_array_equal(open_volume(out2).data.compute(),
                                  scale_to_uint8(raw4d, 10, 493))
    assert read_attrs(out2)["normalization"]["method"] == "range"


def test_drop_slices_recorded_in_original_numbering(tmp_path, raw4d):
    src = _store(tmp_path / "raw.ome.zarr", raw4d[:, 2:], attrs={"dropped_slices": [0, 1]})
    out = tmp_path / "d.ome.zarr"
    s = run_normalize(src, out, drop_slices="0,3-4", progress=False)
    kept = raw4d[:, 2:][:, [z for z in range(11) if z not in (0, 3, 4)]]
    low, high = np.percentile(kept, PS)
    np.testing.assert_array_equal(open_volume(out).data.compute(),
                                  scale_to_uint8(kept, low, high))
    assert s["dropped_slices"] == read_attrs(out)["dropped_slices"] == [0, 1, 2, 5, 6]


def test_plot_only_and_png(tmp_path, raw4d):
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, raw4d[0])
    png = tmp_path / "fig" / "curve.png"
    s = run_normalize(tif, plot=png)
    assert "out" not in s and s["percentile_values"] == np.percentile(raw4d[0], PS).tolist()
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert not list(tmp_path.glob("*.zarr"))


def test_cli(tmp_path, raw4d, capsys):
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, raw4d[1])
    assert main(["normalize", str(tif), "--percentiles", "1", "99"]) == 0
    assert json_loads(capsys.readouterr().out)["high"] == np.percentile(raw4d[1], 99)
    out = tmp_path / "n.ome.zarr"
    assert main(["normalize", str(tif), "--out", str(out), "--range", "0", "493"]) == 0
    assert main(["normalize", str(tif), "--out", str(out), "--range", "0", "493"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["normalize", str(tif), "--percentiles", "99", "1"]) == 2
    assert "ascending" in capsys.readouterr().err


def json_loads(text):
    import json

    return json.loads(text)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"range": (493, 0)}, ParameterError, "low < high"),
    ({"range": (0, 1, 2)}, ParameterError, r"\(low, high\)"),
    ({"percentiles": (-1, 99)}, ParameterError, r"\[0, 100\]"),
    ({"percentiles": (0, 101)}, ParameterError, r"\[0, 100\]"),
    ({"percentiles": (99, 1)}, ParameterError, "ascending"),
    ({"percentiles": (1, 50, 99)}, ParameterError, "two values"),
    ({"drop_slices": "0,40"}, ParameterError, "out of range"),
    ({"range": (0, 9), "per_timepoint": True}, ParameterError, "one or the other"),
])
def test_run_normalize_bad_parameters(tmp_path, raw4d, kwargs, err, match):
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, raw4d[0])
    with pytest.raises(err, match=match):
        run_normalize(tif, tmp_path / "o.ome.zarr", **kwargs)
    assert not (tmp_path / "o.ome.zarr").exists()


def test_constant_volume_zero_range(tmp_path):
    tif = tmp_path / "flat.tif"
    tifffile.imwrite(tif, np.full((4, 5, 6), 100, np.uint16))
    with pytest.raises(ParameterError, match="zero intensity range.*100"):
        run_normalize(tif, tmp_path / "o.ome.zarr")
    assert run_normalize(tif)["low"] == 100  # printing the percentiles still works
    x = np.full((2, 6, 9, 10), 7, np.uint16)
    x[1, 0, 0, 0] = 9
    tif2 = tmp_path / "one_flat_timepoint.tif"
    tifffile.imwrite(tif2, x)
    with pytest.raises(ParameterError, match="time point 0"):
        run_normalize(tif2, tmp_path / "o.ome.zarr", per_timepoint=True)


def test_float_input_records_bound(tmp_path, raw4d):
    x = raw4d[0].astype(np.float32) / 7
    tif = tmp_path / "float.tif"
    tifffile.imwrite(tif, x)
    out = tmp_path / "f.ome.zarr"
    s = run_normalize(tif, out, percentiles=(1, 99), progress=False)
    ref = np.percentile(x, (1, 99))
    assert s["method"] == "binned" and np.all(np.abs([s["low"], s["high"]] - ref) <= s["error_bound"])
    np.testing.assert_array_equal(open_volume(out).data.compute()[0],
                                  scale_to_uint8(x, s["low"], s["high"]))
    assert read_attrs(out)["normalization"]["error_bound"] == s["error_bound"]


@pytest.mark.slow
def test_peak_memory_bounded_by_chunks(tmp_path):
    """Peak RSS grows far less than the volume (benchmarks/normalize_memory.py)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "normalize_memory.py"
    out = tmp_path / "mem.json"
    subprocess.run([sys.executable, str(script), "--timepoints", "1", "4", "--no-reference",
                    "--workdir", str(tmp_path), "--out", str(out)], check=True)
    rows = json.loads(out.read_text())["rows"]
    growth = rows[1]["normalize_peak_mb"] - rows[0]["normalize_peak_mb"]
    assert growth < 0.5 * (rows[1]["volume_mb"] - rows[0]["volume_mb"]), rows
