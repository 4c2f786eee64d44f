"""Intensity scaling to 8 bit and exact percentiles from value histograms (pure NumPy).

:func:`scale_to_uint8` is THE intensity scaling of chunkseg: ``normalize``, the training
crop sampler and ``predict`` all call it, so a network sees identical voxels whichever
path produced them.

The percentile helpers work on *histograms*, which can be computed per chunk and summed,
so a percentile of a whole time series is found in one streaming pass with bounded
memory, and equals :func:`numpy.percentile` (default ``"linear"`` method) exactly for
integer data.

A histogram is a pair ``(values, counts)``: ``values`` sorted ascending, unique, in the
data's dtype; ``counts`` int64, same length, all > 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chunkseg.errors import DTypeError, InputError, ParameterError

__all__ = [
    "DEFAULT_PERCENTILES",
    "Histogram",
    "check_percentiles",
    "check_range",
    "histogram_float",
    "histogram_uint",
    "merge_histograms",
    "order_statistics",
    "percentiles_from_histogram",
    "scale_to_uint8",
]

Histogram = tuple[np.ndarray, np.ndarray]

#: integer dtypes histogrammed with a dense ``np.bincount`` (offset for signed types)
DENSE_DTYPES = ("uint8", "uint16", "int8", "int16")
#: the paper's RangeIn: 0 -> the 99.99th percentile; normalize, train and predict share it
DEFAULT_PERCENTILES = (0.0, 99.99)
#: elements per slab in the float path of :func:`scale_to_uint8` (bounds temporaries)
_SLAB = 1 << 20


def check_range(low: float, high: float) -> tuple[float, float]:
    """Validate an intensity range; return it as Python floats.

    Raises
    ------
    ParameterError
        ``low`` or ``high`` is not finite, or ``low >= high`` (a zero or negative range,
        e.g. from a constant volume).
    """
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ParameterError(f"intensity range must be finite numbers; got ({low}, {high})")
    if not low < high:
        raise ParameterError(
            f"intensity range needs low < high; got low={low!r}, high={high!r}"
            + (" (zero range: is the volume constant?)" if low == high else "")
        )
    return low, high


def check_percentiles(percentiles: Sequence[float]) -> tuple[float, ...]:
    """Validate percentiles: each in [0, 100], non-decreasing.

    Raises
    ------
    ParameterError
        A percentile outside [0, 100], NaN, or the sequence is not ascending.
    """
    ps = tuple(float(p) for p in np.atleast_1d(np.asarray(percentiles, dtype=np.float64)))
    if not ps:
        raise ParameterError("expected at least one percentile; got none")
    bad = [p for p in ps if not 0.0 <= p <= 100.0]
    if bad:
        raise ParameterError(f"percentiles must lie in [0, 100]; got {bad} in {list(ps)}")
    if any(b < a for a, b in zip(ps, ps[1:])):
        raise ParameterError(f"percentiles must be in ascending order (low, high); got {list(ps)}")
    return ps


def _float64_scale(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``floor(clip(255 * (x - low) / (high - low), 0, 255) + 0.5)`` in float64, NaN -> 0."""
    v = np.subtract(x, low, dtype=np.float64)
    v *= 255.0
    v /= high - low
    np.clip(v, 0.0, 255.0, out=v)
    v += 0.5
    np.floor(v, out=v)
    np.nan_to_num(v, copy=False, nan=0.0)
    return v


