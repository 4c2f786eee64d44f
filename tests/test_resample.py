"""Tests of :mod:`chunkseg.ops.resample`: the voxel-centre convention, block == whole."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.resample import (
    resample,
    resampled_shape,
    source_region,
    zoom_factors,
)


def test_matches_scipy_affine_transform_linear():
    """Same convention as ``affine_transform(order=1, mode="nearest")`` with the
    half-voxel offset ``0.5 f - 0.5``."""
    rng = np.random.default_rng(0)
    vol = rng.random((9, 13, 17)).astype(np.float32)
    f = (1.7, 0.45, 2.3)
    ref = ndimage.affine_transform(vol, f, offset=[0.5 * v - 0.5 for v in f],
                                   output_shape=resampled_shape(vol.shape, f), order=1,
                                   mode="nearest")
    np.testing.assert_allclose(resample(vol, f), ref, atol=1e-5)


@pytest.mark.parametrize("factor", [(1.0, 0.37, 2.6), (3.1, 1.45, 0.5)])
def test_blocks_equal_whole_volume(factor):
    """Odd target chunks (5, 7, 9): each block read from its source region only gives
    exactly the whole-volume values."""
    rng = np.random.default_rng(1)
    vol = rng.random((23, 19, 31)).astype(np.float32)
    whole = resample(vol, factor)
    assert whole.shape == resampled_shape(vol.shape, factor)
    starts = [range(0, n, c) for n, c in zip(whole.shape, (5, 7, 9))]
    for corner in itertools.product(*starts):
        region = [(a, min(a + c, n)) for a, c, n in zip(corner, (5, 7, 9), whole.shape)]
        src = source_region(region, factor, vol.shape)
        block = vol[tuple(slice(lo, hi) for lo, hi in src)]
        got = resample(block, factor, offset=[lo for lo, _ in src], source_shape=vol.shape,
                       region=region)
        np.testing.assert_array_equal(got, whole[tuple(slice(a, b) for a, b in region)])


def test_round_trip_and_edges():
    vol = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    assert resample(vol, (1, 1, 2)).tolist() == [[[0.5, 2.5, 4.5, 6.5]]]
    up = resample(vol, (1, 1, 0.5))
    assert up.shape == (1, 1, 16) and up[0, 0, 0] == 0 and up[0, 0, -1] == 7  # clamped
    assert np.array_equal(resample(vol, 1.0), vol)
    assert resampled_shape((1, 5, 100), (4, 2, 3)) == (1, 2, 33)
    ramp = np.broadcast_to(np.arange(40, dtype=np.float32), (3, 4, 40))
    # a linear ramp stays linear away from the clamped edges
    down = resample(ramp, (1, 1, 2.5))
    np.testing.assert_allclose(down[0, 0, 1:-1], (np.arange(1, 15) + 0.5) * 2.5 - 0.5, atol=1e-5)


def test_zoom_factors():
    assert zoom_factors((1.0, 0.2, 0.2), (1.05, 0.21, 0.19)) is None
    assert zoom_factors(None, (1, 1, 1)) is None and zoom_factors((1, 1, 1), None) is None
    assert zoom_factors((2.0, 0.26, 0.26), (1.0, 0.2, 0.2)) == pytest.approx(
        (0.5, 0.2 / 0.26, 0.2 / 0.26))
    assert zoom_factors((2.0, 0.2, 0.2), (1.0, 0.21, 0.2)) == (0.5, 1.0, 1.0)


def test_bad_arguments():
    with pytest.raises(ParameterError, match="positive"):
        resample(np.zeros((2, 2, 2)), (1, 0, 1))
    with pytest.raises(ShapeError, match="3D"):
        resample(np.zeros((2, 2)), 2)
    with pytest.raises(ShapeError, match="lacks source voxels"):
        resample(np.zeros((4, 4, 4)), 2, offset=(0, 0, 0), source_shape=(4, 4, 40),
                 region=[(0, 2), (0, 2), (10, 12)])
    with pytest.raises(ParameterError, match="start < stop"):
        source_region([(0, 0), (0, 1), (0, 1)], 2, (4, 4, 4))
