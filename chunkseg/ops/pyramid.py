"""Multiscale pyramid rules: level factors and the downsampling of one block.

A level halves y and x (and z once voxels are near isotropic) until a plane fits the
target size.  Intensities and probabilities are averaged over each window; labels
and masks take the window's most frequent value (ties to the largest, so a
one-voxel membrane in a mask survives a 2 x 2 window it half fills).  Windows at
the far edge of an odd-sized axis hold fewer voxels and use only those: the level
shape is ``ceil(n / f)``.  Both rules centre level ``k`` voxels on the middle of
their window, so every level of every output shares one translation,
``(F - 1) / 2`` voxels of level 0 where ``F`` is the cumulative factor.

A block whose extent is a multiple of the factors (all but the last along each
axis) downsamples to exactly the voxels the whole array gives there, so a chunked
pyramid equals the in-memory one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from chunkseg.defaults import PYRAMID_PLANE
from chunkseg.errors import ParameterError

__all__ = [
    "PYRAMID_METHODS",
    "downsample",
    "downsample_mean",
    "downsample_mode",
    "level_factors",
    "level_shape",
]

#: a voxel is near isotropic (z joins the downsampling) when z spacing < this x y spacing
ISOTROPY = math.sqrt(2.0)


def level_factors(
    shape: Sequence[int],
    voxel_size: Sequence[float],
    *,
    plane: int = PYRAMID_PLANE,
) -> list[tuple[int, int, int]]:
    """Factors ``(fz, fy, fx)`` of each level below level 0, relative to the level above.

    y and x are halved while the plane exceeds ``plane`` voxels on a side; z is
    halved with them when its spacing is below ``sqrt(2)`` times the in-plane
    spacing (halving it then brings the voxel closer to a cube) and it has more
    than one slice.

    Parameters
    ----------
    shape : sequence of 3 int
        Level-0 shape ``(z, y, x)``.
    voxel_size : sequence of 3 float
        Level-0 voxel size ``(z, y, x)``.
    plane : int
        The largest plane (y and x) of the coarsest level.

    Returns
    -------
    list of tuple of int
        Empty when level 0 already fits.

    Examples
    --------
    >>> level_factors((251, 1024, 1024), (2.0, 0.5, 0.5))
    [(1, 2, 2)]
    >>> level_factors((64, 2048, 2048), (1.0, 1.0, 1.0), plane=512)
    [(2, 2, 2), (2, 2, 2)]
    """
    if int(plane) < 1:
        raise ParameterError(f"pyramid plane must be a positive integer; got {plane!r}")
    z, y, x = (int(s) for s in shape)
    vz, vy, vx = (float(v) for v in voxel_size)
    out = []
    while y > plane or x > plane:
        fz = 2 if z > 1 and vz < ISOTROPY * min(vy, vx) else 1
        out.append((fz, 2, 2))
        z, y, x = -(-z // fz), -(-y // 2), -(-x // 2)
        vz, vy, vx = vz * fz, vy * 2, vx * 2
    return out


def level_shape(shape: Sequence[int], factors: Sequence[int]) -> tuple[int, ...]:
    """Shape after downsampling by ``factors`` (``ceil(n / f)`` per axis)."""
    return tuple(-(-int(n) // int(f)) for n, f in zip(shape, factors))


def _check(block: np.ndarray, factors: Sequence[int]) -> tuple[int, ...]:
    factors = tuple(int(f) for f in factors)
    if len(factors) != block.ndim or any(f < 1 for f in factors):
        raise ParameterError(
            f"factors must be {block.ndim} positive integers (one per axis of the block); "
            f"got {factors!r}")
    return factors


def _windows(
    block: np.ndarray, factors: tuple[int, ...]
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each window position's voxels (a strided view) and where it exists (None: everywhere).

    The block is edge-padded to a multiple of the factors; the mask marks the
    padded voxels, which lie in the last window of an axis only.
    """
    pad = [(0, -n % f) for n, f in zip(block.shape, factors)]
    x = np.pad(block, pad, mode="edge") if any(p for _, p in pad) else block
    out = level_shape(block.shape, factors)
    for offsets in itertools.product(*(range(f) for f in factors)):
        view = x[tuple(slice(o, None, f) for o, f in zip(offsets, factors))]
        valid = None
        for axis, (o, f, n, m) in enumerate(zip(offsets, factors, block.shape, out)):
            if (m - 1) * f + o >= n:  # this offset falls off the end of the axis
                keep = np.arange(m) * f + o < n
                keep = keep.reshape([-1 if a == axis else 1 for a in range(block.ndim)])
                valid = keep if valid is None else valid & keep
        yield view, valid


