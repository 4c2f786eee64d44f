"""The default intensity range (chunkseg.ops.robust_range), in memory and streamed."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from chunkseg.engine.stats import intensity_histogram
from chunkseg.errors import ParameterError
from chunkseg.ops.normalize import scale_to_uint8
from chunkseg.ops.robust_range import (
    ROBUST_PERCENTILES,
    model_percentiles,
    range_from_histogram,
    robust_range,
)


def _volume(dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(50, 250, (9, 14, 17)).astype(dtype)
    x[:, :5] = 0  # empty outside the sample
    return x


def test_matches_numpy_on_nonzero_voxels():
    x = _volume()
    assert robust_range(x) == tuple(np.percentile(x[x != 0], ROBUST_PERCENTILES))
    assert robust_range(x, (0, 99.99), ignore_zero=False) == \
        tuple(np.percentile(x, (0, 99.99)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float64])
def test_any_dtype_and_constant(dtype):
    x = _volume(np.int32).astype(dtype)
    low, high = robust_range(x)
    assert high > low >= 50
    assert robust_range(np.full((3, 3, 3), 7, dtype)) == (7.0, 8.0)
    assert robust_range(np.zeros((3, 3, 3), dtype)) == (0.0, 1.0)


def test_float_nan_ignored_and_errors():
    x = _volume(np.float32)
    y = x.copy()
    y[0, 6, :3] = np.nan
    assert robust_range(y) == robust_range(np.where(np.isnan(y), 0, y))
    with pytest.raises(ParameterError):
        robust_range(np.full((2, 2, 2), np.nan))
    with pytest.raises(ParameterError):
        robust_range(x, (99, 1))
    with pytest.raises(ParameterError):
        robust_range(x, (1, 50, 99))


def test_hot_voxels_do_not_collapse_the_range():
    x = _volume()
    x.flat[np.random.default_rng(1).choice(x.size, 3, replace=False)] = 60000
    low, high = robust_range(x)
    paper = np.percentile(x, (0, 99.99))
    gap = lambda lo, hi: int(np.ptp(scale_to_uint8(np.array([100, 200]), lo, hi)))  # noqa: E731
    assert gap(low, high) > 100 > 10 > gap(*paper)


@pytest.mark.parametrize("ignore_zero", [True, False])
def test_streamed_histogram_equals_in_memory(ignore_zero):
    x = _volume()[None]
    h = intensity_histogram(da.from_array(x, chunks=(1, 5, 7, 9)))
    assert range_from_histogram(h.hist, ignore_zero=ignore_zero) == \
        robust_range(x, ignore_zero=ignore_zero)


def test_model_percentiles():
    assert model_percentiles(None) == (ROBUST_PERCENTILES, True)
    assert model_percentiles({"method": "percentiles", "percentiles": [0, 99.99]}) == \
        (ROBUST_PERCENTILES, True)
    rec = {"method": "robust_percentiles", "percentiles": [2, 98], "ignore_zero": False}
    assert model_percentiles(rec) == ((2.0, 98.0), False)
