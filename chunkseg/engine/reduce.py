"""Streaming reductions with halos: a block function per chunk, results summed in a tree.

:func:`overlap_reduce` runs ``fn(*extended_blocks)`` on every chunk of one or more
aligned dask arrays, each extended by its own halo (``depth`` voxels per side, the
``fill`` value outside the volume, as :func:`dask.array.overlap.overlap` with a
constant boundary), and sums the per-block results (arrays or dicts of arrays) in a
tree (:func:`chunkseg.engine.stats` helpers, ``fan_in`` at a time).  Nothing bigger
than one extended block and a few results is ever held by a task, whatever the
volume size.  Chunks smaller than a halo are merged first (dask's overlap rule),
applied to all arrays alike so their blocks stay aligned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from chunkseg.engine.stats import compute, tree_reduce
from chunkseg.errors import ShapeError

__all__ = ["compute", "overlap_reduce", "sum_results"]  # compute: from engine.stats


def sum_results(parts: Sequence[Any]) -> Any:
    """Sum arrays, or dicts of arrays key by key."""
    parts = list(parts)
    if isinstance(parts[0], Mapping):
        return {k: np.sum([p[k] for p in parts], axis=0) for k in parts[0]}
    return np.sum(parts, axis=0)


def _aligned(arrays: Sequence[da.Array], depths: Sequence[Sequence[int]]) -> list[da.Array]:
    first = arrays[0]
    for a in arrays[1:]:
        if a.shape != first.shape:
            raise ShapeError(f"arrays to reduce together must have one shape; got "
                             f"{first.shape} and {a.shape}")
    need = [max(int(d[i]) for d in depths) for i in range(first.ndim)]
    chunks = da.overlap.ensure_minimum_chunksize
    new = tuple(chunks(n, c) if n else c for n, c in zip(need, first.chunks))
    return [a.rechunk(new) for a in arrays]


def overlap_reduce(
    fn: Callable[..., Any],
    arrays: Sequence[da.Array],
    *,
    depths: Sequence[Sequence[int]] | None = None,
    fill: Any = 0,
    combine: Callable[[Sequence[Any]], Any] = sum_results,
    fan_in: int = 8,
) -> Any:
    """Lazy (``dask.delayed``) reduction of ``fn`` over the aligned blocks of ``arrays``.

    Parameters
    ----------
    fn : callable
        ``fn(*blocks) -> result`` with block ``i`` of ``arrays[i]`` extended by
        ``depths[i]`` voxels on each side of each axis.
    arrays : sequence of dask.array.Array
        Same shape; the chunks of the first set the block grid.
    depths : sequence of per-axis int sequences, optional
        Halo of each array (default none).
    fill : scalar
        Value outside the volume.
    combine : callable
        Sums a list of results (default :func:`sum_results`).
    fan_in : int
        Results combined per reduction task.

    Returns
    -------
    dask.delayed.Delayed
        The combined result; compute many of them in one call (:func:`compute`)
        to read each chunk once.
    """
    shape = arrays[0].shape
    depths = [(0,) * len(shape)] * len(arrays) if depths is None else depths
    # a halo longer than the axis is clipped to it for dask and padded back in the task
    clipped = [tuple(min(int(v), n) for v, n in zip(d, shape)) for d in depths]
    extra = [tuple(int(v) - c for v, c in zip(d, cd)) for d, cd in zip(depths, clipped)]
    aligned = _aligned(arrays, clipped)
    blocks = []
    for a, d in zip(aligned, clipped):
        if any(d):
            a = da.overlap.overlap(a, depth=dict(enumerate(d)),
                                   boundary={i: fill for i in range(a.ndim)},
                                   allow_rechunk=False)
        blocks.append(a.to_delayed(optimize_graph=False).ravel())
    task = dask.delayed(_call, pure=True)
    return tree_reduce([task(fn, extra, fill, *bs) for bs in zip(*blocks)], combine, fan_in)


def _call(fn: Callable[..., Any], extra: Sequence[Sequence[int]], fill: Any,
          *blocks: np.ndarray) -> Any:
    blocks = [np.pad(b, [(e, e) for e in ex], constant_values=fill) if any(ex) else b
              for b, ex in zip(blocks, extra)]
    return fn(*blocks)
