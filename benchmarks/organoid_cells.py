"""Why cells fail on the organoid: fragments, seeds, merges and splits, measured.

Usage::

    python benchmarks/organoid_cells.py [--work DIR] [--out benchmarks/results/organoid_cells]

For the ovule (hand-drawn labels), organoid t1-t5 (labels made by the authors'
network, not by hand; 2 µm slices) and ``synth_aniso`` (a synthetic volume at the
organoid's voxel size, 10 µm cells, exact truth; never used to choose a default), with
the default model's probability (``model``) and the truth-derived ``oracle``
(``benchmarks/agglomerate.py``), ``segment``'s default agglomeration in memory (equal to
the blockwise result), and per volume:

* ``frag_purity``: share of the labelled voxels whose fragment's majority truth cell is
  their own (1: no fragment spans two cells; the agglomeration can only merge, so this
  bounds what it can reach); ``big_frag_cells``: truth cells the largest fragment covers
  at least 5 % of; ``frags_per_cell``: median number of fragments per truth cell;
* ``edge_same`` / ``edge_diff``: median mean-interface probability of the edges between
  pure fragments (> 80 % one cell) of the same / of different truth cells, and
  ``best_split``: the threshold that best separates the two (a diagnosis, not a default);
* ``unreached``: labelled voxels left 0; cell scores F1@0.5, adapted Rand error, VOI
  split / merge, cells / truth; ``prev_*``: F1, adapted Rand error and unreached share
  with the agglo defaults before ``benchmarks/segment_defaults.py`` re-chose them;
* ``ref_*``: an unbounded, in-memory reference of the same idea (scikit-image's
  watershed of ``p`` from the maxima of the Euclidean distance transform, smoothed by
  0.5 µm, then the same agglomeration): what the probability allows when no rule is bounded.

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agglomerate import (  # noqa: E402
    PREVIOUS, _predict, _store, _table, oracle, sources,
)
from common import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _majority(table: np.ndarray) -> dict[int, tuple[int, float, int]]:
    """Per predicted id: (majority truth id, its share, labelled voxels)."""
    out = {}
    for pid in np.unique(table[:, 1]):
        if pid == 0:
            continue
        r = table[table[:, 1] == pid]
        k = int(r[:, 2].argmax())
        n = int(r[:, 2].sum())
        out[int(pid)] = (int(r[k, 0]), float(r[k, 2]) / n, n)
    return out


def fragment_facts(truth, frag, edges) -> dict:
    from chunkseg.ops.instance_metrics import contingency
    from chunkseg.ops.rag import edge_mean, split_table

    edges = split_table(edges)[1]
    table = contingency(truth, frag)
    major = _majority(table)
    labelled = sum(m[2] for m in major.values())
    big = max(major, key=lambda f: major[f][2])
    rows = table[table[:, 1] == big]
    per_cell = [sum(1 for m in major.values() if m[0] == t) for t in np.unique(truth[truth > 0])]
    same, diff = [], []
    for row, mean in zip(edges, edge_mean(edges)):
        a, b = major.get(int(row[0])), major.get(int(row[1]))
        if a and b and a[1] > 0.8 and b[1] > 0.8:
            (same if a[0] == b[0] else diff).append(mean)
    grid = np.linspace(0.05, 0.95, 91)
    acc = [(np.sum(np.array(same) < g) + np.sum(np.array(diff) >= g)) for g in grid]
    return {"fragments": len(major),
            "frag_purity": sum(m[1] * m[2] for m in major.values()) / labelled,
            "big_frag_cells": int((rows[:, 2] >= 0.05 * rows[:, 2].sum()).sum()),
            "frags_per_cell": float(np.median(per_cell)),
            "edge_same": float(np.median(same)) if same else None,
            "edge_diff": float(np.median(diff)) if diff else None,
            "best_split": float(grid[int(np.argmax(acc))]) if same and diff else None}


def reference(prob, vs, threshold: float, min_size: float, sigma: float = 0.5) -> np.ndarray:
    """Unbounded in-memory fragments (distance-transform watershed) + the same global step."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    from chunkseg.ops.rag import agglomeration_plan, block_edges
    from chunkseg.ops.segstats import block_stats, relabel

    inside = prob < 0.5
    dist = ndimage.gaussian_filter(ndimage.distance_transform_edt(inside, sampling=vs),
                                   [sigma / s for s in vs])
    markers, _ = ndimage.label((dist == ndimage.maximum_filter(dist, size=3)) & inside)
    frag = watershed(prob, markers).astype(np.uint64)
    keys, final, _ = agglomeration_plan(block_stats(frag), block_edges(frag, prob, frag.shape),
                                        threshold=threshold,
                                        min_voxels=min_size / float(np.prod(vs)))
    return relabel(frag, keys, final)


