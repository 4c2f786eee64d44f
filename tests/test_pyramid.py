"""Multiscale pyramids: the downsampling rules, blockwise levels, metadata, every command."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import tifffile
import zarr

from chunkseg.cli import main
from chunkseg.engine.blocks import write_volume
from chunkseg.engine.pyramid import build_pyramid, finish_image
from chunkseg.errors import ParameterError
from chunkseg.io.multiscale import levels_info
from chunkseg.io.store import create_image, open_volume, read_attrs
from chunkseg.ops.pyramid import downsample_mean, downsample_mode, level_factors

pytestmark = pytest.mark.timeout(300)


def _windows(a: np.ndarray, f):
    """Every window of ``a`` (ceil at the edges) with its output index: the loop reference."""
    out = tuple(-(-n // k) for n, k in zip(a.shape, f))
    for idx in itertools.product(*(range(m) for m in out)):
        yield idx, a[tuple(slice(i * k, (i + 1) * k) for i, k in zip(idx, f))]


def _mode_ref(a, f):
    out = np.zeros(tuple(-(-n // k) for n, k in zip(a.shape, f)), a.dtype)
    for idx, w in _windows(a, f):
        vals, counts = np.unique(w, return_counts=True)
        out[idx] = vals[counts == counts.max()].max()
    return out


def _mean_ref(a, f):
    out = np.zeros(tuple(-(-n // k) for n, k in zip(a.shape, f)), np.float64)
    for idx, w in _windows(a, f):
        out[idx] = w.astype(np.float64).mean()
    return out


@pytest.mark.parametrize("shape,f", [((5, 7, 9), (2, 2, 2)), ((3, 8, 11), (1, 2, 2)),
                                     ((1, 2, 5, 3), (1, 1, 2, 2))])
def test_rules_equal_loop_references_with_odd_edges(shape, f):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, shape).astype(np.uint32)
    np.testing.assert_array_equal(downsample_mode(labels, f), _mode_ref(labels, f))
    x = rng.random(shape).astype(np.float32)
    np.testing.assert_allclose(downsample_mean(x, f), _mean_ref(x, f), rtol=1e-6)
    u = rng.integers(0, 60000, shape).astype(np.uint16)
    assert np.abs(downsample_mean(u, f).astype(float) - _mean_ref(u, f)).max() <= 0.5


def test_mean_matches_skimage_block_reduce():
    from skimage.measure import block_reduce

    x = np.random.default_rng(2).random((6, 10, 12))
    np.testing.assert_allclose(downsample_mean(x, (2, 2, 2)),
                               block_reduce(x, (2, 2, 2), np.mean))


def test_mode_keeps_labels_and_thin_membranes():
    mask = np.zeros((1, 8, 8), np.uint8)
    mask[0, 3, :] = 1  # one voxel thick: half of each 2 x 2 window it crosses
    out = downsample_mode(mask, (1, 2, 2))
    assert set(np.unique(out)) == {0, 1} and out[0, 1].all()
    labels = np.random.default_rng(3).integers(0, 50, (4, 9, 9)).astype(np.uint64)
    assert np.isin(downsample_mode(labels, (2, 2, 2)), labels).all()


def test_level_factors():
    assert level_factors((251, 1024, 1024), (2.0, 0.5, 0.5)) == [(1, 2, 2)]
    assert level_factors((32, 190, 185), (2.0, 0.5, 0.5)) == []
    # z joins once the in-plane spacing has caught up with it
    assert level_factors((64, 4096, 4096), (1.0, 0.5, 0.5)) == [(1, 2, 2), (2, 2, 2), (2, 2, 2)]
    assert level_factors((1, 2048, 600), (1.0, 1.0, 1.0)) == [(1, 2, 2), (1, 2, 2)]
    with pytest.raises(ParameterError, match="plane"):
        level_factors((1, 8, 8), (1, 1, 1), plane=0)


def _store(path, data, *, kind, chunks=(5, 7, 9), voxel_size=(1.0, 1.0, 1.0)):
    import dask.array as da

    create_image(path, shape=data.shape, dtype=data.dtype, voxel_size=voxel_size,
                 chunks=chunks, attrs={"kind": kind}, pyramid=True)
    write_volume(da.from_array(data, chunks=(1, 4, 6, 8)), path, progress=False)
    return path


@pytest.mark.parametrize("kind,dtype", [("raw", np.uint16), ("probability", np.float32),
                                        ("labels", np.uint32), ("mask", np.uint8)])
def test_levels_follow_the_rule_blockwise_on_odd_chunks(tmp_path, kind, dtype):
    rng = np.random.default_rng(4)
    shape = (2, 23, 61, 50)
    if kind in ("labels", "mask"):
        data = rng.integers(0, 2 if kind == "mask" else 30, shape).astype(dtype)
    else:
        data = (rng.random(shape) * (1 if dtype == np.float32 else 4000)).astype(dtype)
    path = _store(tmp_path / f"{kind}.ome.zarr", data, kind=kind)
    levels = finish_image(path, plane=12, progress=False)
    assert [lv["level"] for lv in levels] == [1, 2, 3]
    rule = downsample_mode if kind in ("labels", "mask") else downsample_mean
    group = zarr.open_group(str(path))
    above = data
    for lv in levels:
        level = group[str(lv["level"])][:]
        expected = rule(above, (1, *lv["factors"]))  # the whole level above, in memory
        if dtype == np.float32:
            np.testing.assert_allclose(level, expected, rtol=1e-6)
        else:
            np.testing.assert_array_equal(level, expected)
        above = level
    assert read_attrs(path)["complete"] is True
    np.testing.assert_array_equal(open_volume(path).data.compute(), data)  # readers: level 0


def test_metadata_scales_translations_and_validation(tmp_path):
    from ome_zarr_models.v05.image import Image

    data = np.arange(2 * 6 * 40 * 36, dtype=np.uint16).reshape(2, 6, 40, 36)
    path = _store(tmp_path / "raw.ome.zarr", data, kind="raw", voxel_size=(0.5, 0.25, 0.25))
    finish_image(path, plane=10, progress=False)
    Image.from_zarr(zarr.open_group(str(path)))
    levels = levels_info(path)
    assert [lv["shape"] for lv in levels] == [[2, 6, 40, 36], [2, 6, 20, 18],
                                              [2, 3, 10, 9]]
    assert levels[1]["scale"] == [1.0, 0.5, 0.5, 0.5]
    assert levels[1]["translation"] == [0.0, 0.0, 0.125, 0.125]
    assert levels[2]["scale"] == [1.0, 1.0, 1.0, 1.0]
    assert levels[2]["translation"] == [0.0, 0.25, 0.375, 0.375]


def test_pyramid_resumes_and_only_missing_blocks_are_built(tmp_path):
    import shutil

    data = np.random.default_rng(5).integers(0, 9, (1, 9, 70, 66)).astype(np.uint16)
    path = _store(tmp_path / "raw.ome.zarr", data, kind="raw")
    first = build_pyramid(path, method="mean", plane=20, progress=False)
    expected = zarr.open_group(str(path))["2"][:]
    shutil.rmtree(path / "2")
    markers = sorted((path / "1" / ".chunkseg" / "done").iterdir())
    markers[0].unlink()
    again = build_pyramid(path, method="mean", plane=20, resume=True, progress=False)
    assert again[0]["written"] == 1 and again[0]["skipped"] == first[0]["written"] - 1
    assert again[1]["written"] == first[1]["written"] and again[1]["skipped"] == 0
    np.testing.assert_array_equal(zarr.open_group(str(path))["2"][:], expected)


def _tiff(path, shape=(3, 530, 21), seed=0):
    data = np.random.default_rng(seed).integers(1, 3000, shape).astype(np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    return path


def _levels(path):
    return [lv["shape"] for lv in levels_info(path)]


def test_every_writing_command_builds_the_pyramid(tmp_path, capsys):
    from chunkseg.pipeline.predict import write_threshold_mask

    raw = tmp_path / "raw.ome.zarr"
    assert main(["convert", str(_tiff(tmp_path / "a.tif")), "--out", str(raw)]) == 0
    assert _levels(raw) == [[1, 3, 530, 21], [1, 3, 265, 11]]
    norm = tmp_path / "norm.ome.zarr"
    assert main(["normalize", str(raw), "--out", str(norm)]) == 0
    assert _levels(norm)[1] == [1, 3, 265, 11]
    labels = tmp_path / "labels.tif"
    cells = np.repeat(np.arange(1, 54, dtype=np.uint16), 10)[:530]
    tifffile.imwrite(labels, np.broadcast_to(cells[None, :, None], (3, 530, 21)).copy())
    mask = tmp_path / "mask.ome.zarr"
    assert main(["binarize", str(labels), "--out", str(mask), "--like", str(raw)]) == 0
    group = zarr.open_group(str(mask))
    np.testing.assert_array_equal(group["1"][:], downsample_mode(group["0"][:], (1, 1, 2, 2)))
    assert main(["synth", "--out", str(tmp_path / "s"), "--shape", "2", "530", "8"]) == 0
    for name in ("raw", "labels", "mask"):
        assert _levels(tmp_path / "s" / f"{name}.ome.zarr")[1] == [1, 2, 265, 4]
    thr = write_threshold_mask(norm, out=tmp_path / "thr.ome.zarr", threshold=0.5,
                               progress=False)
    assert _levels(thr)[1] == [1, 3, 265, 11]
    prob = tmp_path / "prob.ome.zarr"  # predict's writer; the filter scorer needs no network
    assert main(["predict", str(raw), "--out", str(prob), "--method", "acme", "--quiet",
                 "--scheduler", "threads"]) == 0
    group = zarr.open_group(str(prob))
    np.testing.assert_allclose(group["1"][:], downsample_mean(group["0"][:], (1, 1, 2, 2)),
                               rtol=1e-6)
    capsys.readouterr()


def test_no_pyramid_and_resume_mismatch_is_one_clear_line(tmp_path, capsys):
    tif = _tiff(tmp_path / "a.tif", shape=(2, 20, 16))
    out = tmp_path / "raw.ome.zarr"
    assert main(["convert", str(tif), "--out", str(out), "--no-pyramid"]) == 0
    assert read_attrs(out)["pyramid"] is False and len(levels_info(out)) == 1
    capsys.readouterr()
    for flags in ([], ["--no-pyramid"]):
        if flags:  # the reverse: a run with a pyramid resumed with --no-pyramid
            assert main(["convert", str(tif), "--out", str(out), "--overwrite"]) == 0
            capsys.readouterr()
        assert main(["convert", str(tif), "--out", str(out), "--resume", *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err and "pyramid" in err, err
        assert "Traceback" not in err


def test_info_lists_the_levels(tmp_path, capsys):
    raw = tmp_path / "raw.ome.zarr"
    assert main(["convert", str(_tiff(tmp_path / "a.tif")), "--out", str(raw)]) == 0
    capsys.readouterr()
    assert main(["info", str(raw)]) == 0
    text = capsys.readouterr().out
    assert "level 1" in text and "[1, 3, 265, 11]" in text
    assert main(["info", str(raw), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [lv["path"] for lv in info["levels"]] == ["0", "1"]
    level0 = sum(f.stat().st_size for f in (raw / "0").rglob("*") if f.is_file())
    assert info["compression_ratio"] == round(info["bytes_uncompressed"] / level0, 3)
    assert info["bytes_on_disk"] > level0  # the whole store, pyramid included


def test_segment_resume_with_the_other_pyramid_choice_stops_before_work(tmp_path, capsys):
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, np.repeat(np.arange(1, 5, dtype=np.uint16), 6)[None, :, None]
                     .repeat(4, 0).repeat(10, 2))
    mask, cells = tmp_path / "mask.ome.zarr", tmp_path / "cells.ome.zarr"
    assert main(["binarize", str(labels), "--out", str(mask)]) == 0
    assert main(["segment", str(mask), "--out", str(cells), "--quiet", "--no-pyramid"]) == 0
    capsys.readouterr()
    assert main(["segment", str(mask), "--out", str(cells), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-pyramid" in err and str(cells) in err, err
    assert read_attrs(cells)["complete"] is True  # the finished output is left as it was
