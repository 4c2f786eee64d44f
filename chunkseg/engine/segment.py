"""Blockwise cell segmentation with an exact global merge across chunk faces.

The volume is cut into processing blocks (any shape; they need not divide the
volume).  Every step is either a bounded-support rule computed on a block plus a
halo at least as wide as its support, or a merge of mergeable partial results, so
the labels equal the whole-volume result of :func:`segment_array` voxel for voxel
(same ids, not only the same partition) for every block shape:

A. **seeds** — per block, read the probability with the seed halo
   (:func:`chunkseg.ops.watershed.seed_halo`), compute the seed mask of the owned
   region (exact, see :mod:`chunkseg.ops.watershed`), label its components and give
   them block-unique provisional ids ``(block + 1) << 32 | local``; written to a
   work store.
A2. **face merge** — for every internal block face, read the two facing planes of
   provisional seed ids, collect the touching pairs and resolve them by union-find
   (:func:`chunkseg.ops.segstats.union_map`): the global seed components, exactly.
B. **flood** — per block, read seeds (mapped to their roots) and probability with
   the flood halo (:func:`chunkseg.ops.watershed.flood_halo`) and run the bounded
   flood; the owned region is exact by the light-cone argument.  Work store 2.
C. **statistics** — computed inside each flood task (no second read): sizes / sums /
   bounding boxes / first voxels of the owned region and its face contacts (the flood
   region has one extra voxel on the high side, so the neighbour voxel is exact too),
   saved as small ``.npz`` files, combined globally; small segments merged and cells
   numbered by their first voxel (:func:`chunkseg.ops.segstats.merge_plan`).
D. **relabel** — the final ids written with :func:`chunkseg.engine.blocks.write_volume`.

Memory: one block plus halo per task; the driver holds only per-segment tables
(O(cells)) and the face pairs (O(cells crossing faces)).
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from chunkseg.engine.blocks import Series, write_volume
from chunkseg.engine.submit import compute_windowed
from chunkseg.ops.segstats import (
    SegStats, block_stats, combine_stats, contacts, face_pairs, finish_labels, merge_plan,
    relabel, sum_pair_counts, union_map,
)
from chunkseg.ops.watershed import (
    SegmentParams, as_probability, flood, flood_halo, label_seeds, seed_halo, seed_mask,
    segment_block,
)

__all__ = ["Reader", "final_labels", "remove_work", "segment_array", "segment_volume"]


class Reader:
    """Picklable reader of ``(t, z-range, y-range, x-range)`` regions of a 4D volume.

    Parameters
    ----------
    source : path-like, numpy array or dask array
        A Zarr store (chunkseg OME-Zarr group, or a plain 3D / 4D array; opened once
        per process) or an array with axes ``(t, z, y, x)``.
    """

    def __init__(self, source: Any) -> None:
        self.path = str(source) if isinstance(source, (str, os.PathLike)) else None
        self.array = None if self.path else source

    def __call__(self, t: int, region: Sequence[slice]) -> np.ndarray:
        key = (int(t), *region)
        if self.path is not None:
            arr = _open(self.path)
            return np.asarray(arr[key if arr.ndim == 4 else tuple(region)])
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


def _grid(shape3: Sequence[int], block: Sequence[int]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(-(-s // b)) for s, b in zip(shape3, block))))


def _owned(idx, shape3, block) -> tuple[slice, ...]:
    return tuple(slice(i * b, min((i + 1) * b, s)) for i, b, s in zip(idx, block, shape3))


def _extend(region, halo, shape3) -> tuple[tuple[slice, ...], tuple]:
    """Region grown by ``halo`` (clipped); also the owned region's slices inside it."""
    ext, crop = [], []
    for r, h, s in zip(region, halo, shape3):
        lo = max(0, r.start - h)
        hi = min(s, r.stop + h)
        ext.append(slice(lo, hi))
        crop.append(slice(r.start - lo, r.stop - lo))
    return tuple(ext), tuple(crop)


def _seed_task(read, t, idx, lin, shape3, block, params):
    region = _owned(idx, shape3, block)
    ext, crop = _extend(region, seed_halo(params), shape3)
    seeds = seed_mask(as_probability(read(t, ext)), params)[crop]
    lab, _ = label_seeds(seeds)
    out = np.where(lab > 0, (np.uint64(lin + 1) << np.uint64(32)) | lab.astype(np.uint64),
                   np.uint64(0))
    return out[None]


def _face_task(read, t, idx, shape3, block):
    region = _owned(idx, shape3, block)
    pairs = []
    for axis in range(3):
        stop = region[axis].stop
        if stop >= shape3[axis]:
            continue
        a = list(region)
        b = list(region)
        a[axis], b[axis] = slice(stop - 1, stop), slice(stop, stop + 1)
        pairs.append(face_pairs(read(t, a), read(t, b)))
    return pairs