def _accumulator(dtype: np.dtype) -> np.dtype:
    """Sum type: float32 holds sums of up to 256 16-bit values exactly; wider types take float64."""
    if dtype == np.bool_ or (np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2):
        return np.dtype(np.float32)
    return np.dtype(np.float32 if dtype == np.float32 else np.float64)


def downsample_mean(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Mean of each window of ``factors`` voxels, in the block's dtype.

    Integer means are rounded to the nearest integer (halves to even); edge
    windows average only the voxels they hold.  Sums are exact for integers up to
    16 bits and 32 bits (float32 / float64 accumulators); float32 blocks are summed in
    float32.

    Parameters
    ----------
    block : numpy.ndarray
        Any number of axes.
    factors : sequence of int
        Window size per axis (1 keeps an axis).

    Returns
    -------
    numpy.ndarray
        Shape ``ceil(block.shape / factors)``, dtype of ``block``.

    Examples
    --------
    >>> downsample_mean(np.array([[1, 3, 5]], np.uint8), (1, 2))
    array([[2, 5]], dtype=uint8)
    """
    factors = _check(block, factors)
    acc = _accumulator(block.dtype)
    pad = [(0, -n % f) for n, f in zip(block.shape, factors)]
    x = np.pad(block, pad) if any(p for _, p in pad) else block  # zeros add nothing
    total = np.zeros(level_shape(block.shape, factors), acc)
    for offsets in itertools.product(*(range(f) for f in factors)):
        total += x[tuple(slice(o, None, f) for o, f in zip(offsets, factors))]
    full = 1
    for axis, (n, f, m) in enumerate(zip(block.shape, factors, total.shape)):
        if n % f == 0:
            full *= f
            continue
        count = np.full(m, f, acc)
        count[-1] = n % f  # the last window holds the remainder
        total /= count.reshape([-1 if a == axis else 1 for a in range(block.ndim)])
    total /= full
    if np.issubdtype(block.dtype, np.integer):
        np.rint(total, out=total)
    return total.astype(block.dtype)


def downsample_mode(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Most frequent value of each window of ``factors`` voxels; ties go to the largest.

    Every output value is a value of its window, so labels stay labels and a mask
    stays binary.

    Parameters
    ----------
    block : numpy.ndarray
        Labels or a mask, any number of axes.
    factors : sequence of int
        Window size per axis (1 keeps an axis).

    Returns
    -------
    numpy.ndarray
        Shape ``ceil(block.shape / factors)``, dtype of ``block``.

    Examples
    --------
    >>> downsample_mode(np.array([[7, 7, 2, 0, 5]]), (1, 4))
    array([[7, 5]])
    """
    factors = _check(block, factors)
    windows = list(_windows(block, factors))
    shape = level_shape(block.shape, factors)
    best = np.zeros(shape, block.dtype)
    best_count = np.zeros(shape, np.uint8 if len(windows) < 256 else np.uint32)
    for vj, mj in windows:
        count = np.zeros(shape, best_count.dtype)
        for vi, mi in windows:
            count += (vi == vj) if mi is None else (vi == vj) & mi
        if mj is not None:
            count *= mj
        better = (count > best_count) | ((count == best_count) & (vj > best))
        np.copyto(best, vj, where=better)
        np.copyto(best_count, count, where=better)
    return best


#: pyramid rule name -> block function
PYRAMID_METHODS = {"mean": downsample_mean, "mode": downsample_mode}


def downsample(block: np.ndarray, factors: Sequence[int], *, method: str) -> np.ndarray:
    """Downsample a block by ``factors`` with the rule ``method`` (``"mean"`` or ``"mode"``)."""
    if method not in PYRAMID_METHODS:
        raise ParameterError(
            f"pyramid method must be one of {sorted(PYRAMID_METHODS)}; got {method!r}")
    return PYRAMID_METHODS[method](block, factors)
