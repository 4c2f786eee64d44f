"""Tests of the synthetic membrane generator, its writer and ``chunkseg synth``."""

from __future__ import annotations

import numpy as np
import pytest

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.synth import SynthParams, synth_block, synth_volume

SHAPE = (32, 64, 64)


def test_types_and_determinism():
    a = synth_volume(SHAPE, seed=5)
    b = synth_block(SynthParams(SHAPE, seed=5))  # uncached path
    assert a.raw.dtype == np.uint16 and a.labels.dtype == np.uint32 and a.mask.dtype == np.uint8
    assert a.raw.shape == a.labels.shape == a.mask.shape == SHAPE
    for k in ("raw", "labels", "mask"):
        np.testing.assert_array_equal(getattr(a, k), b[k])
    c = synth_volume(SHAPE, seed=6, noise=False, blobs=False)
    assert not np.array_equal(a.raw, c.raw) and not np.array_equal(a.labels, c.labels)


def test_cached_volume_is_a_copy():
    """Writing into a returned volume changes neither the cache nor the next call."""
    a = synth_volume(SHAPE, seed=5)
    fresh = synth_block(SynthParams(SHAPE, seed=5))  # uncached, the reference
    for k in ("raw", "labels", "mask"):
        getattr(a, k)[...] = 7
    b = synth_volume(SHAPE, seed=5)
    for k in ("raw", "labels", "mask"):
        np.testing.assert_array_equal(getattr(b, k), fresh[k], err_msg=k)
        assert not np.shares_memory(getattr(b, k), getattr(a, k)), k


@pytest.mark.parametrize("blocks, background", [((7, 13, 29), False), ((11, 31, 17), True)])
def test_blockwise_equals_whole_exactly(blocks, background):
    shape = (23, 45, 50)
    p = SynthParams(shape, seed=11, background=background, blob_density=20.0)
    whole = synth_block(p, t=2)
    parts = {k: np.zeros_like(v) for k, v in whole.items()}
    for z in range(0, shape[0], blocks[0]):
        for y in range(0, shape[1], blocks[1]):
            for x in range(0, shape[2], blocks[2]):
                reg = (slice(z, min(z + blocks[0], shape[0])),
                       slice(y, min(y + blocks[1], shape[1])),
                       slice(x, min(x + blocks[2], shape[2])))
                for k, v in synth_block(p, reg, t=2).items():
                    parts[k][reg] = v
    for k in whole:
        np.testing.assert_array_equal(parts[k], whole[k], err_msg=k)


@pytest.mark.parametrize("patch", ["sub_shape", "margin", "slabs"])
def test_sub_boxes_and_candidate_fallback_are_exact(monkeypatch, patch):
    import chunkseg.synth.render as render
    import chunkseg.synth.volume as synth

    p = SynthParams((9, 40, 40), seed=2, blob_density=30.0, background=True)
    whole = synth_block(p)
    if patch == "sub_shape":  # many odd sub-boxes per block
        monkeypatch.setattr(render, "_sub_shape", lambda p: (2, 3, 7))
    elif patch == "margin":  # a tiny block margin forces the all-seeds fallback
        monkeypatch.setattr(render, "_block_margin", lambda w, delta: 1.5 * delta)
    else:  # thin z-slabs inside the block
        monkeypatch.setattr(synth, "_SLAB_VOXELS", 1000)
    for k, v in synth_block(p, ((1, 8), (3, 40), (0, 29))).items():
        np.testing.assert_array_equal(v, whole[k][1:8, 3:40, 0:29])


def test_outputs_subset_and_bad_arguments():
    p = SynthParams(SHAPE, seed=1)
    out = synth_block(p, ((0, 5), (0, 6), (0, 7)), outputs=("labels",))
    assert list(out) == ["labels"] and out["labels"].shape == (5, 6, 7)
    with pytest.raises(ParameterError):
        synth_block(p, outputs=("probability",))
    with pytest.raises(ParameterError):
        synth_block(p, t=-1)
    with pytest.raises(ShapeError):
        synth_block(p, ((0, 40), (0, 6), (0, 7)))
    with pytest.raises(ShapeError):
        synth_block(p, ((0, 4), (0, 6)))


@pytest.mark.parametrize("kwargs", [
    {"shape": (0, 10, 10)}, {"shape": (10, 10)}, {"shape": (4, -1, 5)},
    {"shape": SHAPE, "voxel_size": (0.4, 0, 0.1)}, {"shape": SHAPE, "psf_sigma": (1, 1)},
    {"shape": SHAPE, "cell_diameter": 0}, {"shape": SHAPE, "seed": -1},
    {"shape": SHAPE, "motion": -0.1}, {"shape": SHAPE, "attenuation_length": 0},
])
def test_bad_parameters(kwargs):
    shape = kwargs.pop("shape")
    with pytest.raises(ParameterError):
        synth_volume(shape, **kwargs)