def scale_to_uint8(block: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map intensities ``[low, high]`` linearly to ``0..255`` (THE chunkseg scaling).

    ``out = floor(clip(255 * (x - low) / (high - low), 0, 255) + 0.5)``, i.e. the paper's
    ``uint8(clip((x - low) / (high - low), 0, 1) * 255)`` with **round half up** to the
    nearest integer.  Computed in float64, in this order: ``x - low`` first, times 255,
    then one division by ``high - low``.  For integer ``x``, ``low`` and ``high`` (below
    2**53) every step but the division is exact and the division is correctly rounded,
    so the result is exactly the round-half-up of the rational value (a tie ``k + 1/2``
    is represented exactly and goes up).  NaN maps to 0, +inf to 255, -inf to 0.

    uint8/int8/uint16/int16 blocks go through a 256- or 65536-entry lookup table built
    with the same float64 formula (identical results, no float64 temporaries); other
    dtypes are scaled in slabs of 2**20 voxels, so temporaries stay small.

    Parameters
    ----------
    block : numpy.ndarray
        Any real dtype, any shape.
    low, high : float
        Intensity range, ``low < high``.

    Returns
    -------
    numpy.ndarray
        uint8, same shape as ``block``.

    Raises
    ------
    ParameterError
        ``low >= high`` or a non-finite bound.
    DTypeError
        Complex, bool or non-numeric ``block``.

    Examples
    --------
    >>> scale_to_uint8(np.array([0, 1, 2, 3, 4], np.uint16), 0, 4)
    array([  0,  64, 128, 191, 255], dtype=uint8)
    """
    low, high = check_range(low, high)
    block = np.asarray(block)
    if block.dtype.kind not in "uif":
        raise DTypeError(f"scale_to_uint8 needs a real integer or float array; got {block.dtype}")
    lut = offset = None
    if block.dtype.name in DENSE_DTYPES:
        info = np.iinfo(block.dtype)
        lut = _float64_scale(np.arange(info.min, info.max + 1, dtype=np.int64), low, high)
        lut, offset = lut.astype(np.uint8), -info.min
    out = np.empty(block.shape, dtype=np.uint8)
    flat_in, flat_out = block.reshape(-1), out.reshape(-1)
    for s in range(0, flat_in.size, _SLAB):
        part = flat_in[s : s + _SLAB]
        if lut is None:
            flat_out[s : s + _SLAB] = _float64_scale(part, low, high)
        else:
            flat_out[s : s + _SLAB] = lut[part.astype(np.intp) + offset if offset else part]
    return out


# --------------------------------------------------------------------------- histograms


def histogram_uint(block: np.ndarray) -> Histogram:
    """Exact value histogram of an integer block.

    uint8/uint16 (and int8/int16) use ``np.bincount`` in slabs (dense, fast); wider integers
    use ``np.unique(..., return_counts=True)``, whose size is the number of distinct
    values in the block.

    Returns
    -------
    values, counts : numpy.ndarray
        Sorted distinct values (block dtype) and their int64 counts.

    Raises
    ------
    DTypeError
        ``block`` is not an integer array.
    """
    block = np.asarray(block)
    if block.dtype.kind not in "iu":
        raise DTypeError(f"histogram_uint needs an integer array; got {block.dtype}")
    flat = block.reshape(-1)
    if block.dtype.name in DENSE_DTYPES:
        info = np.iinfo(block.dtype)
        counts = np.zeros(int(info.max) - int(info.min) + 1, dtype=np.int64)
        for s in range(0, flat.size, _SLAB):  # np.bincount copies its input to intp
            part = flat[s : s + _SLAB]
            idx = part if info.min == 0 else part.astype(np.intp) - info.min
            counts += np.bincount(idx, minlength=counts.size)
        nz = np.flatnonzero(counts)
        return (nz + info.min).astype(block.dtype), counts[nz]
    values, counts = np.unique(flat, return_counts=True)
    return values, counts.astype(np.int64)


def histogram_float(block: np.ndarray, vmin: float, vmax: float, bins: int) -> np.ndarray:
    """Dense histogram of a float block on ``bins`` equal bins spanning ``[vmin, vmax]``.

    Bin ``i`` holds ``vmin + i*w <= x < vmin + (i+1)*w`` with ``w = (vmax - vmin) / bins``
    (computed as ``floor((x - vmin) / w)`` in float64); ``vmax`` falls in the last bin.
    With ``vmin == vmax`` everything falls in bin 0.  Non-finite values are not allowed
    (check first).

    Returns
    -------
    numpy.ndarray
        int64 counts, length ``bins``.
    """
    flat = np.asarray(block).reshape(-1)
    width = (float(vmax) - float(vmin)) / bins
    if width <= 0:
        return np.bincount(np.zeros(flat.size, np.intp), minlength=bins).astype(np.int64)
    counts = np.zeros(bins, dtype=np.int64)
    for s in range(0, flat.size, _SLAB):
        idx = np.floor((flat[s : s + _SLAB].astype(np.float64) - float(vmin)) / width)
        np.clip(idx, 0, bins - 1, out=idx)
        counts += np.bincount(idx.astype(np.intp), minlength=bins)
    return counts


def merge_histograms(hists: Sequence[Histogram]) -> Histogram:
    """Sum sparse histograms ``(values, counts)`` (the reduction step across chunks)."""
    hists = [h for h in hists if len(h[0])]
    if not hists:
        raise InputError("cannot merge: every histogram is empty (no voxels)")
    if len(hists) == 1:
        return hists[0]
    values = np.concatenate([h[0] for h in hists])
    counts = np.concatenate([h[1] for h in hists])
    uniq, inverse = np.unique(values, return_inverse=True)
    total = np.zeros(uniq.size, dtype=np.int64)
    np.add.at(total, inverse, counts)
    return uniq, total


def order_statistics(hist: Histogram, ranks: np.ndarray) -> np.ndarray:
    """Values of the sorted data at 0-based ``ranks`` (the ``k``-th smallest), from a histogram."""
    values, counts = hist
    cum = np.cumsum(counts)
    pos = np.searchsorted(cum, np.asarray(ranks, dtype=np.int64), side="right")
    return values[pos]


def percentiles_from_histogram(hist: Histogram, percentiles: Sequence[float]) -> np.ndarray:
    """Percentiles of the data a histogram summarises, equal to ``numpy.percentile``.

    Implements NumPy's default ``method="linear"`` (Hyndman & Fan type 7) with the same
    floating-point operations: ``q = p / 100``; virtual index ``h = (n - 1) * q``;
    ``a, b`` = the order statistics at ``floor(h)`` and ``floor(h) + 1`` (both the last
    one when ``h >= n - 1``); ``g = h - floor(h)``; result ``a + (b - a) * g`` for
    ``g < 0.5`` and ``b - (b - a) * (1 - g)`` otherwise, with ``b - a`` taken in the data
    dtype like NumPy does.  So the result is bit-identical to
    ``np.percentile(data, percentiles)`` for integer data.

    Parameters
    ----------
    hist : (values, counts)
        From :func:`histogram_uint` / :func:`merge_histograms`.
    percentiles : sequence of float
        In [0, 100].

    Returns
    -------
    numpy.ndarray
        float64, one value per percentile.
    """
    values, counts = hist
    ps = np.asarray([float(p) for p in percentiles], dtype=np.float64)
    if ps.size and not ((ps >= 0) & (ps <= 100)).all():
        raise ParameterError(f"percentiles must lie in [0, 100]; got {ps.tolist()}")
    n = int(np.sum(counts))
    if n == 0:
        raise InputError("cannot take percentiles of an empty volume (0 voxels)")
    q = np.true_divide(ps, 100)
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev_i = np.where(above, n - 1, prev).astype(np.int64)
    next_i = np.where(above, n - 1, nxt).astype(np.int64)
    gamma = virtual - np.where(above, -1.0, prev)
    a = order_statistics(hist, prev_i)
    b = order_statistics(hist, next_i)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return out.astype(np.float64)