def _flood_task(read_prob, read_seeds, t, k, idx, shape3, block, params, keys, roots,
                stats_dir):
    """Flood one block; also store its segment statistics and face contacts.

    The region read is the owned block grown by the flood halo, plus one more voxel on
    the high side, so the owned block *and* its high-side neighbour voxels are exact:
    the contacts across this block's high faces come from here, with no second read.
    """
    region = _owned(idx, shape3, block)
    halo = flood_halo(params)
    ext, crop = _extend(region, halo, shape3)
    ext = tuple(slice(e.start, min(s, e.stop + 1)) for e, s in zip(ext, shape3))
    markers = relabel(read_seeds(k, ext), keys, roots)
    lab = flood(markers.astype(np.uint64), as_probability(read_prob(t, ext)), params)
    start = time.perf_counter()
    owned = lab[crop]
    plus = tuple(slice(c.start, min(c.stop + 1, n)) for c, n in zip(crop, lab.shape))
    st = block_stats(owned, offset=[r.start for r in region], shape=shape3)
    pairs = contacts(lab[plus], owned.shape)
    name = _stats_file(stats_dir, k, idx)
    tmp = name.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, ids=st.ids, count=st.count, sums=st.sums, lo=st.lo, hi=st.hi,
             first=st.first, pairs=pairs, seconds=time.perf_counter() - start)
    os.replace(tmp, name)
    return owned[None]


def _stats_file(stats_dir: str | os.PathLike, k: int, idx: Sequence[int]) -> Path:
    """The statistics file of block ``idx`` of output time point ``k``."""
    return Path(stats_dir) / ("_".join(map(str, (k, *idx))) + ".npz")


def _load_stats(stats_dir: Path, k: int, grid) -> tuple[SegStats, np.ndarray, float]:
    parts, pairs, secs = [], [], 0.0
    for idx in grid:
        with np.load(_stats_file(stats_dir, k, idx)) as f:
            parts.append(SegStats(f["ids"], f["count"], f["sums"], f["lo"], f["hi"], f["first"]))
            pairs.append(f["pairs"])
            secs += float(f["seconds"])
    return combine_stats(parts), sum_pair_counts(pairs), secs


def _assemble(blocks: dict, grid_shape: Sequence[int], shapes: dict, dtype) -> da.Array:
    """One dask array (t, z, y, x) from delayed blocks indexed ``(t, bz, by, bx)``."""
    def nest(prefix: tuple, depth: int):
        if depth == len(grid_shape):
            return da.from_delayed(blocks[prefix], shape=shapes[prefix[1:]], dtype=dtype)
        return [nest(prefix + (i,), depth + 1) for i in range(grid_shape[depth])]

    return da.block(nest((), 0))


def _work_store(path: Path, shape4, block, voxel_size, kind: str, *, resume: bool = False,
                fingerprint: str | None = None) -> str:
    """Create a work store (replacing an old one), or with ``resume`` reopen a matching one."""
    from chunkseg.io.store import create_image

    chunks = (1, *block)
    create_image(path, shape=shape4, dtype=np.uint64, voxel_size=voxel_size, chunks=chunks,
                 shards=chunks, attrs={"kind": kind, "fingerprint": fingerprint},
                 overwrite=not resume, resume=resume)
    return str(path)


