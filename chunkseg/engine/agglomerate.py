"""Agglomerative cell segmentation, blockwise: fragments → region graph → cells.

The blockwise engine of the seeded flood (:func:`chunkseg.engine.segment.segment_volume`)
runs it with other rules (:func:`agglo_method`):

A. **fragment seeds** per block with their halo (:func:`chunkseg.ops.fragments.fragment_seeds`,
   exact), their components merged across block faces by union-find;
B. **fragments** by the bounded flood from these seeds, and per block the fragment
   statistics and the edge table of the face pairs it owns
   (:func:`chunkseg.ops.rag.block_edges`); the tables of all blocks sum exactly to the
   whole-volume table;
C. **one global agglomeration** per time point on the graph (fragments and edges, not
   voxels; :func:`chunkseg.ops.rag.agglomeration_plan`);
D. the blockwise relabel of the caller (:func:`chunkseg.engine.segment.final_labels`).

So the cells do not depend on the block shape and equal :func:`agglomerate_array`, the
in-memory reference.  Time points are segmented independently.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal
import numpy as np

from chunkseg.engine.segment import BlockwiseMethod, flood_method
from chunkseg.errors import ParameterError
from chunkseg.ops.fragments import (
    FragmentParams, fragment_seed_halo, fragment_seeds, fragments,
)
from chunkseg.ops.rag import (
    AggloParams, Criterion, Linkage, agglomeration_plan, block_edges,
)
from chunkseg.ops.segstats import SegStats, block_stats, relabel
from chunkseg.ops.watershed import (
    DEFAULT_MEMBRANE_REACH, SegmentParams, as_probability, default_membrane_reach,
)

__all__ = ["DEFAULT_CRITERION", "DEFAULT_FRAGMENT_RADIUS", "DEFAULT_FRAGMENT_SIGMA",
           "DEFAULT_INTERIOR_LEVELS", "DEFAULT_MEMBRANE_REACH", "DEFAULT_MIN_SIZE",
           "DEFAULT_THRESHOLD", "DEFAULT_THRESHOLDS", "METHODS", "SegmentMethod",
           "agglo_method", "agglomerate_array", "fragment_graph", "segment_method"]

#: the methods of :func:`segment_method`
SegmentMethod = Literal["agglo", "flood"]
METHODS: tuple[str, ...] = ("agglo", "flood")
#: the interface score the agglomeration merges on (:mod:`chunkseg.ops.rag`)
DEFAULT_CRITERION = "contrast"
#: merge threshold per interface score (benchmarks/segment_defaults.py)
DEFAULT_THRESHOLDS = {"contrast": 0.1, "mean": 0.45}
#: merge threshold of the default score
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS[DEFAULT_CRITERION]
#: cells smaller than this join a neighbour, µm³ (benchmarks/segment_defaults.py)
DEFAULT_MIN_SIZE = 0.3
#: cap of the distance to the boundaries for the fragment seeds, µm
DEFAULT_FRAGMENT_RADIUS = 0.5
#: smoothing of that distance, µm
DEFAULT_FRAGMENT_SIGMA = 0.15
#: interior levels of the fragment flood
DEFAULT_INTERIOR_LEVELS = 4


def _plan(stats: SegStats, edges: np.ndarray, *, params: AggloParams) -> tuple:
    return agglomeration_plan(stats, edges, threshold=params.threshold,
                              min_voxels=params.min_voxels, linkage=params.linkage,
                              criterion=params.criterion)


def agglo_method(params: AggloParams) -> BlockwiseMethod:
    """Fragments, region graph and agglomeration as rules of the blockwise engine."""
    fp = params.fragments
    return BlockwiseMethod(functools.partial(fragment_seeds, params=fp), fragment_seed_halo(fp),
                           fp.flood_params(), functools.partial(_plan, params=params))


def agglomerate_array(prob: np.ndarray, params: AggloParams) -> tuple[np.ndarray, SegStats]:
    """In-memory reference: cell labels (uint32) and cell statistics of one 3D volume.

    Parameters
    ----------
    prob : ndarray, (z, y, x)
        Membrane probability (float in [0, 1] or uint8).
    params : AggloParams

    Returns
    -------
    labels : ndarray of uint32
        Cells numbered 1..n by the raster order of their first voxel; 0 = unreached.
    cells : SegStats
    """
    frag, stats, edges = fragment_graph(prob, params.fragments)
    keys, final, cells = _plan(stats, edges, params=params)
    return relabel(frag, keys, final).astype(np.uint32), cells


def fragment_graph(prob: np.ndarray, params: FragmentParams
                   ) -> tuple[np.ndarray, SegStats, np.ndarray]:
    """In-memory fragments of one 3D volume with their statistics and edge table.

    The input of the global step (:func:`chunkseg.ops.rag.agglomeration_plan`), before
    any merge threshold or minimum size applies.

    Parameters
    ----------
    prob : ndarray, (z, y, x)
        Membrane probability (float in [0, 1] or uint8).
    params : FragmentParams

    Returns
    -------
    fragments : ndarray of uint64
    stats : SegStats
        Per fragment.
    edges : ndarray of uint64
        The region graph (:func:`chunkseg.ops.rag.block_edges` of the whole volume).
    """
    p = as_probability(prob)
    frag = fragments(p, params)
    return frag, block_stats(frag), block_edges(frag, p, frag.shape)


def segment_method(
    method: SegmentMethod,
    *,
    voxel_size: Sequence[float],
    threshold: float | None = None,
    min_size: float | None = None,
    seed_distance: float | None = None,
    reach: float | None = None,
    membrane_reach: float | None = None,
    levels: int = 3,
    fragment_radius: float | None = None,
    fragment_sigma: float | None = None,
    linkage: Linkage | None = None,
    criterion: Criterion | None = None,
) -> tuple[BlockwiseMethod, SegmentParams | AggloParams]:
    """The blockwise rules of a segmentation method and its validated parameters.

    Parameters
    ----------
    method : {"agglo", "flood"}
    voxel_size : sequence of 3 float
        ``(z, y, x)`` µm.
    threshold : float, optional
        ``agglo``: merge threshold on the interface score (default
        :data:`DEFAULT_THRESHOLDS` of the criterion); ``flood``: interior is
        ``p < threshold`` (0.5).
    min_size : float, optional
        µm³; smaller cells (flood: segments) join a neighbour (default
        :data:`DEFAULT_MIN_SIZE`; ``flood``: 1).
    seed_distance, reach, membrane_reach, levels
        ``flood`` only (:class:`chunkseg.ops.watershed.SegmentParams`); ``membrane_reach``
        and ``levels`` also set how far fragments grow into the membranes.
    fragment_radius, fragment_sigma : float, optional
        ``agglo`` only: cap and smoothing of the distance to the boundaries, µm
        (defaults :data:`DEFAULT_FRAGMENT_RADIUS`, :data:`DEFAULT_FRAGMENT_SIGMA`).
    linkage : {"mutex", "average", "single"}, optional
        ``agglo`` only (default ``"mutex"``).
    criterion : {"contrast", "mean"}, optional
        ``agglo`` only: the interface score (default :data:`DEFAULT_CRITERION`; see
        :mod:`chunkseg.ops.rag`).

    Raises
    ------
    ParameterError
        Unknown method, a value out of range, or an option of the other method.
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}; got {method!r}")
    other = ({"seed_distance": seed_distance, "reach": reach} if method == "agglo" else
             {"fragment_radius": fragment_radius, "fragment_sigma": fragment_sigma,
              "linkage": linkage, "criterion": criterion})
    given = [k for k, v in other.items() if v is not None]
    if given:
        raise ParameterError(f"{', '.join(given)}: not an option of method {method!r}")
    if method == "flood":
        params = SegmentParams(
            threshold=0.5 if threshold is None else threshold,
            min_size=1.0 if min_size is None else min_size,
            seed_distance=0.5 if seed_distance is None else seed_distance,
            voxel_size=tuple(voxel_size), reach=reach, membrane_reach=membrane_reach,
            levels=levels)
        return flood_method(params), params
    frag = FragmentParams(
        radius=DEFAULT_FRAGMENT_RADIUS if fragment_radius is None else fragment_radius,
        sigma=DEFAULT_FRAGMENT_SIGMA if fragment_sigma is None else fragment_sigma,
        voxel_size=tuple(voxel_size),
        membrane_reach=(default_membrane_reach(voxel_size) if membrane_reach is None
                        else membrane_reach),
        levels=levels, interior_levels=DEFAULT_INTERIOR_LEVELS)
    criterion = criterion or DEFAULT_CRITERION  # an unknown one: AggloParams refuses it
    params = AggloParams(frag, threshold=DEFAULT_THRESHOLDS.get(criterion, DEFAULT_THRESHOLD)
                         if threshold is None else threshold,
                         min_size=DEFAULT_MIN_SIZE if min_size is None else min_size,
                         linkage=linkage or "mutex", criterion=criterion)
    return agglo_method(params), params
