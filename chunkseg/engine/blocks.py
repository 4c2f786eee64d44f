"""Shard-aligned, idempotent, resumable block writes of a dask array into a store.

Every write goes through :func:`write_volume`.  It rechunks the data to the output's
shard grid where needed (zarr 3 silently loses voxels when two tasks write different
chunks of one shard; zarr-python issue 3682) and writes each block in its own task.
A series is never one graph: the blocks of one time point (one block along axis 0)
form one graph, built only when the sliding window of in-flight blocks has room
(:mod:`chunkseg.engine.submit`), so client memory and the time to the first finished
block do not depend on the series length.  The data may be given as a dask array or
as a :class:`Series` that builds the graph of each time point on demand.  The graph of
a time point is submitted under readable string keys (:func:`named_graph`).

Only *after* a block's data are stored is it recorded in the store's completion
manifest (:mod:`chunkseg.engine.manifest`: one append-only file per time point);
with ``resume=True`` recorded blocks are not computed again.  A block whose task fails
is never recorded; after the bounded retries the failed blocks are listed in
:class:`~chunkseg.errors.BlockFailedError`.  Write tasks are named
``<command>-t<time point>-<z>.<y>.<x>-<token>`` and the tasks feeding them
``<command>-t<time point>-<layer>-<block>-<token>`` (the dashboard groups them by
command), and every finished time point is logged to ``<store>/progress.jsonl``.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import Delayed
from dask.task_spec import Task, TaskRef

from chunkseg.engine.manifest import Manifest, TimepointLog, done_blocks
from chunkseg.engine.submit import default_window, readable_graph, run_windowed
from chunkseg.errors import BlockFailedError, ShapeError

__all__ = ["Series", "WriteReport", "done_blocks", "named_graph", "progress_bar", "write_grid",
           "write_volume"]


@dataclass
class WriteReport:
    """What :func:`write_volume` did.

    Attributes
    ----------
    n_blocks : int
        Blocks in the output grid.
    written : int
        Blocks computed and written by this call.
    skipped : int
        Blocks already done (``resume``) and not recomputed.
    seconds : float
        Wall time of the call.
    grid : tuple of int
        The block shape (the output's shard shape, or chunk shape when unsharded).
    """

    n_blocks: int
    written: int
    skipped: int
    seconds: float
    grid: tuple[int, ...]
    failed: list[tuple[int, ...]] = field(default_factory=list)


def write_grid(arr) -> tuple[int, ...]:
    """The unit of safe parallel writes of a zarr array: its shard, else its chunk shape."""
    return tuple(arr.shards or arr.chunks)


@dataclass(frozen=True)
class Series:
    """A (t, z, y, x) series whose graph is built one slab of time points at a time.

    Attributes
    ----------
    shape : tuple of int
        ``(t, z, y, x)``.
    dtype : numpy.dtype
        Voxel dtype of the slabs.
    slab : callable
        ``slab(start, stop)`` -> the dask array of time points ``start:stop``
        (shape ``(stop - start, z, y, x)``).  Called once per ``step`` time points
        written.
    step : int
        Time points per slab (one graph; e.g. when one task predicts several tiny time
        points at once).  Default 1.
    """

    shape: tuple[int, ...]
    dtype: Any
    slab: Callable[[int, int], da.Array]
    step: int = 1

    @classmethod
    def of(cls, darr: da.Array | Series) -> Series:
        """A series view of a dask array (slices of it), or the series itself."""
        if isinstance(darr, Series):
            return darr
        return cls(tuple(darr.shape), darr.dtype, lambda a, b: darr[a:b])

    def to_dask(self) -> da.Array:
        """The whole series as one dask array (for small series and tests)."""
        n_t, step = self.shape[0], max(1, self.step)
        return da.concatenate([self.slab(t, min(t + step, n_t)) for t in range(0, n_t, step)])


@functools.lru_cache(maxsize=16)
def _open_for_write(array_path: str):
    import zarr

    # write every shard, all-zero ones too, so a missing file always means lost data
    return zarr.open_array(array_path, mode="r+").with_config({"write_empty_chunks": True})


def _write_block(block: np.ndarray, array_path: str, region: tuple[slice, ...],
                 rows: slice = slice(None)) -> int:
    """Store rows ``rows`` (axis 0) of a computed chunk as one block.  Returns the
    number of voxels."""
    part = block[rows]
    _open_for_write(array_path)[region] = part
    return int(part.size)


def _align(darr: da.Array, grid: tuple[int, ...]) -> da.Array:
    """Rechunk unless every dask chunk border already lies on the write grid.

    Blocks may span several whole shards (e.g. a TIFF slab of full planes): no two
    tasks then share a shard, which is all that safe parallel writes need.
    """
    def aligned(chunks: tuple[int, ...], g: int) -> bool:
        return bool(np.all(np.cumsum(chunks)[:-1] % g == 0))

    if all(aligned(c, g) for c, g in zip(darr.chunks, grid)):
        return darr
    target = tuple(
        tuple(min(g, n - s) for s in range(0, n, g)) for g, n in zip(grid, darr.shape)
    )
    return darr.rechunk(target)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar over ``total`` blocks labelled ``desc`` (disabled: counts silently)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "blocks", unit="block", disable=not enabled, leave=False)


def named_graph(darr: da.Array, prefix: str, token: str) -> tuple[dict, np.ndarray]:
    """The optimised graph of ``darr`` under readable string keys, and its block keys.

    Keys ``<prefix>-<layer>-<block index>-<token>``
    (:func:`chunkseg.engine.submit.readable_graph`; e.g.
    ``predict-t0042-predict_owned_stack-0,0,0,0-1a2b3c4d``).

    Returns
    -------
    graph : dict
        ``{key: dask task}``, self-contained.
    keys : numpy.ndarray of str
        The new key of every block of ``darr`` (shape ``darr.numblocks``).
    """
    keys = darr.__dask_keys__()
    graph, subs = readable_graph(darr.__dask_optimize__(darr.__dask_graph__(), keys),
                                 prefix, token)
    new_keys = np.empty(darr.numblocks, dtype=object)
    for idx in np.ndindex(*darr.numblocks):
        new_keys[idx] = subs[(darr.name, *idx)]
    return graph, new_keys


def task_prefix(desc: str) -> str:
    """Dashboard name of a command's tasks: ``"segment: flood"`` -> ``"segment_flood"``."""
    return re.sub(r"\W+", "_", desc).strip("_") or "write"


@dataclass
class _Plan:
    """Everything the per-time-point task builder needs (see :func:`write_volume`)."""

    series: Series
    out: Path
    array_path: str
    grid: tuple[int, ...]
    dtype: Any
    manifest: Manifest
    log: TimepointLog
    resume: bool
    wanted: set | None
    name: str
    counts: dict = field(default_factory=lambda: {"n": 0, "skipped": 0})

    def groups(self, bar) -> Iterator[list]:
        """One list of ``(index, write task)`` per slab of the series (``step`` time
        points, one graph): a write task per wanted, unfinished block of every row.

        A block is a block of the slab's dask grid (aligned to the write grid; it may
        span several shards).  Rows whose blocks are all done build no graph.
        """
        g0, n_t = self.grid[0], self.series.shape[0]
        n_rows, per_slab = math.ceil(n_t / g0), max(1, self.series.step // g0)
        token = uuid.uuid4().hex[:8]  # unique per call: a rerun never reuses old results
        rests = None  # block indices within a row, known once a slab is built
        for j0 in range(0, n_rows, per_slab):
            js = range(j0, min(j0 + per_slab, n_rows))
            done = {j: self.manifest.read(j) if self.resume else set() for j in js}
            built = None if rests is not None else self._slab(j0, js, token)
            if built is not None:
                rests = list(itertools.product(*(range(n) for n in built[0].numblocks[1:])))
            todo = {j: self._todo(j, done[j], rests, bar) for j in js}
            if not any(todo.values()):  # finished time points
                yield []
                continue
            slab, graph, keys = built or self._slab(j0, js, token)
            for j, indices in todo.items():
                if indices:
                    self.log.start(j, len(indices))
            yield [(idx, self._write_task(graph, keys, slab, j0 * g0, idx, token))
                   for indices in todo.values() for idx in indices]

    def _slab(self, j0: int, js: range, token: str) -> tuple[da.Array, dict, np.ndarray]:
        """The aligned slab of rows ``js``, its graph under readable keys and its keys."""
        g0 = self.grid[0]
        a, b = j0 * g0, min((js[-1] + 1) * g0, self.series.shape[0])
        slab = _align(self.series.slab(a, b).astype(self.dtype, copy=False),
                      (g0, *self.grid[1:]))
        return (slab, *named_graph(slab, f"{self.name}-t{j0:04d}", token))

    def _todo(self, j: int, done: set, rests: list, bar) -> list[tuple[int, ...]]:
        """The wanted block indices of time-point row ``j`` not yet done (counted)."""
        wanted = [(j, *rest) for rest in rests]
        if self.wanted is not None:
            wanted = [idx for idx in wanted if idx in self.wanted]
        todo = [idx for idx in wanted if idx not in done]
        self.counts["n"] += len(wanted)
        self.counts["skipped"] += len(wanted) - len(todo)
        bar.update(len(wanted) - len(todo))
        return todo

    def _write_task(self, graph: dict, keys: np.ndarray, slab: da.Array, a: int,
                    idx: tuple[int, ...], token: str) -> Delayed:
        """Add the write task of block ``idx`` (its rows of the slab chunk holding them)."""
        j, rest = idx[0], idx[1:]
        t0, t1 = j * self.grid[0] - a, min((j + 1) * self.grid[0], self.series.shape[0]) - a
        starts = np.cumsum((0, *slab.chunks[0]))
        c = int(np.searchsorted(starts, t0, side="right")) - 1  # chunk along t holding the row
        region = (slice(a + t0, a + t1), *(
            slice(sum(ch[:k]), sum(ch[: k + 1])) for ch, k in zip(slab.chunks[1:], rest)))
        key = f"{self.name}-t{j:04d}-{'.'.join(map(str, rest))}-{token}"
        graph[key] = Task(key, _write_block, TaskRef(keys[(c, *rest)]), self.array_path,
                          region, slice(int(t0 - starts[c]), int(t1 - starts[c])))
        return Delayed(key, graph)


def write_volume(
    darr: da.Array | Series,
    out: str | os.PathLike,
    *,
    client: Any = None,
    resume: bool = False,
    progress: bool = True,
    retries: int = 2,
    desc: str = "",
    blocks: Iterable[tuple[int, ...]] | None = None,
    window: int | None = None,
) -> WriteReport:
    """Compute ``darr`` block by block into the store at ``out``, time point by time point.

    Parameters
    ----------
    darr : dask.array.Array or Series
        Same shape as the store's array; any chunking (it is rechunked to the write
        grid when needed — give it that grid to avoid the rechunk).  A
        :class:`Series` builds the graph of each time point only when it is submitted
        (use it for long series whose graphs are built per time point anyway).
    out : path-like
        A store made by :func:`chunkseg.io.store.create_image`.
    client : distributed.Client, optional
        Run on this cluster; ``None`` uses dask's current scheduler (threads).
    resume : bool
        Skip blocks recorded in the completion manifest.
    progress : bool
        Show a progress bar over blocks.
    retries : int
        How many times a failed block is tried again.
    desc : str
        Progress-bar label; also names the tasks on the dashboard.
    blocks : iterable of tuple, optional
        Restrict the write to these block indices (e.g. some time points).
    window : int, optional
        Blocks in flight (default :func:`chunkseg.engine.submit.default_window`; for a
        :class:`Series` of several time points per slab, at least two slabs' blocks,
        so that one slab is read while the previous one is computed).

    Returns
    -------
    WriteReport

    Raises
    ------
    ShapeError
        ``darr`` and the store differ in shape.
    BlockFailedError
        Some blocks still failed after ``retries``; they are not recorded and the
        store must not be marked complete.
    """
    from chunkseg.io.store import open_array

    start = time.perf_counter()
    out = Path(out)
    arr = open_array(out, mode="r+")
    series = Series.of(darr)
    if tuple(arr.shape) != tuple(series.shape):
        raise ShapeError(f"{out}: store shape {arr.shape} differs from the data's "
                         f"{series.shape}")
    array_path = str(out / "0") if (out / "0" / "zarr.json").is_file() else str(out)
    plan = _Plan(series, out, array_path, write_grid(arr), arr.dtype, Manifest(out),
                 TimepointLog(out, desc or "write"), resume,
                 None if blocks is None else set(map(tuple, blocks)), task_prefix(desc))
    n_wanted = math.prod(math.ceil(n / g) for n, g in zip(series.shape, plan.grid))
    if window is None and series.step > 1:
        per_slab = n_wanted * min(series.step, series.shape[0]) // series.shape[0]
        window = max(default_window(client), 2 * per_slab)
    bar = progress_bar(n_wanted if blocks is None else len(plan.wanted), desc, progress)

    def finished(idx, voxels):
        plan.manifest.record(idx)  # the task returned: its data are stored
        plan.log.done(idx[0], voxels)
        bar.update(1)

    try:
        failed, error = run_windowed(plan.groups(bar), finished, client=client,
                                     window=window, retries=retries)
    finally:
        bar.close()
    n, skipped = plan.counts["n"], plan.counts["skipped"]
    report = WriteReport(n, n - skipped - len(failed), skipped,
                         time.perf_counter() - start, plan.grid, sorted(failed))
    if failed:
        raise BlockFailedError(
            f"{out}: {len(failed)} of {n - skipped} blocks failed after {retries} retries "
            f"(first: {sorted(failed)[:5]}; last error: {error}); they are not marked done and "
            "the output is not complete. Fix the cause and run again with --resume."
        )
    return report
