"""Prediction at the model's voxel size: chunked == whole volume, halo from the context."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

from chunkseg.engine.resample_predict import (
    predict_array_resampled,
    predict_resampled_in_memory,
    resampled_halo,
)


def box(x: np.ndarray) -> np.ndarray:
    """A local, translation-equivariant stand-in for a network: radius (1, 2, 1)."""
    return ndimage.uniform_filter(x, size=(1, 3, 5, 3, 1), mode="constant")


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