def test_mask_is_boundary_of_labels_and_space_filling():
    from skimage.segmentation import find_boundaries

    v = synth_volume(SHAPE, seed=5)
    np.testing.assert_array_equal(v.mask, membrane_mask(v.labels))
    np.testing.assert_array_equal(v.mask, find_boundaries(v.labels, mode="thick", connectivity=1))
    assert set(np.unique(v.mask)) == {0, 1}
    assert v.labels.min() >= 1  # no background: every voxel belongs to a cell
    assert 0.1 < v.mask.mean() < 0.5
    bg = synth_volume(SHAPE, seed=5, background=True)
    assert (bg.labels == 0).any() and (bg.labels > 0).mean() > 0.4
    np.testing.assert_array_equal(bg.mask, membrane_mask(bg.labels))


def test_cells_are_varied_polyhedra_not_spheres():
    v = synth_volume((32, 96, 96), seed=8, blobs=False, noise=False, cell_diameter=3.0)
    ids, sizes = np.unique(v.labels, return_counts=True)
    touching = np.unique(np.concatenate([
        v.labels[[0, -1]].ravel(), v.labels[:, [0, -1]].ravel(), v.labels[:, :, [0, -1]].ravel()]))
    inner = sizes[~np.isin(ids, touching)]
    assert inner.size >= 8
    assert inner.std() / inner.mean() > 0.2  # varied cell volumes
    # mean equivalent diameter close to the requested 3 µm
    d = np.cbrt(6 / np.pi * inner.mean() * np.prod(v.params.voxel_size))
    assert 2.0 < d < 4.0


def test_raw_intensity_model():
    v = synth_volume(SHAPE, seed=5)
    raw = v.raw.astype(float)
    on, off = raw[v.mask == 1].mean(), raw[v.mask == 0].mean()
    assert on > 1.5 * off
    assert 100 <= np.percentile(raw, 1) < 200  # offset plus haze
    assert 500 < np.percentile(raw, 99.9) < 5000  # membrane peaks
    flat = synth_volume(SHAPE, seed=5, attenuation_length=5.0)
    assert flat.raw[:5].mean() > 1.5 * flat.raw[-5:].mean()  # falls off with depth


def _corr(a, axis, lag):
    a = a - a.mean()
    n = a.shape[axis]
    x = np.take(a, range(n - lag), axis=axis)
    y = np.take(a, range(lag, n), axis=axis)
    return float((x * y).mean() / (a * a).mean())


def test_psf_is_coarser_in_z():
    v = synth_volume(SHAPE, seed=5, blobs=False, noise=False)
    raw = v.raw.astype(float)
    # same physical lag (0.4 µm): one z slice, four x pixels
    assert _corr(raw, 0, 1) > _corr(raw, 2, 4) + 0.1


def test_noise_and_blobs():
    clean = synth_volume(SHAPE, seed=5, noise=False, blobs=False)
    noisy = synth_volume(SHAPE, seed=5, blobs=False)
    diff = noisy.raw.astype(float) - clean.raw
    assert 1.0 < diff.std() < 60 and abs(diff.mean()) < 1.0
    blobs = synth_volume(SHAPE, seed=5, noise=False, blob_density=50.0)
    assert (blobs.raw >= clean.raw).all() and (blobs.raw > clean.raw + 50).any()
    np.testing.assert_array_equal(blobs.labels, clean.labels)


def test_motion_is_small_but_nonzero():
    a = synth_volume(SHAPE, seed=5, t=0)
    b = synth_volume(SHAPE, seed=5, t=1)
    changed = (a.labels != b.labels).mean()
    assert 0.0 < changed < 0.15
    far = synth_volume(SHAPE, seed=5, t=20, noise=False, blobs=False)
    assert (a.labels != far.labels).mean() > changed
    assert not np.array_equal(a.raw, b.raw)


# ----------------------------------------------------------------- pipeline and CLI
def test_synth_dask_odd_chunks_equal_in_memory():
    from chunkseg.pipeline.synth import synth_dask

    p = SynthParams((13, 30, 41), seed=6, blob_density=30.0)
    for name in ("raw", "labels", "mask"):
        arr = synth_dask(p, name, timepoints=2, chunks=(1, 5, 11, 17)).compute(scheduler="sync")
        for t in range(2):
            np.testing.assert_array_equal(arr[t], getattr(synth_volume(p.shape, seed=6, t=t,
                                                                       blob_density=30.0), name))
    with pytest.raises(ParameterError):
        synth_dask(p, "probability")


