"""Why labelled voxels stay unlabelled after ``segment`` on the organoid (2 µm slices).

Usage::

    python benchmarks/unreached.py [--work DIR] [--out benchmarks/results/unreached]

For organoid t1-t3 (labels made by the authors' network, not by hand) and each
probability (``model``: the packaged default model through ``run_predict``; ``oracle``:
the labels' membranes blurred plus noise, as in ``benchmarks/agglomerate.py``), the
agglomerative default in memory (``agglomerate_array``, equal to the blockwise result)
with ``--membrane-reach`` 0.5 (the default before it became at least one voxel of the
coarsest axis), 1.0 and 2.0 µm (the default now on these 2 µm slices): the share of labelled
voxels left 0, the share of labelled voxels with ``p >= 0.5`` (the fragments' boundary),
the median ``p`` of the unreached voxels, labelled cells without any fragment voxel, and
cell F1@0.5.  Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agglomerate import REAL, _predict, _table, oracle  # noqa: E402
from common import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def rows_of(name: str, truth: np.ndarray, prob: np.ndarray, vs) -> list[dict]:
    from chunkseg.engine.agglomerate import agglomerate_array, segment_method
    from chunkseg.ops.fragments import fragments
    from chunkseg.ops.instance_metrics import contingency, instance_scores

    inside = truth > 0
    rows = []
    for reach in (0.5, 1.0, 2.0):
        _, params = segment_method("agglo", voxel_size=vs, membrane_reach=reach)
        lab, _ = agglomerate_array(prob, params)
        frag = fragments(prob, params.fragments)
        un = inside & (lab == 0)
        no_frag = sum(not (frag[truth == i] > 0).any() for i in np.unique(truth[inside]))
        rows.append({"volume": name, "membrane_reach": reach,
                     "unreached": float(un.sum() / inside.sum()),
                     "labelled_p_ge_boundary": float((prob[inside] >= 0.5).mean()),
                     "median_p_unreached": float(np.median(prob[un])) if un.any() else None,
                     "cells_without_fragment": int(no_frag),
                     "f1": float(instance_scores(contingency(truth, lab))["f1"])})
    return rows


def main(argv=None) -> int:
    import tifffile

    from chunkseg.io.store import open_volume

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="unreached-work")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "unreached"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in (1, 2, 3):
        raw = REAL / "organoid" / f"organoid_t{t}_raw.tif"
        truth = tifffile.imread(REAL / "organoid" / f"organoid_t{t}_labels.tif").astype(np.uint32)
        vs = open_volume(raw).voxel_size
        model = open_volume(_predict(raw, work / f"organoid_t{t}.prob.zarr")).data.compute()[0]
        rows += rows_of(f"organoid_t{t} model", truth, model, vs)
        rows += rows_of(f"organoid_t{t} oracle", truth, oracle(truth), vs)
    cols = ["volume", "membrane_reach", "unreached", "labelled_p_ge_boundary",
            "median_p_unreached", "cells_without_fragment", "f1"]
    write_results(args.out, _table(rows, cols), {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
