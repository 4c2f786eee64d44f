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

import numpy as np

from chunkseg.engine.segment import BlockwiseMethod
from chunkseg.ops.fragments import fragment_seed_halo, fragment_seeds, fragments
from chunkseg.ops.rag import AggloParams, agglomeration_plan, block_edges
from chunkseg.ops.segstats import SegStats, block_stats, relabel
from chunkseg.ops.watershed import as_probability

__all__ = ["agglo_method", "agglomerate_array"]


def _plan(stats: SegStats, edges: np.ndarray, *, params: AggloParams) -> tuple:
    return agglomeration_plan(stats, edges, threshold=params.threshold,
                              min_voxels=params.min_voxels, linkage=params.linkage)


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
    p = as_probability(prob)
    frag = fragments(p, params.fragments)
    keys, final, cells = _plan(block_stats(frag), block_edges(frag, p, frag.shape),
                               params=params)
    return relabel(frag, keys, final).astype(np.uint32), cells
