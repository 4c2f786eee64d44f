"""Lazy per-time-point wrappers of block functions on (t, z, y, x) dask arrays.

:func:`scale_volume` scales each time point to uint8 with its own range;
:func:`membrane_volume` makes the membrane mask of a label series with the halo its
width needs (``map_overlap``, nothing padded at the faces), equal to
:func:`chunkseg.ops.boundaries.membrane_mask` of each whole time point.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.engine.blocks import Series
from chunkseg.errors import DTypeError, ParameterError, ShapeError
from chunkseg.ops.boundaries import MaskMode, check_width, halo_for_width, membrane_mask
from chunkseg.ops.normalize import check_range, scale_to_uint8

__all__ = ["membrane_volume", "scale_volume"]


def _scale_tblock(block: np.ndarray, lows, highs, block_info=None) -> np.ndarray:
    t0 = block_info[0]["array-location"][0][0] if block_info else 0
    out = np.empty(block.shape, np.uint8)
    for i in range(block.shape[0]):
        out[i] = scale_to_uint8(block[i], lows[t0 + i], highs[t0 + i])
    return out


def scale_volume(darr: da.Array, lows: Sequence[float], highs: Sequence[float]) -> Series:
    """Lazily scale a (t, z, y, x) dask array to uint8, time point ``t`` with its own range.

    A :class:`~chunkseg.engine.blocks.Series`: the graph of a time point is built when
    it is written, and its tasks carry only their own time points' ranges.
    """
    lows, highs = list(map(float, lows)), list(map(float, highs))
    if len(lows) != darr.shape[0] or len(highs) != darr.shape[0]:
        raise ParameterError(
            f"need one range per time point ({darr.shape[0]}); got {len(lows)} lows, "
            f"{len(highs)} highs"
        )
    for t, (lo, hi) in enumerate(zip(lows, highs)):
        try:
            check_range(lo, hi)
        except ParameterError as exc:
            raise ParameterError(f"time point {t}: {exc}") from None

    def slab(a: int, b: int) -> da.Array:
        return darr[a:b].map_blocks(_scale_tblock, lows[a:b], highs[a:b], dtype=np.uint8,
                                    meta=np.empty((0,) * darr.ndim, np.uint8))

    return Series(tuple(darr.shape), np.dtype(np.uint8), slab)


def _mask_tblock(block: np.ndarray, **options: Any) -> np.ndarray:
    out = np.empty(block.shape, np.uint8)
    for i in range(block.shape[0]):  # time points are independent volumes
        out[i] = membrane_mask(block[i], **options)
    return out


def membrane_volume(
    labels: da.Array,
    *,
    width: int = 1,
    ignore: Iterable[int] = (0,),
    mode: MaskMode = "thick",
    in_plane: bool = False,
    name: str = "",
) -> da.Array:
    """Lazy membrane mask (uint8 0/1) of a (t, z, y, x) label dask array.

    Equals ``membrane_mask`` (same ``width``, ``ignore``, ``mode``, ``in_plane``)
    applied to each whole time point in memory.

    Raises
    ------
    DTypeError
        Float (or other non-integer) labels.
    """
    where = f"{name}: " if name else ""
    if labels.dtype.kind not in "iub":
        raise DTypeError(
            f"{where}labels must be integers (uint8 .. uint64); got dtype {labels.dtype}"
        )
    if labels.ndim != 4:
        raise ShapeError(f"{where}expected 4D (t, z, y, x) labels; got shape {labels.shape}")
    width = check_width(width)
    membrane_mask(np.zeros((1, 1, 1), labels.dtype), width=width, ignore=ignore, mode=mode)
    halo = halo_for_width(width)
    return labels.map_overlap(
        _mask_tblock, depth={0: 0, 1: 0 if in_plane else halo, 2: halo, 3: halo},
        boundary="none", dtype=np.uint8, meta=np.empty((0, 0, 0, 0), np.uint8),
        width=width, ignore=tuple(int(v) for v in ignore), mode=mode, in_plane=bool(in_plane),
    )
