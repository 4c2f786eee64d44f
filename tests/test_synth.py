"""Tests of the synthetic membrane generator, its writer and ``chunkseg synth``."""

from __future__ import annotations

import numpy as np
import pytest

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.synth import SynthParams, synth_block, synth_volume

SHAPE = (32, 64, 64)


def test_types_and_determinism():
    a = synth_volume(SHAPE, seed=3)
    b = synth_block(SynthParams(SHAPE, seed=3))  # uncached path
    assert a.raw.dtype == np.uint16 and a.labels.dtype == np.uint32 and a.mask.dtype == np.uint8
    assert a.raw.shape == a.labels.shape == a.mask.shape == SHAPE
    for k in ("raw", "labels", "mask"):
        np.testing.assert_array_equal(getattr(a, k), b[k])
    c = synth_volume(SHAPE, seed=4)
    assert not np.array_equal(a.raw, c.raw) and not np.array_equal(a.labels, c.labels)


def test_cached_volume_is_a_copy():
    a = synth_volume(SHAPE, seed=7)
    a.raw[:] = 0
    assert synth_volume(SHAPE, seed=7).raw.max() > 0


@pytest.mark.parametrize("blocks", [(7, 13, 29), (11, 31, 17)])
@pytest.mark.parametrize("background", [False, True])
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


def test_piecewise_evaluation_inside_a_block_is_exact(monkeypatch):
    import chunkseg.synth as synth

    p = SynthParams((9, 40, 40), seed=2, blob_density=30.0)
    whole = synth_block(p)
    monkeypatch.setattr(synth, "_PIECE", 1000)  # many pieces per block
    for k, v in synth_block(p).items():
        np.testing.assert_array_equal(v, whole[k])


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
    v = synth_volume((40, 128, 128), seed=8, blobs=False, noise=False)
    ids, sizes = np.unique(v.labels, return_counts=True)
    touching = np.unique(np.concatenate([
        v.labels[[0, -1]].ravel(), v.labels[:, [0, -1]].ravel(), v.labels[:, :, [0, -1]].ravel()]))
    inner = sizes[~np.isin(ids, touching)]
    assert inner.size >= 8
    assert inner.std() / inner.mean() > 0.2  # varied cell volumes
    # mean equivalent diameter close to the requested 4 µm
    d = np.cbrt(6 / np.pi * inner.mean() * np.prod(v.params.voxel_size))
    assert 2.5 < d < 5.5


def test_raw_intensity_model():
    v = synth_volume((40, 96, 96), seed=9, blobs=False)
    raw = v.raw.astype(float)
    on, off = raw[v.mask == 1].mean(), raw[v.mask == 0].mean()
    assert on > 1.5 * off
    assert 100 <= np.percentile(raw, 1) < 200  # offset plus haze
    assert 500 < np.percentile(raw, 99.9) < 5000  # membrane peaks
    flat = synth_volume((40, 96, 96), seed=9, blobs=False, attenuation_length=5.0)
    assert flat.raw[:5].mean() > 1.5 * flat.raw[-5:].mean()  # falls off with depth


def _corr(a, axis, lag):
    a = a - a.mean()
    n = a.shape[axis]
    x = np.take(a, range(n - lag), axis=axis)
    y = np.take(a, range(lag, n), axis=axis)
    return float((x * y).mean() / (a * a).mean())


def test_psf_is_coarser_in_z():
    v = synth_volume((40, 96, 96), seed=10, blobs=False, noise=False, haze_photons=0)
    raw = v.raw.astype(float)
    # same physical lag (0.4 µm): one z slice, four x pixels
    assert _corr(raw, 0, 1) > _corr(raw, 2, 4) + 0.1


def test_noise_and_blobs():
    clean = synth_volume(SHAPE, seed=12, noise=False, blobs=False)
    noisy = synth_volume(SHAPE, seed=12, blobs=False)
    diff = noisy.raw.astype(float) - clean.raw
    assert 1.0 < diff.std() < 60 and abs(diff.mean()) < 1.0
    blobs = synth_volume(SHAPE, seed=12, noise=False, blob_density=50.0)
    assert (blobs.raw >= clean.raw).all() and (blobs.raw > clean.raw + 50).any()
    np.testing.assert_array_equal(blobs.labels, clean.labels)


def test_motion_is_small_but_nonzero():
    a = synth_volume(SHAPE, seed=13, t=0)
    b = synth_volume(SHAPE, seed=13, t=1)
    changed = (a.labels != b.labels).mean()
    assert 0.0 < changed < 0.15
    far = synth_volume(SHAPE, seed=13, t=20)
    assert (a.labels != far.labels).mean() > changed
    assert not np.array_equal(a.raw, b.raw)