def test_run_synth_round_trip(tmp_path):
    from chunkseg.io.store import open_volume, read_attrs
    from chunkseg.pipeline.synth import run_synth

    shape = (19, 37, 41)
    paths = run_synth(tmp_path / "s", shape=shape, timepoints=2, seed=3, chunks=(8, 16, 16),
                      voxel_size=(0.5, 0.1, 0.1), progress=False)
    assert set(paths) == {"raw", "labels", "mask"}
    for name, dtype in (("raw", np.uint16), ("labels", np.uint32), ("mask", np.uint8)):
        vol = open_volume(paths[name])
        assert vol.shape == (2, *shape) and vol.dtype == dtype
        assert vol.voxel_size == (0.5, 0.1, 0.1)
        assert vol.attrs["kind"] == name and vol.attrs["complete"]
        assert vol.attrs["synth"]["seed"] == 3
        data = vol.data.compute()
        for t in range(2):
            ref = synth_volume(shape, seed=3, t=t, voxel_size=(0.5, 0.1, 0.1))
            np.testing.assert_array_equal(data[t], getattr(ref, name))
    # resume of a complete run is a no-op; a run without overwrite refuses
    assert run_synth(tmp_path / "s", shape=shape, timepoints=2, seed=3, chunks=(8, 16, 16),
                     voxel_size=(0.5, 0.1, 0.1), resume=True, progress=False) == paths
    from chunkseg.errors import OutputExistsError, ResumeMismatchError

    with pytest.raises(OutputExistsError):
        run_synth(tmp_path / "s", shape=shape, progress=False)
    with pytest.raises(ResumeMismatchError):
        run_synth(tmp_path / "s", shape=shape, timepoints=2, seed=4, chunks=(8, 16, 16),
                  voxel_size=(0.5, 0.1, 0.1), resume=True, progress=False)
    small = run_synth(tmp_path / "s", shape=(4, 8, 8), overwrite=True, outputs=("labels",),
                      progress=False)
    assert list(small) == ["labels"] and read_attrs(small["labels"])["complete"]


@pytest.mark.parametrize("kwargs", [
    {"shape": (0, 8, 8)}, {"shape": (8, 8)}, {"shape": (4, 8, 8), "timepoints": 0},
    {"shape": (4, 8, 8), "chunks": (0, 8, 8)}, {"shape": (4, 8, 8), "voxel_size": (-1, 1, 1)},
    {"shape": (4, 8, 8), "outputs": ("nope",)},
])
def test_run_synth_bad_input(tmp_path, kwargs):
    from chunkseg.pipeline.synth import run_synth

    with pytest.raises(ParameterError):
        run_synth(tmp_path / "bad", progress=False, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_cli(tmp_path, capsys):
    from chunkseg.cli import main

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--shape", "6", "20", "24", "--timepoints", "2",
                 "--seed", "5", "--chunks", "4", "8", "8", "--no-blobs"]) == 0
    printed = capsys.readouterr().out
    assert "raw.ome.zarr" in printed and "mask.ome.zarr" in printed
    from chunkseg.io.store import read_attrs

    attrs = read_attrs(out / "raw.ome.zarr")
    assert attrs["complete"] and attrs["synth"]["blobs"] is False and attrs["seed"] == 5
    assert main(["synth", "--out", str(out), "--shape", "6", "20", "24"]) == 2  # exists
    assert "output exists" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--shape", "6", "0", "24", "--overwrite"]) == 2
    assert "shape" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--shape", "6", "20", "24", "--overwrite",
                 "--voxel-size", "0", "1", "1"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--out", str(out), "--shape", "6", "20"])
    assert exc.value.code == 2


_STREAM_SCRIPT = """
import json, resource, sys, time
from chunkseg.pipeline.synth import run_synth
from chunkseg.io.store import open_volume
shape, tp, out, outputs = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
paths = run_synth(out, shape=shape, timepoints=tp, seed=1, progress=False, outputs=outputs)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
written = sum(open_volume(p).data.nbytes for p in paths.values()) / 2**20
print(json.dumps({"peak_rss_mb": peak / 1024, "rss_after_import_mb": base / 1024,
                  "seconds": seconds, "shape": [tp, *shape], "outputs": outputs,
                  "written_mb": written}))
"""


def _stream(tmp_path, shape, timepoints, outputs):
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _STREAM_SCRIPT, json.dumps(shape), str(timepoints),
         str(tmp_path / f"s{timepoints}x{shape[0]}"), *outputs],
        capture_output=True, text=True, check=True)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    print(info)
    return info


@pytest.mark.slow
def test_run_synth_streams_a_large_series(tmp_path):
    """Peak memory is bounded by blocks: an 8x larger series needs no more memory."""
    small = _stream(tmp_path, (64, 1024, 512), 1, ["labels"])  # 128 MiB: 2 blocks
    big = _stream(tmp_path, (128, 1024, 1024), 2, ["labels"])  # 1 GiB: 16 blocks
    assert big["written_mb"] >= 1000
    grown = big["peak_rss_mb"] - big["rss_after_import_mb"]
    assert grown < 0.4 * big["written_mb"]
    assert big["peak_rss_mb"] < small["peak_rss_mb"] + 150
