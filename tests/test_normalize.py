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