def segment_volume(
    prob: Reader,
    shape: Sequence[int],
    params: SegmentParams,
    *,
    work: str | os.PathLike,
    block: Sequence[int] = (64, 256, 256),
    timepoints: Sequence[int] | None = None,
    client: Any = None,
    progress: bool = False,
    resume: bool = False,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Segment every (selected) time point blockwise into uint64 provisional labels.

    Parameters
    ----------
    prob : Reader
        Membrane probability ``(t, z, y, x)`` (float in [0, 1] or uint8).
    shape : sequence of 4 int
        Shape of ``prob``.
    params : SegmentParams
    work : path-like
        Folder for the two work stores (created, left for the caller to remove).
    block : sequence of 3 int
        Processing block ``(z, y, x)``; the result does not depend on it.
    timepoints : sequence of int, optional
        Time points of ``prob`` to segment (default all); output index k holds
        ``timepoints[k]``.
    client : distributed.Client, optional
    resume : bool
        Reopen existing work stores (their ``fingerprint`` must equal ``fingerprint``)
        and skip the seed / flood blocks already done; a done flood block's statistics
        file is written before its data, so it is there too.  Without it the work
        stores are replaced.
    fingerprint : str, optional
        Recorded in the work stores; must describe the input, ``params``, ``block``
        and ``timepoints`` (the provisional ids depend on the block grid).

    Returns
    -------
    dict
        ``flood`` (path of the provisional-label store, axes t z y x), ``tables``:
        per output time point ``(keys, final ids, cells SegStats)`` to relabel with,
        ``seconds`` per phase, ``halo`` per phase, ``blocks``, ``face_pairs``,
        ``writes``: blocks ``written`` / ``skipped`` of the ``seeds`` and ``flood`` phases.

    Raises
    ------
    ResumeMismatchError
        ``resume`` and a work store was made with another fingerprint, shape or dtype.
    BlockFailedError
        Some seed or flood blocks failed (the others are kept for a resume).
    """
    shape3 = tuple(int(s) for s in shape[1:])
    block = tuple(int(min(b, s)) for b, s in zip(block, shape3))
    tps = list(range(int(shape[0]))) if timepoints is None else [int(t) for t in timepoints]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    shape4 = (len(tps), *shape3)
    grid = _grid(shape3, block)
    gshape = (len(tps), *(-(-s // b) for s, b in zip(shape3, block)))
    shapes = {idx: (1, *(r.stop - r.start for r in _owned(idx, shape3, block)))
              for idx in grid}
    secs: dict[str, float] = {}

    t0 = time.perf_counter()
    store = functools.partial(_work_store, shape4=shape4, block=block,
                              voxel_size=params.voxel_size, resume=resume,
                              fingerprint=fingerprint)
    seeds_path = store(work / "seeds.zarr", kind="seeds")
    seed = dask.delayed(_seed_task, pure=True)

    def seed_slab(a: int, b: int) -> da.Array:  # graphs built per time point
        blocks = {(k - a, *idx): seed(prob, tps[k], idx, k * len(grid) + j, shape3, block,
                                      params)
                  for k in range(a, b) for j, idx in enumerate(grid)}
        return _assemble(blocks, (b - a, *gshape[1:]), shapes, np.uint64)

    reports = {"seeds": write_volume(Series(shape4, np.uint64, seed_slab), seeds_path,
                                     client=client, resume=resume, progress=progress,
                                     desc="segment: seeds")}
    secs["seeds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    seeds = Reader(seeds_path)
    face = dask.delayed(_face_task, pure=True)
    parts = compute_windowed((face(seeds, k, idx, shape3, block)
                              for k in range(len(tps)) for idx in grid), client=client)
    # seed ids are unique per block and time point: one union-find per time point
    maps = [union_map([p for part in parts[k * len(grid):(k + 1) * len(grid)] for p in part])
            for k in range(len(tps))]
    n_pairs = sum(len(p) for part in parts for p in part)
    del parts
    secs["face_merge"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    flood_path = store(work / "flood.zarr", kind="flood")
    fl = dask.delayed(_flood_task, pure=True)
    stats_dir = work / "stats"
    stats_dir.mkdir(exist_ok=True)

    def flood_slab(a: int, b: int) -> da.Array:
        blocks = {}
        for k in range(a, b):
            keys_d, roots_d = dask.delayed(maps[k][0]), dask.delayed(maps[k][1])
            for idx in grid:
                blocks[(k - a, *idx)] = fl(prob, seeds, tps[k], k, idx, shape3, block, params,
                                           keys_d, roots_d, str(stats_dir))
        return _assemble(blocks, (b - a, *gshape[1:]), shapes, np.uint64)

    reports["flood"] = write_volume(Series(shape4, np.uint64, flood_slab), flood_path,
                                    client=client, resume=resume, progress=progress,
                                    desc="segment: flood")
    secs["flood"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tables = []
    min_voxels = params.min_size / params.voxel_volume
    task_secs = 0.0
    for k in range(len(tps)):
        stats, pairs, used = _load_stats(stats_dir, k, grid)
        task_secs += used
        tables.append(merge_plan(stats, pairs, min_voxels=min_voxels))
    secs["stats_merge"] = time.perf_counter() - t0
    secs["stats_in_flood_tasks"] = task_secs  # summed over tasks (CPU seconds, not wall)
    return {"flood": flood_path, "tables": tables, "seconds": secs,
            "halo": {"seeds": list(seed_halo(params)), "flood": list(flood_halo(params))},
            "blocks": len(grid) * len(tps), "block": list(block),
            "face_pairs": int(n_pairs), "seed_unions": int(sum(m[0].size for m in maps)),
            "writes": {name: {"written": r.written, "skipped": r.skipped}
                       for name, r in reports.items()}}


def final_labels(flood_path: str, tables: list, *, dtype=np.uint32) -> Series:
    """Lazy final labels ``(t, z, y, x)``: the provisional labels mapped through ``tables``.

    A :class:`~chunkseg.engine.blocks.Series`: the tasks of time point ``k`` carry only
    ``tables[k]``.
    """
    arr = da.from_zarr(_open(flood_path))

    def slab(a: int, b: int) -> da.Array:
        parts = []
        for k in range(a, b):
            keys, final, _ = tables[k]
            parts.append(arr[k : k + 1].map_blocks(relabel, keys, final, dtype=arr.dtype))
        return da.concatenate(parts).astype(dtype)

    return Series(tuple(arr.shape), np.dtype(dtype), slab)


def remove_work(work: str | os.PathLike) -> None:
    """Delete the work folder of :func:`segment_volume`."""
    shutil.rmtree(work, ignore_errors=True)