def rows_of(src: dict, kind: str, prob: np.ndarray) -> dict:
    from chunkseg.engine.agglomerate import agglomerate_array, fragment_graph, segment_method
    from chunkseg.ops.instance_metrics import contingency, instance_scores
    from chunkseg.ops.rag import agglomeration_plan
    from chunkseg.ops.segstats import relabel

    truth, vs = src["truth"], src["vs"]
    _, params = segment_method("agglo", voxel_size=vs)
    frag, stats, edges = fragment_graph(prob, params.fragments)
    keys, final, _ = agglomeration_plan(stats, edges, threshold=params.threshold,
                                        min_voxels=params.min_voxels, criterion=params.criterion)
    lab = relabel(frag, keys, final)
    s = instance_scores(contingency(truth, lab))
    ref = instance_scores(contingency(truth, reference(prob, vs, params.threshold,
                                                      params.min_size)))
    _, before = segment_method("agglo", voxel_size=vs, **PREVIOUS)
    prev = agglomerate_array(prob, before)[0]
    sp = instance_scores(contingency(truth, prev))
    return {"volume": src["name"], "probability": kind,
            **fragment_facts(truth, frag, edges),
            "prev_f1": sp["f1"], "prev_are": sp["adapted_rand_error"],
            "prev_unreached": float((prev[truth > 0] == 0).mean()),
            "unreached": float((lab[truth > 0] == 0).mean()),
            "f1": s["f1"], "are": s["adapted_rand_error"], "vi_split": s["vi_split"],
            "vi_merge": s["vi_merge"], "cells": f"{s['n_pred']} / {s['n_truth']}",
            "ref_f1": ref["f1"], "ref_are": ref["adapted_rand_error"]}


def aniso_source(work: Path) -> dict:
    """A synthetic volume at the organoid's voxel size (2 × 0.26 × 0.26 µm): exact truth."""
    from chunkseg.synth import synth_volume

    vs = (2.0, 0.26, 0.26)
    v = synth_volume((32, 190, 190), seed=3, voxel_size=vs, cell_diameter=10.0,
                     psf_sigma=(1.0, 0.15, 0.15))
    raw = _store(work / "synth_aniso_raw.zarr", v.raw, vs, "raw")
    return {"name": "synth_aniso", "truth": v.labels.astype(np.uint32), "vs": vs,
            "prob": {"model": _predict(raw, work / "synth_aniso.prob.zarr"),
                     "oracle": _store(work / "synth_aniso.oracle.zarr", oracle(v.labels), vs,
                                      "probability")}}


def main(argv=None) -> int:
    from chunkseg.io.store import open_volume

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="agglomerate-work",
                    help="folder of the cached probabilities (benchmarks/agglomerate.py's)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "organoid_cells"))
    args = ap.parse_args(argv)
    rows = []
    for src in [*sources(Path(args.work)), aniso_source(Path(args.work))]:
        if src["name"] == "synth":
            continue
        for kind, store in src["prob"].items():
            rows.append(rows_of(src, kind, open_volume(store).data.compute()[0]))
            print(rows[-1], flush=True)
    write_results(args.out, _table(rows, list(rows[0])), {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
