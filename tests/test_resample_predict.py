"""Prediction at the model's voxel size: chunked == whole volume, halo from the context."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from chunkseg.engine.resample_predict import (
    predict_array_resampled,
    predict_resampled_in_memory,
    resampled_halo,
)


def box(x: np.ndarray) -> np.ndarray:
    """A stand-in network: box filter of radius (1, 2, 1), zero padding, plus a term that
    depends on the position modulo the pooling factor (1, 2, 2) within the tile (wrong
    tile alignment in model coordinates shows)."""
    y = ndimage.uniform_filter(x, size=(1, 3, 5, 3, 1), mode="constant")
    for axis in (2, 3):
        phase = (np.arange(x.shape[axis]) % 2) * 0.01
        y = y + phase.reshape([-1 if i == axis else 1 for i in range(5)])
    return y


@pytest.mark.parametrize(("factor", "block"), [
    ((1.7, 0.6, 1.35), (5, 7, 9)),
    ((1.7, 0.6, 1.35), (8, 11, 6)),
    ((0.45, 2.2, 1.0), (6, 9, 9)),
])
def test_chunked_equals_whole_volume(factor, block):
    rng = np.random.default_rng(0)
    vol = rng.random((23, 30, 41)).astype(np.float32)
    context = (1, 2, 1)
    ref = predict_resampled_in_memory(vol, box, factor=factor, context=context, tile=(6, 8, 8),
                                      pool=(1, 2, 2), scale=0.5)
    assert ref.shape == vol.shape
    x = da.from_array(vol, chunks=(5, 7, 9))
    got = predict_array_resampled(x, box, factor=factor, block=block, context=context,
                                  tile=(6, 8, 8), pool=(1, 2, 2), receptive=context,
                                  scale=0.5).compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # the resampling really happened: a plain box filter of the input differs
    assert not np.allclose(got, box(vol[None, ..., None] * 0.5)[0, ..., 0], atol=1e-3)


def test_halo_formula():
    assert resampled_halo((1, 2, 0), (1.0, 0.5, 3.2)) == (3, 3, 5)


def test_smaller_halo_is_caught():
    """The halo is needed: a block function given less context refuses, naming it."""
    from chunkseg.engine.resample_predict import predict_block_resampled
    from chunkseg.errors import ShapeError

    vol = np.zeros((20, 20, 20), np.float32)
    with pytest.raises(ShapeError, match="halo"):
        predict_block_resampled(vol[:12, :12, :12], predictor=box, factor=(2.0, 2.0, 2.0),
                                shape=vol.shape, block_shape=(10, 10, 10), halo=(1, 1, 1),
                                context=(2, 2, 2), scale=1.0,
                                block_info={0: {"chunk-location": (1, 1, 1)}},
                                tile=(4, 4, 4), pool=(1, 1, 1), blend="gaussian",
                                crop_context=True, batch=None)


# ----------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def scaled_model(tmp_path_factory):
    """A tiny random U-Net (receptive radius 9, pooling 2) declaring 1.0 x 0.25 x 0.25 µm."""
    from chunkseg.model import load_model, save_model
    from predict_helpers import random_model

    root = tmp_path_factory.mktemp("scaled")
    net, meta = load_model(random_model(root / "plain.keras"))
    return save_model(net, root / "scaled.keras",
                      metadata={**meta, "voxel_size": [1.0, 0.25, 0.25]})


def _raw(path, data, voxel_size):
    from chunkseg.io.store import create_image, mark_complete

    arr = create_image(path, shape=data.shape, dtype=data.dtype, chunks=(1, 8, 16, 16),
                       shards=False, attrs={"kind": "normalized"}, voxel_size=voxel_size)
    arr[...] = data
    mark_complete(path)
    return path


def test_run_predict_resamples_seam_free(scaled_model, tmp_path, capsys):
    """chunkseg predict with odd blocks == resample the whole volume, predict it, resample
    back; --no-resample and an input without a voxel size predict as they are."""
    from chunkseg.io.store import open_volume
    from chunkseg.model import load_model
    from chunkseg.pipeline.predict import run_predict

    rng = np.random.default_rng(3)
    smooth = ndimage.gaussian_filter(rng.random((20, 40, 44)), 1.5)
    vol = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    raw = _raw(tmp_path / "raw.ome.zarr", vol[None], (0.6, 0.35, 0.2))
    out = tmp_path / "p.ome.zarr"
    s = run_predict(raw, model=scaled_model, out=out, halo="auto", block=(20, 24, 30),
                    progress=False)
    factor = (1 / 0.6, 0.25 / 0.35, 1.25)
    assert s["resample"]["factor"] == pytest.approx(factor)
    assert s["resample"]["input_halo"] == list(resampled_halo((9, 9, 9), factor))
    got = np.asarray(open_volume(out).data[0])
    net, _ = load_model(scaled_model)
    ref = predict_resampled_in_memory(vol, net.predict_on_batch, factor=factor, context=9,
                                      tile=(32, 80, 64), pool=2, scale=1 / 255)
    assert ref.std() > 0.05  # the output varies, so the tolerance is strict
    np.testing.assert_allclose(got, ref, atol=1e-5)
    plain = run_predict(raw, model=scaled_model, out=tmp_path / "n.ome.zarr", halo="auto",
                        block=(20, 24, 30), progress=False, resample=False)
    assert plain["resample"]["factor"] is None
    assert not np.allclose(np.asarray(open_volume(tmp_path / "n.ome.zarr").data[0]), got,
                           atol=1e-2)
    capsys.readouterr()
    import tifffile

    tifffile.imwrite(tmp_path / "bare.tif", vol)
    bare = run_predict(tmp_path / "bare.tif", model=scaled_model, out=tmp_path / "b.ome.zarr",
                       halo="auto", progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert bare["resample"]["factor"] is None
    assert len(err) == 1 and "no voxel size" in err[0] and "bare.tif" in err[0]
    given = run_predict(tmp_path / "bare.tif", model=scaled_model, out=tmp_path / "g.ome.zarr",
                        halo="auto", progress=False,
                        voxel_size=(1.05, 0.26, 0.24))
    assert given["resample"]["factor"] is None and given["resample"]["reason"] == \
        "within tolerance"


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(*(st.integers(3, 30),) * 3),
       factor=st.tuples(*(st.floats(0.3, 3.0),) * 3),
       context=st.tuples(*(st.integers(0, 3),) * 3),
       block=st.tuples(*(st.integers(4, 12),) * 3))
def test_computed_halo_always_suffices(shape, factor, context, block):
    """For any factors and blocks the halo of :func:`resampled_halo` holds every input
    voxel a block needs (the block function checks and would raise)."""
    from chunkseg.engine.geometry import cover
    from chunkseg.engine.resample_predict import predict_block_resampled

    halo = resampled_halo(context, factor)
    for b in cover(shape, block, halo):
        padded = np.zeros([s + m0 + m1 for s, (m0, m1) in
                           zip((r.stop - r.start for r in b.read), b.missing)], np.float32)
        out = predict_block_resampled(
            padded, predictor=lambda x: x, factor=factor, shape=shape, block_shape=block,
            halo=halo, context=context, scale=1.0, block_info={0: {"chunk-location": b.index}},
            tile=tuple(2 * c + 2 for c in context), pool=(1, 1, 1), blend="none",
            crop_context=True, batch=None)
        assert out.shape == padded.shape


def test_input_voxel_size_known_or_not(tmp_path):
    from chunkseg.io.store import open_volume
    from chunkseg.pipeline._predict_resample import input_voxel_size

    vol = np.zeros((1, 4, 8, 8), np.uint8)
    vol[0, 0, 0, 0] = 1
    known = _raw(tmp_path / "k.ome.zarr", vol, (2.0, 0.26, 0.26))
    assert input_voxel_size(known, open_volume(known)) == (2.0, 0.26, 0.26)
    from chunkseg.io.store import create_image, mark_complete

    unknown = tmp_path / "u.ome.zarr"
    create_image(unknown, shape=vol.shape, dtype=np.uint8, chunks=(1, 4, 8, 8), shards=False,
                 attrs={"kind": "raw", "voxel_size_from": "default"})[...] = vol
    mark_complete(unknown)
    assert input_voxel_size(unknown, open_volume(unknown)) is None
