"""Mergeable per-segment statistics, face unions and the final relabelling (pure NumPy).

Everything here works on *partial* results: statistics of the voxels a block owns,
contacts between face neighbours whose first voxel the block owns, label pairs seen
across a block face.  Partials of any block decomposition combine (sums, minima,
maxima, union-find) into exactly the whole-volume result, which is what makes the
blockwise segmentation independent of the chunking.

Segment ids here are arbitrary unique non-zero integers (uint64); order and
tie-breaks use only each segment's *first voxel* (smallest raster index in the
volume), never the id values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

__all__ = [
    "SegStats",
    "block_stats",
    "clip_runs",
    "combine_stats",
    "contacts",
    "dense_labels",
    "face_pairs",
    "finish_labels",
    "label_runs",
    "merge_plan",
    "owned_faces",
    "paint_runs",
    "relabel",
    "sum_pair_counts",
    "union_map",
]


@dataclass
class SegStats:
    """Statistics of segments (one row per id, ids sorted ascending).

    Attributes
    ----------
    ids : uint64 (n,)
    count : int64 (n,) voxels
    sums : float64 (n, 3) sums of z, y, x voxel indices (exact below 2**53)
    lo, hi : int64 (n, 3) bounding box, inclusive
    first : int64 (n,) smallest raster index ``(z * Y + y) * X + x`` in the volume
    """

    ids: np.ndarray
    count: np.ndarray
    sums: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    first: np.ndarray

    @classmethod
    def empty(cls) -> SegStats:
        """No segments."""
        z = np.zeros((0, 3))
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.int64), z,
                   z.astype(np.int64), z.astype(np.int64), np.zeros(0, np.int64))


def dense_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, first flat position, dense int32 image 1..n)`` of the non-zero labels.

    Sorts runs of equal labels along x, not voxels: labels are spatially coherent, so
    this is several times faster than ``np.unique`` of the voxels.
    """
    flat = labels.ravel()
    if flat.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(labels.shape, np.int32)
    starts, lengths = _runs(flat)
    ids, first_run, inv_run = np.unique(flat[starts], return_index=True, return_inverse=True)
    first_pos = starts[first_run]
    inv = np.repeat(inv_run.astype(np.int32), lengths).reshape(labels.shape)
    if ids[0] == 0:
        return ids[1:].astype(np.uint64), first_pos[1:], inv
    return ids.astype(np.uint64), first_pos, inv + 1


def block_stats(labels: np.ndarray, *, offset: Sequence[int] = (0, 0, 0),
                shape: Sequence[int] | None = None, ids: np.ndarray | None = None) -> SegStats:
    """Statistics of the non-zero labels of a block at ``offset`` in a volume of ``shape``.

    With ``ids`` (sorted uint64), ``labels`` is dense: label ``d`` stands for
    ``ids[d - 1]`` (0: none), as in :func:`dense_labels`; ids absent from the block
    get no row.
    """
    shape = tuple(labels.shape) if shape is None else tuple(int(s) for s in shape)
    if ids is None:
        ids, _, labels = dense_labels(labels)
    if ids.size == 0:
        return SegStats.empty()
    count, sums, lo, hi, first_pos = _label_sums(labels, ids.size)
    if not count.all():
        keep = count > 0
        ids, count, sums, lo, hi, first_pos = (a[keep] for a in
                                               (ids, count, sums, lo, hi, first_pos))
    off = np.asarray(offset, np.int64)
    # integer sums of coordinates: exact, and below 2**53 exact as float64 too
    sums = (sums + count[:, None] * off).astype(np.float64)
    fc = np.stack(np.unravel_index(first_pos, labels.shape), 1).astype(np.int64) + off
    first = (fc[:, 0] * shape[1] + fc[:, 1]) * shape[2] + fc[:, 2]
    return SegStats(ids, count, sums, lo + off, hi + off, first.astype(np.int64))


