"""Blockwise cell segmentation with an exact global merge across chunk faces.

The volume is cut into processing blocks (any shape; they need not divide the
volume).  Every step is either a bounded-support rule computed on a block plus a
halo at least as wide as its support, or a merge of mergeable partial results, so
the labels equal the whole-volume result voxel for voxel (same ids, not only the
same partition) for every block shape.  The rules are a :class:`BlockwiseMethod`:
the seeded flood (:func:`flood_method`, in-memory reference :func:`segment_array`)
or the fragments and agglomeration of :mod:`chunkseg.engine.agglomerate`.

A. **seeds** — per block, read the probability with the method's seed halo,
   compute the seed mask of the owned region (exact), label its components and give
   them block-unique provisional ids ``(block + 1) << 32 | local``; saved as runs
   along x (:class:`SeedRuns`, one ``.npz`` per block: seeds are sparse).
A2. **face merge** — for every internal block face, paint the two facing planes of
   provisional seed ids from the runs, collect the touching pairs and resolve them by union-find
   (:func:`chunkseg.ops.segstats.union_map`): the global seed components, exactly;
   one id map file per time point in the work folder.
B. **flood** — per block, read the seed runs (their ids mapped to the roots) and the
   probability with the flood halo (:func:`chunkseg.ops.watershed.flood_halo`) and run
   the bounded flood; the owned region is exact by the light-cone argument, and the
   flood stops updating voxels outside the light cone of that region (``exact=``).
   The block's labels go to the work store as dense uint32 indices into its label
   table, which is saved with its statistics.
   The probability is read through a per-process cache of decoded chunks
   (:mod:`chunkseg.io.chunk_cache`): neighbouring halos share storage chunks.
C. **statistics** — computed inside each flood task (no second read): sizes / sums /
   bounding boxes / first voxels of the owned region and the edge table of the face
   pairs it owns (:func:`chunkseg.ops.rag.block_edges`; the flood region has one extra
   voxel on the high side, so the neighbour voxel is exact too), saved as small
   ``.npz`` files and summed per time point; then the method's global ``plan`` (small
   segments merged, or the agglomeration) numbers the cells by their first voxel;
   its id map goes to a file, its cell statistics to the caller.
D. **relabel** — the final ids written with :func:`chunkseg.engine.blocks.write_volume`,
   each block's dense labels mapped through its label table and its time point's id
   map file.

Memory: one block plus halo per task; the driver holds the per-segment tables and
the edge table of one time point (O(segments + edges)) and nothing per time point
beyond a cell count.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from chunkseg.defaults import SEGMENT_BLOCK
from chunkseg.engine.blocks import Series, progress_bar, write_volume
from chunkseg.engine.geometry import Block, cover, grid_shape
from chunkseg.engine.submit import run_windowed
from chunkseg.errors import BlockFailedError
from chunkseg.io.chunk_cache import read_cached
from chunkseg.ops.rag import block_edges, split_table
from chunkseg.ops.segstats import (
    Runs, SegStats, block_stats, clip_runs, combine_stats, face_pairs, finish_labels,
    label_runs, merge_plan, paint_runs, relabel, sum_pair_counts, union_map,
)
from chunkseg.ops.watershed import (
    SegmentParams, as_probability, flood, flood_halo, label_seeds, seed_halo, seed_mask,
    segment_block,
)

__all__ = ["WORK_LAYOUT", "BlockwiseMethod", "Reader", "SeedRuns", "final_labels", "flood_method",
           "remove_work", "segment_array", "segment_volume"]


#: version of the work folder's layout (stores and files); a resume fingerprint names it,
#: so a folder written by another layout is not resumed
WORK_LAYOUT = 2


@dataclass(frozen=True)
class BlockwiseMethod:
    """The rules the blockwise engine runs (module-level callables: they are pickled).

    Attributes
    ----------
    seeds : callable
        ``seeds(prob) -> bool mask`` of a probability block; exact on the block
        without its ``seed_halo`` margin.
    seed_halo : tuple of 3 int
    flood : SegmentParams
        The bounded flood that grows the seed components.
    plan : callable
        ``plan(stats, edges) -> (keys, final ids, cells)``: the global step on the
        segment statistics and the edge table (:mod:`chunkseg.ops.rag`).
    """

    seeds: Callable[[np.ndarray], np.ndarray]
    seed_halo: tuple[int, int, int]
    flood: SegmentParams
    plan: Callable[[SegStats, np.ndarray], tuple]


def _flood_plan(stats: SegStats, table: np.ndarray, *, min_voxels: float) -> tuple:
    return merge_plan(stats, split_table(table)[1][:, :3], min_voxels=min_voxels)


def flood_method(params: SegmentParams) -> BlockwiseMethod:
    """The seeded bounded flood (:mod:`chunkseg.ops.watershed`) as a blockwise method."""
    return BlockwiseMethod(functools.partial(seed_mask, params=params), seed_halo(params),
                           params, functools.partial(
                               _flood_plan, min_voxels=params.min_size / params.voxel_volume))


class Reader:
    """Picklable reader of ``(t, z-range, y-range, x-range)`` regions of a 4D volume.

    Parameters
    ----------
    source : path-like, numpy array or dask array
        A Zarr store (chunkseg OME-Zarr group, or a plain 3D / 4D array; opened once
        per process) or an array with axes ``(t, z, y, x)``.
    cache : bool
        A Zarr store: read whole chunks through the per-process cache of decoded chunks
        (:mod:`chunkseg.io.chunk_cache`), for a store read many times with halos and
        not written meanwhile.
    """

    def __init__(self, source: Any, *, cache: bool = False) -> None:
        self.path = str(source) if isinstance(source, (str, os.PathLike)) else None
        self.array = None if self.path else source
        self.token = uuid.uuid4().hex if cache and self.path else None

    def __call__(self, t: int, region: Sequence[slice]) -> np.ndarray:
        key = (int(t), *region)
        if self.path is not None:
            arr = _open(self.path)
            key = key if arr.ndim == 4 else tuple(region)
            if self.token is not None:
                return read_cached(arr, key, (self.token, int(t)))  # one per time point
            return np.asarray(arr[key])
        block = self.array[key]
        if isinstance(block, da.Array):
            return block.compute(scheduler="sync")
        return np.asarray(block)


@functools.lru_cache(maxsize=32)
def _open(path: str):
    from chunkseg.io.store import open_array

    return open_array(path)


def segment_array(prob: np.ndarray, params: SegmentParams) -> tuple[np.ndarray, SegStats]:
    """In-memory reference: labels (uint32) and cell statistics of one 3D volume."""
    return finish_labels(segment_block(prob, params),
                         min_voxels=params.min_size / params.voxel_volume)


class SeedRuns:
    """Picklable reader of the seed ids the seed tasks saved, as runs along x.

    One ``.npz`` per block and output time point in ``folder``
    (:func:`chunkseg.ops.segstats.label_runs` of the block's ids, block coordinates):
    seeds are sparse, so a region is assembled from the runs of the blocks it meets.
    """

    def __init__(self, folder: str | os.PathLike, block: Sequence[int]) -> None:
        self.folder, self.block = str(folder), tuple(int(b) for b in block)

    def runs(self, k: int, region: Sequence[slice]) -> Runs:
        """The runs of output time point ``k`` inside ``region`` (region coordinates)."""
        parts = []
        for idx in itertools.product(*(range(r.start // b, (r.stop - 1) // b + 1)
                                       for r, b in zip(region, self.block))):
            with np.load(_block_file(self.folder, k, idx)) as f:
                runs = f["starts"], f["lengths"], f["values"]
            box = [slice(r.start - i * b, r.stop - i * b)
                   for r, i, b in zip(region, idx, self.block)]
            parts.append(clip_runs(*runs, box))
        return tuple(np.concatenate(a) for a in zip(*parts))  # type: ignore[return-value]

    def __call__(self, k: int, region: Sequence[slice]) -> np.ndarray:
        """Dense uint64 seed ids of ``region`` of output time point ``k``."""
        shape = [r.stop - r.start for r in region]
        return paint_runs(np.zeros(shape, np.uint64), *self.runs(k, region))


def _seed_task(read, t, k, idx, lin, shape3, block, method, folder):
    """Block-unique seed ids ``(lin + 1) << 32 | local`` of one block, saved as runs."""
    b = Block.at(idx, shape=shape3, block=block, halo=method.seed_halo)
    seeds = method.seeds(as_probability(read(t, b.read)))[b.crop]
    starts, lengths, local = label_runs(label_seeds(seeds)[0])
    values = local.astype(np.uint64) | (np.uint64(lin + 1) << np.uint64(32))
    _save_npz(_block_file(folder, k, idx), starts=starts, lengths=lengths, values=values)


def _face_task(read, k, idx, shape3, block):
    region = Block.at(idx, shape=shape3, block=block).owned
    pairs = []
    for axis in range(3):
        stop = region[axis].stop
        if stop >= shape3[axis]:
            continue
        a = list(region)
        b = list(region)
        a[axis], b[axis] = slice(stop - 1, stop), slice(stop, stop + 1)
        pairs.append(face_pairs(read(k, a), read(k, b)))
    return pairs


def _flood_task(read_prob, read_seeds, t, k, idx, shape3, block, params, seed_map, stats_dir):
    """Flood one block (seed ids mapped to their roots by the file ``seed_map``): its
    dense labels (uint32; label ``d`` is ``ids[d - 1]``), and in its statistics file
    the segment statistics, the edge table and that label table ``ids``.

    The region read is the owned block grown by the flood halo, plus one more voxel on
    the high side, so the owned block *and* its high-side neighbour voxels are exact:
    the edges across this block's high faces come from here, with no second read.
    """
    b = Block.at(idx, shape=shape3, block=block, halo=flood_halo(params))
    ext = tuple(slice(e.start, min(s, e.stop + 1)) for e, s in zip(b.read, shape3))
    # dense labels through the flood, statistics and edges (ids[d - 1] is label d)
    starts, lengths, values = read_seeds.runs(k, ext)
    ids, dense_ids = np.unique(relabel(values, *_load_map(seed_map)), return_inverse=True)
    markers = paint_runs(np.zeros([e.stop - e.start for e in ext], np.int32), starts, lengths,
                         dense_ids + 1)
    prob = as_probability(read_prob(t, ext))
    plus = tuple(slice(c.start, min(c.stop + 1, n)) for c, n in zip(b.crop, prob.shape))
    lab = flood(markers, prob, params, exact=plus)
    start = time.perf_counter()
    dense = lab[b.crop]
    st = block_stats(dense, offset=[r.start for r in b.owned], shape=shape3, ids=ids)
    edges = block_edges(lab[plus], prob[plus], dense.shape, ids=ids)
    _save_npz(_block_file(stats_dir, k, idx), ids=st.ids, count=st.count, sums=st.sums,
              lo=st.lo, hi=st.hi, first=st.first, edges=edges, labels=ids,
              seconds=time.perf_counter() - start)
    return dense.astype(np.uint32)[None]


def _block_file(folder: str | os.PathLike, k: int, idx: Sequence[int]) -> Path:
    """The file of block ``idx`` of output time point ``k`` in ``folder`` (its statistics
    or its seed runs)."""
    return Path(folder) / ("_".join(map(str, (k, *idx))) + ".npz")


def _map_file(folder: str | os.PathLike, kind: str, k: int) -> Path:
    """The id map (``kind``: ``"seeds"`` or ``"cells"``) of output time point ``k``."""
    return Path(folder) / f"{kind}_{k:06d}.npz"


def _save_npz(path: Path, **arrays: Any) -> None:
    """Write an ``.npz`` atomically: it exists under its name only when complete."""
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_map(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, values)`` of an id map (``keys`` sorted)."""
    with np.load(path) as f:
        return f["keys"], f["values"]


def _load_stats(stats_dir: Path, k: int, grid) -> tuple[SegStats, np.ndarray, float]:
    parts, pairs, secs = [], [], 0.0
    for idx in grid:
        with np.load(_block_file(stats_dir, k, idx)) as f:
            parts.append(SegStats(f["ids"], f["count"], f["sums"], f["lo"], f["hi"], f["first"]))
            pairs.append(f["edges"])
            secs += float(f["seconds"])
    return combine_stats(parts), sum_pair_counts(pairs), secs


def _assemble(blocks: dict, grid_shape: Sequence[int], shapes: dict, dtype) -> da.Array:
    """One dask array (t, z, y, x) from delayed blocks indexed ``(t, bz, by, bx)``."""
    def nest(prefix: tuple, depth: int):
        if depth == len(grid_shape):
            return da.from_delayed(blocks[prefix], shape=shapes[prefix], dtype=dtype)
        return [nest(prefix + (i,), depth + 1) for i in range(grid_shape[depth])]

    return da.block(nest((), 0))


def _work_store(path: Path, shape4, block, voxel_size, kind: str, *, resume: bool = False,
                fingerprint: str | None = None) -> str:
    """Create a work store (replacing an old one), or with ``resume`` reopen a matching one."""
    from chunkseg.io.store import create_image

    create_image(path, shape=shape4, dtype=np.uint32, voxel_size=voxel_size,
                 chunks=(1, *_work_chunks(block)), shards=(1, *block), codec="lz4",
                 attrs={"kind": kind, "fingerprint": fingerprint},
                 overwrite=not resume, resume=resume)
    return str(path)


#: the inner chunk a work store aims at: a halo read decodes little more than it needs
_WORK_CHUNK = (16, 64, 64)


def _work_chunks(block: Sequence[int]) -> tuple[int, ...]:
    """Inner chunks of a work store whose shard is one ``block``.

    Per axis the largest divisor of the block side up to :data:`_WORK_CHUNK`, or the
    whole side when that divisor is under a quarter of the aim (a prime side).
    """
    out = []
    for b, aim in zip(block, _WORK_CHUNK):
        d = max(k for k in range(1, min(b, aim) + 1) if b % k == 0)
        out.append(d if 4 * d >= min(b, aim) else b)
    return tuple(out)


def segment_volume(
    prob: Reader,
    shape: Sequence[int],
    params: SegmentParams | BlockwiseMethod,
    *,
    work: str | os.PathLike,
    block: Sequence[int] = SEGMENT_BLOCK,
    timepoints: Sequence[int] | None = None,
    client: Any = None,
    progress: bool = False,
    resume: bool = False,
    fingerprint: str | None = None,
    on_cells: Callable[[int, SegStats], None] | None = None,
) -> dict[str, Any]:
    """Segment every (selected) time point blockwise into uint64 provisional labels.

    Parameters
    ----------
    prob : Reader
        Membrane probability ``(t, z, y, x)`` (float in [0, 1] or uint8).
    shape : sequence of 4 int
        Shape of ``prob``.
    params : SegmentParams or BlockwiseMethod
        The seeded flood's parameters, or the rules of another method (e.g. the
        fragments and agglomeration of :mod:`chunkseg.engine.agglomerate`).
    work : path-like
        Folder for the work store and files (created, left for the caller to remove).
    block : sequence of 3 int
        Processing block ``(z, y, x)``; the result does not depend on it.
    timepoints : sequence of int, optional
        Time points of ``prob`` to segment (default all); output index k holds
        ``timepoints[k]``.
    client : distributed.Client, optional
    resume : bool
        Reopen the existing work store (its ``fingerprint`` must equal ``fingerprint``)
        and skip the seed / flood blocks already done (a seed block's runs file, a
        done flood block's statistics file is written before its data, so it is there
        too).  Without it the work store and seed runs are replaced.
    fingerprint : str, optional
        Recorded in the work store; must describe the input, ``params``, ``block``,
        ``timepoints`` (the provisional ids depend on the block grid) and
        :data:`WORK_LAYOUT`.
    on_cells : callable, optional
        ``on_cells(k, cells)`` with the cell statistics (:class:`SegStats`, ``ids`` =
        final ids) of output time point ``k``, in order, as soon as its global step is
        done (e.g. to write the cell table); nothing per time point is kept here.

    Returns
    -------
    dict
        ``flood`` (path of the provisional-label store, axes t z y x: per block dense
        uint32 labels), ``stats`` (folder of the per-block statistics with their label
        tables) and ``maps`` (folder of the per-time-point id maps): the arguments of
        :func:`final_labels`;
        ``n_cells`` (cells per output time point), ``seconds`` per phase, ``halo`` per
        phase, ``blocks``, ``face_pairs``, ``graph`` (segments and edges of the global
        step, summed over time points),
        ``writes``: blocks ``written`` / ``skipped`` of the ``seeds`` and ``flood`` phases.

    Raises
    ------
    ResumeMismatchError
        ``resume`` and a work store was made with another fingerprint, shape or dtype.
    BlockFailedError
        Some seed or flood blocks failed (the others are kept for a resume).
    """
    method = params if isinstance(params, BlockwiseMethod) else flood_method(params)
    params = method.flood
    shape3 = tuple(int(s) for s in shape[1:])
    block = tuple(int(min(b, s)) for b, s in zip(block, shape3))
    tps = list(range(int(shape[0]))) if timepoints is None else [int(t) for t in timepoints]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(prob, shape3, block, tuple(tps), method, client=client, progress=progress,
               resume=resume, store=functools.partial(
                   _work_store, shape4=(len(tps), *shape3), block=block,
                   voxel_size=params.voxel_size, resume=resume, fingerprint=fingerprint))
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    flood_path = run.store(work / "flood.zarr", kind="flood")  # a resume: checked first
    seeds = SeedRuns(work / "seeds", block)
    writes = {"seeds": _seed_phase(run, seeds)}
    secs["seeds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = work / "maps"
    maps.mkdir(exist_ok=True)
    n_pairs, n_unions = _face_phase(run, seeds, maps)
    secs["face_merge"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats_dir = work / "stats"
    report = _flood_phase(run, seeds, maps, flood_path, stats_dir)
    writes["flood"] = {"written": report.written, "skipped": report.skipped}
    secs["flood"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_cells, graph, task_secs, secs["global_plan"] = _stats_phase(run, stats_dir, maps,
                                                                  on_cells)
    secs["stats_merge"] = time.perf_counter() - t0  # includes global_plan
    secs["stats_in_flood_tasks"] = task_secs  # summed over tasks (CPU seconds, not wall)
    return {"flood": flood_path, "maps": str(maps), "stats": str(stats_dir),
            "n_cells": n_cells, "seconds": secs,
            "halo": {"seeds": list(method.seed_halo), "flood": list(flood_halo(params))},
            "blocks": len(run.grid) * len(tps), "block": list(block), "graph": graph,
            "face_pairs": n_pairs, "seed_unions": n_unions, "writes": writes}


@dataclass(frozen=True)
class _Run:
    """What every phase of :func:`segment_volume` needs: input, grid, options."""

    prob: Reader
    shape3: tuple[int, int, int]
    block: tuple[int, int, int]
    tps: tuple[int, ...]
    method: BlockwiseMethod
    client: Any
    progress: bool
    resume: bool
    store: Callable[..., str]

    @property
    def params(self) -> SegmentParams:
        """The flood's parameters."""
        return self.method.flood

    @property
    def grid(self) -> list[tuple[int, ...]]:
        """Block indices of one time point, in C order."""
        return [b.index for b in cover(self.shape3, self.block)]

    def write(self, blocks_of: Callable[[int], dict], path: str, desc: str):
        """Write the blocks ``blocks_of(k)`` (delayed, keyed by block index) of every time
        point ``k``; each time point's graph is built only when it is submitted."""
        shapes = {(0, *b.index): (1, *b.shape) for b in cover(self.shape3, self.block)}
        gshape = grid_shape(self.shape3, self.block)

        def slab(a: int, b: int) -> da.Array:
            parts = [_assemble({(0, *i): d for i, d in blocks_of(k).items()}, (1, *gshape),
                               shapes, np.uint32) for k in range(a, b)]
            return parts[0] if len(parts) == 1 else da.concatenate(parts)

        return write_volume(Series((len(self.tps), *self.shape3), np.uint32, slab), path,
                            client=self.client, resume=self.resume, progress=self.progress,
                            desc=desc)


def _seed_phase(run: _Run, seeds: SeedRuns) -> dict[str, int]:
    """A: block-unique provisional seed ids, saved per block as runs (:class:`SeedRuns`).

    With ``resume`` the blocks whose file exists are skipped (a file is complete once
    it has its name); otherwise the folder is emptied first.  Returns the blocks
    ``written`` and ``skipped``.
    """
    folder = Path(seeds.folder)
    if not run.resume:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    task = dask.delayed(_seed_task, pure=True)
    grid = run.grid
    todo = [[(k, j, idx) for j, idx in enumerate(grid)
             if not _block_file(folder, k, idx).is_file()] for k in range(len(run.tps))]
    n_todo = sum(map(len, todo))
    bar = progress_bar(n_todo, "segment: seeds", run.progress)
    try:
        failed, error = run_windowed(
            ([((k, *idx), task(run.prob, run.tps[k], k, idx, k * len(grid) + j, run.shape3,
                              run.block, run.method, str(folder))) for k, j, idx in blocks]
             for blocks in todo if blocks),
            lambda tag, _: bar.update(1), client=run.client, retries=2,
            name=lambda tag: f"segment_seeds-t{run.tps[tag[0]]:04d}")
    finally:
        bar.close()
    if failed:
        raise BlockFailedError(
            f"{folder}: {len(failed)} of {n_todo} seed blocks failed (first (t, z, y, x): "
            f"{sorted(failed)[:5]}; last error: {error}); the others are kept: fix the cause "
            "and run again with --resume")
    return {"written": n_todo, "skipped": len(grid) * len(run.tps) - n_todo}


def _face_phase(run: _Run, seeds: SeedRuns, maps: Path) -> tuple[int, int]:
    """A2: the seed ids touching across block faces, resolved by union-find.

    Seed ids are unique per block and time point and faces join blocks of one time
    point only: one union-find per time point, its ``(keys, roots)`` saved as the
    ``seeds`` map of ``maps`` as soon as the time point's face tasks (run in a sliding
    window) are done.  Returns the numbers of face pairs and of seed unions.
    """
    face = dask.delayed(_face_task, pure=True)
    grid = run.grid
    open_tps: dict[int, list] = {}  # time point -> [face tasks left, its pair tables]
    counts = {"pairs": 0, "unions": 0}

    def done(k: int, pairs: list) -> None:
        entry = open_tps.setdefault(k, [len(grid), []])
        entry[0] -= 1
        entry[1].extend(pairs)
        counts["pairs"] += sum(len(p) for p in pairs)
        if entry[0] == 0:
            keys, roots = union_map(open_tps.pop(k)[1])
            _save_npz(_map_file(maps, "seeds", k), keys=keys, values=roots)
            counts["unions"] += int(keys.size)

    run_windowed(([(k, face(seeds, k, idx, run.shape3, run.block))]
                  for k in range(len(run.tps))
                  for idx in grid), done, client=run.client, retries=0, strict=True,
                 name=lambda k: f"segment_faces-t{run.tps[k]:04d}")
    return counts["pairs"], counts["unions"]


def _flood_phase(run: _Run, seeds: SeedRuns, maps: Path, flood_path: str,
                 stats_dir: Path) -> Any:
    """B + C: the bounded flood per block into the work store ``flood_path``, its
    statistics saved beside it; the tasks of time point ``k`` read only its seed map."""
    task = dask.delayed(_flood_task, pure=True)
    stats_dir.mkdir(exist_ok=True)

    def blocks_of(k: int) -> dict:
        seed_map = str(_map_file(maps, "seeds", k))
        return {idx: task(run.prob, seeds, run.tps[k], k, idx, run.shape3, run.block,
                          run.params, seed_map, str(stats_dir)) for idx in run.grid}

    return run.write(blocks_of, flood_path, "segment: flood")


def _stats_phase(run: _Run, stats_dir: Path, maps: Path,
                 on_cells: Callable[[int, SegStats], None] | None
                 ) -> tuple[list[int], dict, float, float]:
    """C: combine the block statistics; the method's global plan of each time point.

    Each time point's plan is saved as the ``cells`` map of ``maps`` and its cell
    statistics handed to ``on_cells`` before the next time point is loaded.  Returns
    the cells per time point, the graph size, the statistics seconds summed over the
    flood tasks and the seconds of the global plans.
    """
    n_cells, graph = [], {"nodes": 0, "edges": 0}
    task_secs = plan_secs = 0.0
    for k in range(len(run.tps)):
        stats, edges, used = _load_stats(stats_dir, k, run.grid)
        task_secs += used
        graph["nodes"] += int(stats.ids.size)
        graph["edges"] += len(split_table(edges)[1])
        t0 = time.perf_counter()
        keys, final, cells = run.method.plan(stats, edges)
        plan_secs += time.perf_counter() - t0
        _save_npz(_map_file(maps, "cells", k), keys=keys, values=final)
        n_cells.append(int(cells.ids.size))
        if on_cells is not None:
            on_cells(k, cells)
    return n_cells, graph, task_secs, plan_secs


def final_labels(flood_path: str, maps: str | os.PathLike, stats: str | os.PathLike, *,
                 dtype=np.uint32) -> Series:
    """Lazy final labels ``(t, z, y, x)``: each block of the provisional labels through
    its label table (in the statistics folder ``stats``) and its time point's ``cells``
    id map in ``maps`` (the paths :func:`segment_volume` returns).

    A :class:`~chunkseg.engine.blocks.Series`: the tasks of time point ``k`` read only
    its own files.
    """
    store = _open(flood_path)
    arr = da.from_zarr(store, chunks=store.shards or store.chunks)  # one task per block
    meta = np.empty((0,) * arr.ndim, dtype)  # the tables are read by the tasks only

    def slab(a: int, b: int) -> da.Array:
        return da.concatenate([arr[k : k + 1].map_blocks(
            _final_block, str(_map_file(maps, "cells", k)), str(stats), k, meta.dtype.str,
            meta=meta) for k in range(a, b)])

    return Series(tuple(arr.shape), np.dtype(dtype), slab)


def _final_block(dense: np.ndarray, cells_map: str, stats: str, k: int, dtype: str, *,
                 block_info=None) -> np.ndarray:
    """Final ids of one block of dense labels (its grid index from ``block_info``)."""
    with np.load(_block_file(stats, k, block_info[0]["chunk-location"][1:])) as f:
        ids = f["labels"]
    final = relabel(ids, *_load_map(cells_map)).astype(dtype)
    return np.concatenate((np.zeros(1, dtype), final))[dense]


def remove_work(work: str | os.PathLike) -> None:
    """Delete the work folder of :func:`segment_volume`."""
    shutil.rmtree(work, ignore_errors=True)
