"""Streaming intensity statistics of a dask array: histograms reduced across chunks.

One pass over the data: every chunk is reduced to a small value histogram
(:func:`chunkseg.ops.normalize.histogram_uint`), and histograms are summed in a tree
(``fan_in`` at a time), one graph per time point; time points run in a sliding window
and their histograms are folded as they finish (:func:`fold`), so memory is a few chunks
plus a few histograms whatever the volume size or series length.  Percentiles then
come from the summed histogram and equal ``numpy.percentile`` of the whole array
*exactly* for integer data.

Float data take two passes: (1) minimum, maximum and the count of NaN/Inf (any
non-finite voxel is an error); (2) a histogram of ``bins`` equal bins spanning
``[min, max]``.  Each order statistic is estimated by the centre of its bin, so a
percentile is off by at most half a bin width; the reported ``error_bound`` is one
full bin width ``(max - min) / bins`` to cover floating-point rounding at bin edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np

from chunkseg.engine.submit import run_windowed
from chunkseg.errors import DTypeError, InputError, ShapeError
from chunkseg.ops.normalize import (
    Histogram,
    check_percentiles,
    histogram_float,
    histogram_uint,
    merge_histograms,
    percentiles_from_histogram,
)

__all__ = ["FLOAT_BINS", "IntensityHistogram", "compute", "fold", "intensity_histogram",
           "percentiles", "tree_reduce"]

#: bins of the float histogram (error bound = (max - min) / FLOAT_BINS)
FLOAT_BINS = 1 << 20


@dataclass
class IntensityHistogram:
    """Histogram(s) of a whole volume.

    Attributes
    ----------
    hist : (values, counts)
        Over all voxels (all time points).  For float data ``values`` are bin centres.
    per_timepoint : list of (values, counts)
        One per time point (only when asked for).
    method : str
        ``"exact"`` (integer data) or ``"binned"`` (float data).
    error_bound : float
        Largest possible difference between a reported and the true percentile
        (0 for ``"exact"``).
    dtype : str
        The data's dtype.
    """

    hist: Histogram
    per_timepoint: list[Histogram] = field(default_factory=list)
    method: str = "exact"
    error_bound: float = 0.0
    dtype: str = ""

    @property
    def n(self) -> int:
        """Number of voxels summarised."""
        return int(np.sum(self.hist[1]))

    def percentiles(self, ps: Sequence[float], t: int | None = None) -> np.ndarray:
        """Percentiles (float64) over all voxels, or of time point ``t``."""
        hist = self.hist if t is None else self.per_timepoint[t]
        return percentiles_from_histogram(hist, ps)


def tree_reduce(parts: list, combine: Callable, fan_in: int) -> Any:
    """Combine delayed ``parts`` ``fan_in`` at a time until one delayed result is left."""
    if not parts:
        raise InputError("cannot summarise an empty array (it has no chunks)")
    while len(parts) > 1:
        parts = [dask.delayed(combine, pure=True)(parts[i : i + fan_in])
                 for i in range(0, len(parts), fan_in)]
    return parts[0]


def _blocks(darr: da.Array) -> list:
    return list(darr.to_delayed(optimize_graph=True).ravel())


def _sum_dense(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0)


def _float_summary(block: np.ndarray) -> np.ndarray:
    finite = np.isfinite(block)
    n_bad = int(block.size - np.count_nonzero(finite))
    if n_bad:
        vals = block[finite]
    else:
        vals = block
    if vals.size == 0:
        return np.array([np.inf, -np.inf, n_bad], dtype=np.float64)
    return np.array([vals.min(), vals.max(), n_bad], dtype=np.float64)


def _merge_summary(parts: list[np.ndarray]) -> np.ndarray:
    a = np.stack(parts)
    return np.array([a[:, 0].min(), a[:, 1].max(), a[:, 2].sum()])


def compute(objs: Sequence[Any], client: Any = None) -> list[Any]:
    """Compute delayed objects together, on ``client`` if given (else dask's scheduler)."""
    objs = list(objs)
    if client is not None:
        return client.gather(client.compute(objs))
    return list(dask.compute(*objs))


def fold(objs: Iterable[Any], combine: Callable, *, client: Any = None,
         keep: bool = False, name: Callable[[int], str] | None = None) -> tuple[Any, list[Any]]:
    """Compute delayed ``objs`` in a sliding window, combining results as they finish.

    Memory: the running result plus the window, whatever the number of objects.
    ``combine`` must be associative and commutative (results arrive in completion
    order).  Returns ``(combined, results in input order if keep else [])``.
    ``name(i)``: object ``i``'s task-key prefix (:func:`chunkseg.engine.submit.run_windowed`).
    """
    acc: list[Any] = []
    kept: dict[int, Any] = {}

    def on_done(i: int, result: Any) -> None:
        acc[:] = [result if not acc else combine([acc[0], result])]
        if keep:
            kept[i] = result

    run_windowed(([(i, o)] for i, o in enumerate(objs)), on_done, client=client, retries=0,
                 strict=True, name=name)
    return acc[0], [kept[i] for i in sorted(kept)]


def _histogram_t(t: int) -> str:
    return f"histogram-t{t:04d}"


def intensity_histogram(
    darr: da.Array,
    *,
    per_timepoint: bool = False,
    client: Any = None,
    bins: int = FLOAT_BINS,
    fan_in: int = 8,
    name: str = "",
) -> IntensityHistogram:
    """Histogram of every voxel of a (t, z, y, x) dask array, in one streaming pass.

    Parameters
    ----------
    darr : dask.array.Array
        4D ``(t, z, y, x)`` (3D is taken as one time point).  Integer or float.
    per_timepoint : bool
        Also keep one histogram per time point.
    client : distributed.Client, optional
        Run on this cluster; ``None`` uses dask's current scheduler.
    bins : int
        Bins of the float histogram.
    fan_in : int
        Histograms summed per reduction task.
    name : str
        The input's path, for error messages.

    Raises
    ------
    InputError
        Float data holding NaN or Inf (the message gives the count), or no voxels.
    DTypeError
        Complex, bool or other non-real data.
    """
    where = f"{name}: " if name else ""
    if darr.ndim == 3:
        darr = darr[None]
    if darr.ndim != 4:
        raise ShapeError(f"{where}expected a 4D (t, z, y, x) array; got shape {darr.shape}")
    if darr.size == 0:
        raise InputError(f"{where}cannot take percentiles of an empty volume {darr.shape}")
    kind = darr.dtype.kind
    n_t = darr.shape[0]

    def per_t(block_fn, combine, *args):  # one reduction graph per time point, lazily
        return (tree_reduce([dask.delayed(block_fn)(b, *args) for b in _blocks(darr[t])],
                            combine, fan_in) for t in range(n_t))

    if kind in "iu":
        total, hists = fold(per_t(histogram_uint, merge_histograms), merge_histograms,
                            client=client, keep=per_timepoint, name=_histogram_t)
        return IntensityHistogram(total, hists, "exact", 0.0, str(darr.dtype))
    if kind != "f":
        raise DTypeError(f"{where}percentiles need integer or float voxels; got {darr.dtype}")
    summary, _ = fold(per_t(_float_summary, _merge_summary), _merge_summary, client=client,
                      name=_histogram_t)
    vmin, vmax, n_bad = float(summary[0]), float(summary[1]), int(summary[2])
    if n_bad:
        raise InputError(
            f"{where}expected finite intensities; found {n_bad} NaN/Inf voxels of "
            f"{darr.size} (replace or mask them before normalizing)"
        )
    total, counts = fold(per_t(histogram_float, _sum_dense, vmin, vmax, bins), _sum_dense,
                         client=client, keep=per_timepoint, name=_histogram_t)
    width = (vmax - vmin) / bins
    centres = np.clip(vmin + (np.arange(bins) + 0.5) * width, vmin, vmax)

    def sparse(c: np.ndarray) -> Histogram:
        nz = np.flatnonzero(c)
        return centres[nz], c[nz]

    return IntensityHistogram(sparse(total), [sparse(c) for c in counts], "binned", width,
                              str(darr.dtype))


def percentiles(
    darr: da.Array,
    ps: Sequence[float],
    *,
    per_timepoint: bool = False,
    client: Any = None,
) -> dict[str, Any]:
    """Percentiles of a (t, z, y, x) dask array (exact for integers), one streaming pass.

    Returns
    -------
    dict
        ``percentiles`` (the ps), ``values`` (over all voxels), ``per_timepoint``
        (list of value lists, when asked), ``method``, ``error_bound``, ``n``.
    """
    ps = check_percentiles(ps)
    h = intensity_histogram(darr, per_timepoint=per_timepoint, client=client)
    out = {"percentiles": list(ps), "values": h.percentiles(ps).tolist(), "method": h.method,
           "error_bound": h.error_bound, "n": h.n}
    if per_timepoint:
        out["per_timepoint"] = [h.percentiles(ps, t).tolist() for t in range(len(h.per_timepoint))]
    return out