@numba.njit(cache=True, nogil=True)
def _label_sums(dense, n):
    """Per label ``1..n`` of a dense 3D label image: voxels, sums of the z, y, x
    indices, the inclusive bounding box (lowest and highest index per axis) and the
    first flat position (raster order; -1 where the label is absent)."""
    count = np.zeros(n + 1, np.int64)
    sums = np.zeros((n + 1, 3), np.int64)
    lo = np.full((n + 1, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((n + 1, 3), -1, np.int64)
    first = np.full(n + 1, -1, np.int64)
    nz, ny, nx = dense.shape
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                d = dense[z, y, x]
                if count[d] == 0:
                    first[d] = (z * ny + y) * nx + x
                count[d] += 1
                sums[d, 0] += z
                sums[d, 1] += y
                sums[d, 2] += x
                lo[d, 0], hi[d, 0] = min(lo[d, 0], z), max(hi[d, 0], z)
                lo[d, 1], hi[d, 1] = min(lo[d, 1], y), max(hi[d, 1], y)
                lo[d, 2], hi[d, 2] = min(lo[d, 2], x), max(hi[d, 2], x)
    return count[1:], sums[1:], lo[1:], hi[1:], first[1:]


def combine_stats(parts: Sequence[SegStats]) -> SegStats:
    """Merge partial statistics (any block decomposition) into one table."""
    parts = [p for p in parts if p.ids.size]
    if not parts:
        return SegStats.empty()
    ids = np.concatenate([p.ids for p in parts])
    u, inv = np.unique(ids, return_inverse=True)
    n = u.size
    count = np.bincount(inv, weights=np.concatenate([p.count for p in parts]), minlength=n)
    sums = np.concatenate([p.sums for p in parts])
    lo = np.full((n, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((n, 3), -1, np.int64)
    np.minimum.at(lo, inv, np.concatenate([p.lo for p in parts]))
    np.maximum.at(hi, inv, np.concatenate([p.hi for p in parts]))
    first = np.full(n, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, inv, np.concatenate([p.first for p in parts]))
    return SegStats(u, count.astype(np.int64),
                    np.stack([np.bincount(inv, weights=sums[:, a], minlength=n)
                              for a in range(3)], 1), lo, hi, first)


def _count_pairs(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Unordered pairs of different non-zero dense labels with counts: (k, 3) int64."""
    keep = (a != b) & (a != 0) & (b != 0)
    a, b = a[keep].astype(np.int64), b[keep].astype(np.int64)
    if a.size == 0:
        return np.zeros((0, 3), np.int64)
    key = np.minimum(a, b) * (n + 1) + np.maximum(a, b)
    u, counts = np.unique(key, return_counts=True)
    return np.stack([u // (n + 1), u % (n + 1), counts], 1)


def contacts(ext: np.ndarray, owned: Sequence[int]) -> np.ndarray:
    """Face contacts whose first voxel lies in ``ext[:owned[0], :owned[1], :owned[2]]``.

    ``ext`` is the owned block plus (where the volume goes on) one voxel on the high
    side of each axis, so every face pair of the volume is counted by exactly one
    block.  Returns (k, 3) uint64 rows ``(id_a, id_b, faces)`` with ``id_a < id_b``.
    """
    ids, _, dense = dense_labels(ext)
    rows = [_count_pairs(dense[src], dense[nxt], ids.size)
            for src, nxt in owned_faces(ext.shape, owned)]
    rows = [r for r in rows if r.size]
    if not rows:
        return np.zeros((0, 3), np.uint64)
    r = np.concatenate(rows)
    return sum_pair_counts([np.stack([ids[r[:, 0] - 1], ids[r[:, 1] - 1],
                                 r[:, 2].astype(np.uint64)], 1)])


def owned_faces(shape: Sequence[int], owned: Sequence[int]
                ) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """``(first, second)`` voxel slices of the face pairs a block owns, one per axis.

    ``shape`` is the block read (the owned block ``[:owned]`` plus, where the volume
    goes on, one voxel on the high side of each axis); a pair is owned by the block
    that owns its first (lower) voxel, so every face pair of a volume belongs to
    exactly one block of any decomposition.
    """
    out = []
    for axis in range(3):
        m = min(int(owned[axis]), int(shape[axis]) - 1)
        if m < 1:
            continue
        src = [slice(0, int(o)) for o in owned]
        nxt = list(src)
        src[axis], nxt[axis] = slice(0, m), slice(1, m + 1)
        out.append((tuple(src), tuple(nxt)))
    return out


def sum_pair_counts(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Sum ``(a, b, value, ...)`` rows over equal ``(a, b)``: uint64, sorted by a, b.

    Every column after the pair is summed (exact for sums below 2**53).
    """
    width = rows[0].shape[1] if len(rows) else 3
    rows = [r for r in rows if r.size]
    if not rows:
        return np.zeros((0, width), np.uint64)
    allr = np.concatenate(rows)
    pairs, inv = np.unique(allr[:, :2], axis=0, return_inverse=True)
    sums = [np.bincount(inv.ravel(), weights=allr[:, c].astype(np.float64), minlength=len(pairs))
            for c in range(2, allr.shape[1])]
    return np.concatenate([pairs, np.stack(sums, 1).astype(np.uint64)], 1)


def face_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Unique label pairs ``(a_i, b_i)``, both non-zero, of two facing planes: (k, 2)."""
    keep = (a != 0) & (b != 0)
    if not keep.any():
        return np.zeros((0, 2), np.uint64)
    return np.unique(np.stack([a[keep], b[keep]], 1).astype(np.uint64), axis=0)


def union_map(pairs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Union-find over label pairs: ``(keys, roots)``, sorted keys, root = smallest id.

    Ids absent from ``keys`` map to themselves.
    """
    pairs = [p for p in pairs if p.size]
    if not pairs:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    e = np.concatenate(pairs).astype(np.uint64)
    keys, inv = np.unique(e, return_inverse=True)
    inv = inv.reshape(e.shape)
    g = coo_array((np.ones(len(e)), (inv[:, 0], inv[:, 1])), shape=(keys.size,) * 2)
    _, comp = connected_components(g, directed=False)
    root = np.full(comp.max() + 1, np.iinfo(np.uint64).max, np.uint64)
    np.minimum.at(root, comp, keys)
    return keys, root[comp]


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and length of each run of equal values of a non-empty 1D array."""
    starts = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1])
    return starts, np.diff(np.append(starts, flat.size))


Runs = tuple[np.ndarray, np.ndarray, np.ndarray]


def label_runs(labels: np.ndarray) -> Runs:
    """Runs of equal non-zero labels along x (the last axis) of a 3D array.

    A compact form of sparse or blocky labels (seeds): :func:`paint_runs` restores them.

    Returns
    -------
    starts : ndarray of int32, (k, 3)
        ``(z, y, x)`` of each run's first voxel, in raster order.
    lengths : ndarray of int32, (k,)
    values : ndarray, (k,)
        The runs' labels, dtype of ``labels``.
    """
    nz, ny, nx = labels.shape
    rows = labels.reshape(-1, nx)
    new = np.empty(rows.shape, bool)
    new[:, 0] = True  # a run never crosses a row end
    np.not_equal(rows[:, 1:], rows[:, :-1], out=new[:, 1:])
    row, x = np.nonzero(new)
    flat = row * nx + x
    lengths = np.diff(np.append(flat, rows.size))
    values = rows.ravel()[flat]
    keep = values != 0
    z, y = np.divmod(row[keep], ny)
    return (np.stack([z, y, x[keep]], 1).astype(np.int32), lengths[keep].astype(np.int32),
            values[keep])


def clip_runs(starts: np.ndarray, lengths: np.ndarray, values: np.ndarray,
              box: Sequence[slice]) -> Runs:
    """The parts of runs (:func:`label_runs`) inside ``box`` (slices with start and
    stop), in the box's coordinates."""
    lo = np.array([b.start for b in box], np.int64)
    hi = np.array([b.stop for b in box], np.int64)
    s = starts.astype(np.int64) - lo
    end = s[:, 2] + lengths
    keep = ((s[:, 0] >= 0) & (s[:, 0] < hi[0] - lo[0]) & (s[:, 1] >= 0)
            & (s[:, 1] < hi[1] - lo[1]) & (end > 0) & (s[:, 2] < hi[2] - lo[2]))
    s, end = s[keep], end[keep]
    s[:, 2] = np.maximum(s[:, 2], 0)
    return (s.astype(np.int32), (np.minimum(end, hi[2] - lo[2]) - s[:, 2]).astype(np.int32),
            values[keep])


def paint_runs(out: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               values: np.ndarray) -> np.ndarray:
    """Write runs (:func:`label_runs`, in ``out``'s coordinates, inside it) into the 3D
    array ``out``; returns ``out``."""
    _paint(out, starts, lengths, values.astype(out.dtype, copy=False))
    return out


@numba.njit(cache=True, nogil=True)
def _paint(out, starts, lengths, values):
    for i in range(lengths.size):
        z, y, x = starts[i, 0], starts[i, 1], starts[i, 2]
        out[z, y, x : x + lengths[i]] = values[i]


def relabel(labels: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map ``labels`` through sorted ``keys`` → ``values``; other ids keep their value.

    Looks up runs of equal labels along x, not voxels (labels are spatially coherent).
    """
    dtype = values.dtype if values.size else labels.dtype
    if keys.size == 0 or labels.size == 0:
        return labels.astype(dtype, copy=True)
    flat = labels.ravel()
    starts, lengths = _runs(flat)
    run = flat[starts]
    pos = np.searchsorted(keys, run).clip(0, keys.size - 1)
    hit = keys[pos] == run
    mapped = run.astype(dtype)
    mapped[hit] = values[pos[hit]]
    return np.repeat(mapped, lengths).reshape(labels.shape)


def merge_plan(stats: SegStats, pairs: np.ndarray, *, min_voxels: float
               ) -> tuple[np.ndarray, np.ndarray, SegStats]:
    """Merge small segments and number the cells; returns ``(keys, final ids, cells)``.

    Every segment with fewer than ``min_voxels`` voxels joins (simultaneously, one
    round) the neighbour it shares most faces with; ties go to the neighbour with
    the smaller first voxel.  Chains are resolved by union-find.  Final ids are
    1..n in raster order of each cell's first voxel.  ``cells`` holds the merged
    statistics with ``ids`` = final ids.
    """
    n = stats.ids.size
    if n == 0:
        return stats.ids, np.zeros(0, np.uint32), stats
    small = stats.count < min_voxels
    comp = np.arange(n)
    if small.any() and pairs.size:
        ia = np.searchsorted(stats.ids, pairs[:, 0])
        ib = np.searchsorted(stats.ids, pairs[:, 1])
        c = pairs[:, 2].astype(np.int64)
        src = np.concatenate([ia, ib])
        dst = np.concatenate([ib, ia])
        cc = np.concatenate([c, c])
        keep = small[src]
        src, dst, cc = src[keep], dst[keep], cc[keep]
        if src.size:
            # each small segment's best neighbour: most faces, then smallest first voxel
            order = np.lexsort((stats.first[dst], -cc, src))
            src, dst = src[order], dst[order]
            best = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
            g = coo_array((np.ones(best.size), (src[best], dst[best])), shape=(n, n))
            _, comp = connected_components(g, directed=False)
    ncomp = int(comp.max()) + 1
    gfirst = np.full(ncomp, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(gfirst, comp, stats.first)
    rank = np.empty(ncomp, np.int64)
    rank[np.argsort(gfirst, kind="stable")] = np.arange(1, ncomp + 1)
    dtype = np.uint32 if ncomp < np.iinfo(np.uint32).max else np.uint64
    final = rank[comp].astype(dtype)
    cells = combine_stats([SegStats(final.astype(np.uint64), stats.count, stats.sums,
                                    stats.lo, stats.hi, stats.first)])
    return stats.ids, final, cells


def finish_labels(labels: np.ndarray, *, min_voxels: float) -> tuple[np.ndarray, SegStats]:
    """In-memory reference of the engine's last steps: merge small segments, renumber."""
    stats = block_stats(labels)
    pairs = contacts(labels, labels.shape)
    keys, final, cells = merge_plan(stats, pairs, min_voxels=min_voxels)
    return relabel(labels, keys, final), cells
