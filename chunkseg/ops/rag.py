"""Region adjacency graph of fragments and its agglomeration into cells (pure NumPy).

Edge table
----------
One row per pair of touching fragments ``(a, b)``, ``a < b``, all integers so that
partial tables of any block decomposition sum *exactly* to the whole-volume table
(:func:`chunkseg.ops.segstats.sum_pair_counts`):

``a, b, faces, psum, hist[0..bins-1]``

over every pair of face-adjacent voxels ``(u, v)`` with labels ``a`` and ``b``:
``faces`` counts them (the interface area in voxel faces), ``psum`` sums
``q(u) + q(v)`` with ``q = round(p * 2**16)``, and ``hist`` counts the pairs by the
bin of ``(p(u) + p(v)) / 2`` (``bins`` equal bins of [0, 1]).  The mean boundary
probability of an interface is ``psum / (2 * 2**16 * faces)``; a high quantile
comes from the histogram.  One *node row* ``(a, a, ...)`` per fragment holds its own
voxels the same way (each voxel ``u`` as the pair ``(u, u)``: ``faces`` = voxels,
mean = the fragment's mean probability; its histogram is left 0); :func:`split_table`
separates the two.  A
block owns the pairs whose lower voxel it owns (:func:`chunkseg.ops.segstats.owned_faces`)
and the voxels it owns.  Memory: ``(4 + bins) * 8`` bytes per edge and per fragment.

Agglomeration
-------------
:func:`cluster` merges fragments whose interface *score* is below the threshold. The
score (``criterion``) is ``"contrast"`` (default): the interface's mean probability
minus the mean of its two fragments' mean probabilities, i.e. how much brighter the
interface is than the fragments it separates; or ``"mean"``: the interface's mean
probability itself. The contrast does not depend on how much of a cell the probability
marks as wall (thick, anisotropic walls raise both terms alike), so one threshold serves
sources whose best mean thresholds differ (``benchmarks/organoid_cells.py``). Rules
(``linkage``: ``"mutex"`` — the mutex watershed of the ``mwatershed`` package on the
region graph, the default; ``"average"`` — scikit-image's hierarchical merging with the
score updated after each merge (interfaces and fragments summed); ``"single"`` — SciPy
connected components of the edges below the threshold, a floor). The decision uses every
voxel of the interface, so a gap of a few voxels in a wall does not merge two cells.
:func:`agglomeration_plan` then merges cells smaller than ``min_voxels`` into their
strongest neighbour (lowest mean interface probability) and numbers cells by their first
voxel, like the seeded flood (:func:`chunkseg.ops.segstats.merge_plan`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.fragments import FragmentParams
from chunkseg.ops.segstats import (
    SegStats, combine_stats, dense_labels, merge_plan, sum_pair_counts,
)

__all__ = ["CRITERIA", "EDGE_BINS", "LINKAGES", "Q", "Criterion", "Linkage", "AggloParams",
           "agglomeration_plan", "block_edges", "cluster", "contract_edges", "edge_mean",
           "edge_quantile", "split_table"]

#: fixed-point scale of the probability in ``psum``
Q = 1 << 16
#: histogram bins of the interface probability
EDGE_BINS = 16
#: the agglomeration rules of :func:`cluster`
Linkage = Literal["mutex", "average", "single"]
LINKAGES: tuple[str, ...] = ("mutex", "average", "single")
#: the interface scores of :func:`cluster`
Criterion = Literal["contrast", "mean"]
CRITERIA: tuple[str, ...] = ("contrast", "mean")


def block_edges(labels: np.ndarray, prob: np.ndarray, owned: Sequence[int], *,
                bins: int = EDGE_BINS, ids: np.ndarray | None = None) -> np.ndarray:
    """Edge table of the face pairs a block owns, with the node rows of its voxels.

    Parameters
    ----------
    labels : ndarray of int, (z, y, x)
        Fragment ids of the owned block plus one voxel on the high side of each axis
        where the volume goes on (0 = no fragment; such pairs are left out).
    prob : ndarray of float32
        Membrane probability of the same region, in [0, 1].
    owned : sequence of 3 int
        Shape of the owned block (the low corner of ``labels``).
    bins : int
        Histogram bins.
    ids : ndarray of uint64, optional
        Sorted fragment ids of a dense ``labels``: label ``d`` stands for ``ids[d - 1]``
        (as in :func:`chunkseg.ops.segstats.dense_labels`).

    Returns
    -------
    ndarray of uint64, (k, 4 + bins)
        Rows ``a, b, faces, psum, hist...`` sorted by ``(a, b)``; rows with ``a == b``
        are the node rows of the owned voxels (see the module notes).
    """
    if labels.shape != prob.shape:
        raise ShapeError(f"labels {labels.shape} and probability {prob.shape} differ in shape")
    if ids is None:
        ids, _, labels = dense_labels(labels)
    n = ids.size + 1
    own = tuple(min(int(o), s) for o, s in zip(owned, labels.shape))
    count, psum, key, val = _pair_sums(labels, np.asarray(prob, np.float32), *own, n)
    nodes = np.zeros((ids.size, 4 + bins), np.uint64)
    nodes[:, 0] = nodes[:, 1] = ids
    nodes[:, 2], nodes[:, 3] = count, psum
    nodes = nodes[count > 0]  # histogram left 0: only the mean of a node row is used
    if key.size == 0:
        return nodes
    pairs, sums = _edge_sums(key, val, n, bins)
    table = np.column_stack([ids[pairs // n - 1], ids[pairs % n - 1], sums.astype(np.uint64)])
    return sum_pair_counts([table, nodes])


@numba.njit(cache=True, nogil=True)
def _pair_sums(dense, prob, oz, oy, ox, n):
    """Over the owned box ``[:oz, :oy, :ox]`` of a dense label image: per label ``1..n-1``
    the voxels and ``2 * sum q``; and per owned face pair ``(u, v)`` (``v`` the next voxel
    along an axis, inside the array) of two different non-zero labels ``a``, ``b``: the
    key ``min * n + max`` and ``q(u) + q(v)``, with ``q = rint(p * Q)``."""
    count = np.zeros(n, np.int64)
    psum = np.zeros(n, np.int64)
    for z in range(oz):
        for y in range(oy):
            for x in range(ox):
                count[dense[z, y, x]] += 1
                psum[dense[z, y, x]] += 2 * _q(prob[z, y, x])
    m = _face_pairs(dense, prob, oz, oy, ox, n, np.empty(0, np.int64), np.empty(0, np.int64))
    key = np.empty(m, np.int64)
    val = np.empty(m, np.int64)
    _face_pairs(dense, prob, oz, oy, ox, n, key, val)
    return count[1:], psum[1:], key, val


@numba.njit(cache=True, nogil=True)
def _face_pairs(dense, prob, oz, oy, ox, n, key, val):
    """The face pairs of :func:`_pair_sums`, written to ``key`` and ``val`` unless they
    are empty; returns how many there are."""
    nz, ny, nx = dense.shape
    fill = key.size > 0
    m = 0
    for z in range(oz):
        for y in range(oy):
            for x in range(ox):
                d = dense[z, y, x]
                if d == 0:
                    continue
                for dz, dy, dx in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
                    if z + dz < nz and y + dy < ny and x + dx < nx:
                        e = dense[z + dz, y + dy, x + dx]
                        if e != d and e != 0:
                            if fill:
                                key[m] = min(d, e) * n + max(d, e)
                                val[m] = _q(prob[z, y, x]) + _q(prob[z + dz, y + dy, x + dx])
                            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def _edge_sums(key, val, n, bins):
    """Per distinct ``key`` (``a * n + b``) of the face pairs: the key and a row
    ``faces, sum of val, histogram of val`` (bin ``min(val * bins // (2 Q), bins - 1)``).

    The pairs are bucketed by ``a`` (a counting sort), then each bucket's keys are
    numbered through a scratch array indexed by ``b``: linear, no sort of the pairs.
    """
    start = np.zeros(n + 1, np.int64)
    for k in key:
        start[k // n + 1] += 1
    for a in range(n):
        start[a + 1] += start[a]
    fill = start[:-1].copy()
    other = np.empty(key.size, np.int64)
    vals = np.empty(key.size, np.int64)
    for j in range(key.size):
        a = key[j] // n
        other[fill[a]], vals[fill[a]] = key[j] % n, val[j]
        fill[a] += 1
    slot = np.full(n, -1, np.int64)
    pairs = np.empty(key.size, np.int64)
    row = np.empty(key.size, np.int64)
    rows = 0
    for a in range(n):
        first = rows
        for j in range(start[a], start[a + 1]):
            b = other[j]
            if slot[b] < first:  # not yet seen in this bucket
                slot[b] = rows
                pairs[rows] = a * n + b
                rows += 1
            row[j] = slot[b]
    sums = np.zeros((rows, 2 + bins), np.int64)
    for j in range(key.size):
        sums[row[j], 0] += 1
        sums[row[j], 1] += vals[j]
        sums[row[j], 2 + min(vals[j] * bins // (2 * Q), bins - 1)] += 1
    return pairs[:rows], sums


@numba.njit(cache=True, nogil=True)
def _q(p):
    """The fixed-point probability ``rint(p * Q)`` (int64)."""
    return np.int64(np.rint(np.float64(p) * Q))


def split_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(node rows, edge rows)`` of a table of :func:`block_edges` (see the module notes)."""
    self_row = table[:, 0] == table[:, 1]
    return table[self_row], table[~self_row]


def edge_mean(edges: np.ndarray) -> np.ndarray:
    """Mean boundary probability of each interface (float64)."""
    return edges[:, 3].astype(np.float64) / (2.0 * Q * edges[:, 2].astype(np.float64))


def edge_quantile(edges: np.ndarray, q: float) -> np.ndarray:
    """Upper edge of the histogram bin holding the ``q`` quantile of each interface."""
    hist = edges[:, 4:].astype(np.int64)
    cum = np.cumsum(hist, axis=1)
    need = np.ceil(q * edges[:, 2].astype(np.float64)).astype(np.int64)[:, None]
    return (np.argmax(cum >= np.maximum(need, 1), axis=1) + 1) / hist.shape[1]


def contract_edges(edges: np.ndarray, comp: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Edge table between groups: fragment ``ids[i]`` belongs to group ``comp[i]``.

    Edges inside a group are dropped; the others are summed per pair of groups (group
    ids are ``comp + 1`` as uint64).
    """
    ga = comp[np.searchsorted(ids, edges[:, 0])].astype(np.uint64) + np.uint64(1)
    gb = comp[np.searchsorted(ids, edges[:, 1])].astype(np.uint64) + np.uint64(1)
    keep = ga != gb
    lo, hi = np.minimum(ga, gb)[keep], np.maximum(ga, gb)[keep]
    return sum_pair_counts([np.column_stack([lo, hi, edges[keep, 2:]])])


def _single(n: int, ia: np.ndarray, ib: np.ndarray, score: np.ndarray,
            threshold: float) -> np.ndarray:
    keep = score < threshold
    g = coo_array((np.ones(int(keep.sum())), (ia[keep], ib[keep])), shape=(n, n))
    return connected_components(g, directed=False)[1]


def _mutex(n: int, ia: np.ndarray, ib: np.ndarray, score: np.ndarray,
           threshold: float) -> np.ndarray:
    import mwatershed

    w = threshold - score
    order = np.lexsort((ib, ia, -np.abs(w)))  # strongest first; ties by node
    edges = list(zip((w[order] > 0).tolist(), (ia[order] + 1).tolist(),
                     (ib[order] + 1).tolist()))
    pairs = np.array(mwatershed.cluster(edges), np.int64).reshape(-1, 2) - 1
    seg = np.arange(n)
    seg[pairs[:, 0]] = pairs[:, 1]
    return np.unique(seg, return_inverse=True)[1]


def _average(n: int, ia: np.ndarray, ib: np.ndarray, edges: np.ndarray,
             nodes: np.ndarray | None, threshold: float) -> np.ndarray:
    from skimage.graph import RAG, merge_hierarchical

    def node_mean(data):
        return data["s"] / (2.0 * Q * data["v"]) if nodes is not None else 0.0

    def score(graph, f, s, a, b):  # a, b: the nodes the interface separates
        return s / (2.0 * Q * f) - (node_mean(graph.nodes[a]) + node_mean(graph.nodes[b])) / 2

    rag = RAG()
    nv = nodes[:, 2:4].tolist() if nodes is not None else [[1, 0]] * n
    rag.add_nodes_from((i, {"labels": [i], "v": v, "s": t}) for i, (v, t) in enumerate(nv))
    for a, b, f, s in zip(ia.tolist(), ib.tolist(), edges[:, 2].tolist(), edges[:, 3].tolist()):
        rag.add_edge(a, b, faces=f, psum=s)
        rag[a][b]["weight"] = score(rag, f, s, a, b)

    def merge(graph, src, dst):
        for key in ("v", "s"):
            graph.nodes[dst][key] += graph.nodes[src][key]

    def weight(graph, src, dst, nb):
        e = [graph[x][nb] for x in (src, dst) if nb in graph[x]]
        f, s = sum(d["faces"] for d in e), sum(d["psum"] for d in e)
        return {"faces": f, "psum": s, "weight": score(graph, f, s, dst, nb)}

    return merge_hierarchical(np.arange(n), rag, thresh=threshold, rag_copy=False,
                              in_place_merge=True, merge_func=merge, weight_func=weight)


def cluster(n: int, edges_index: np.ndarray, edges: np.ndarray, *, threshold: float,
            linkage: Linkage = "mutex", nodes: np.ndarray | None = None) -> np.ndarray:
    """Group ``n`` fragments by agglomeration on their region graph.

    Parameters
    ----------
    n : int
        Number of fragments (nodes ``0..n-1``).
    edges_index : ndarray of int, (k, 2)
        Node indices of each edge.
    edges : ndarray of uint64, (k, 4 + bins)
        The edge rows (see the module notes).
    threshold : float
        Interfaces whose score is below it join their fragments; in (0, 1).
    linkage : {"mutex", "average", "single"}
    nodes : ndarray of uint64, (n, 4 + bins), optional
        The node rows of fragments ``0..n-1``: the score is then the ``"contrast"``
        (the interface's mean probability minus the mean of its fragments' means;
        ``average`` updates the means of merged fragments); without, the ``"mean"``.

    Returns
    -------
    ndarray of int, (n,)
        Group index per fragment, ``0..m-1``.
    """
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must lie in (0, 1); got {threshold!r}")
    if linkage not in LINKAGES:
        raise ParameterError(f"linkage must be one of {LINKAGES}; got {linkage!r}")
    if n == 0:
        return np.zeros(0, np.int64)
    ia, ib = edges_index[:, 0].astype(np.int64), edges_index[:, 1].astype(np.int64)
    if ia.size == 0:
        return np.arange(n)
    if linkage == "average":
        out = _average(n, ia, ib, edges, nodes, threshold)
        return np.unique(out, return_inverse=True)[1]
    score = edge_mean(edges)
    if nodes is not None:
        mean = edge_mean(nodes)
        score = score - (mean[ia] + mean[ib]) / 2
    rule = _mutex if linkage == "mutex" else _single
    return rule(n, ia, ib, score, threshold)


def agglomeration_plan(stats: SegStats, table: np.ndarray, *, threshold: float,
                       min_voxels: float, linkage: Linkage = "mutex",
                       criterion: Criterion = "contrast"
                       ) -> tuple[np.ndarray, np.ndarray, SegStats]:
    """Cells from fragments: ``(fragment ids, final cell id per fragment, cells)``.

    ``table`` is the edge table with the node rows (:func:`block_edges`).  Fragments
    are grouped by :func:`cluster` on the ``criterion``; groups smaller than
    ``min_voxels`` then join the neighbour whose interface has the lowest mean
    probability (ties: the smaller first voxel), and cells are numbered 1..n by the
    raster order of their first voxel (:func:`chunkseg.ops.segstats.merge_plan`).
    """
    if criterion not in CRITERIA:
        raise ParameterError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    node_rows, edges = split_table(table)
    n = stats.ids.size
    index = np.searchsorted(stats.ids, edges[:, :2]) if n else np.zeros((0, 2), np.int64)
    nodes = None
    if criterion == "contrast":  # every fragment has voxels, so a node row
        nodes = node_rows[np.searchsorted(node_rows[:, 0], stats.ids)] if n else node_rows
    comp = cluster(n, index, edges, threshold=threshold, linkage=linkage, nodes=nodes)
    groups = combine_stats([SegStats(comp.astype(np.uint64) + np.uint64(1), stats.count,
                                     stats.sums, stats.lo, stats.hi, stats.first)])
    between = contract_edges(edges, comp, stats.ids)
    # strength of an interface: 1 - its mean probability, in fixed point
    strength = np.floor((1.0 - edge_mean(between)) * (1 << 20)).astype(np.uint64)
    keys, final, cells = merge_plan(groups, np.column_stack([between[:, :2], strength]),
                                    min_voxels=min_voxels)
    return stats.ids, final[comp] if n else final, cells


@dataclass(frozen=True)
class AggloParams:
    """Validated parameters of the agglomerative segmentation.

    Parameters
    ----------
    fragments : FragmentParams
        How the fragments (graph nodes) are made; carries the voxel size.
    threshold : float
        Merge threshold on the interface score; in (0, 1).
    min_size : float
        Cells smaller than this (µm³, >= 0) join their strongest neighbour.
    linkage : {"mutex", "average", "single"}
    criterion : {"contrast", "mean"}
        The interface score (see the module notes).
    """

    fragments: FragmentParams = FragmentParams()
    threshold: float = 0.5
    min_size: float = 1.0
    linkage: Linkage = "mutex"
    criterion: Criterion = "contrast"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(f"threshold must lie in (0, 1); got {self.threshold!r}")
        if not float(self.min_size) >= 0:
            raise ParameterError(f"min_size must be >= 0 µm³; got {self.min_size!r}")
        if self.linkage not in LINKAGES:
            raise ParameterError(f"linkage must be one of {LINKAGES}; got {self.linkage!r}")
        if self.criterion not in CRITERIA:
            raise ParameterError(f"criterion must be one of {CRITERIA}; got {self.criterion!r}")
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "min_size", float(self.min_size))

    @property
    def min_voxels(self) -> float:
        """``min_size`` in voxels."""
        return self.min_size / float(np.prod(self.fragments.voxel_size))

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"threshold": self.threshold, "min_size": self.min_size,
                "linkage": self.linkage, "criterion": self.criterion,
                "fragments": self.fragments.to_dict()}
