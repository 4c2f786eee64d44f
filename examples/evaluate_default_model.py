"""Score models on held-out volumes beside the raw-intensity and Hessian-plate floors.

For every volume of the chosen sources (see :mod:`default_model_data`; labels: ovule
hand-drawn, organoid by the authors' network, synthetic exact), with NO parameter: the raw
is scaled by the default normalization (:func:`chunkseg.ops.robust_range.robust_range`,
or ``--percentiles 0 99.99 --keep-zero`` for the paper's), the model predicts the whole
volume in memory (mirrored by its receptive field, as ``chunkseg predict`` does at volume
borders).  Scores (:mod:`chunkseg.ops.metrics`): best membrane IoU and best
1-voxel-tolerant F1 over thresholds 0.02-0.98, against ``membrane_mask(labels)``.
Floors: the scaled raw itself and the Hessian plate measure at σ 2 voxels
(:func:`chunkseg.ops.acme.plate_measure`), scored the same way.

    python examples/evaluate_default_model.py --models chunkseg/models/default.keras \\
        training/default/step_*.keras --sources ovule --out training/default/heldout.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model_data import real_volumes, synthetic_volumes  # noqa: E402

THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)


def best_scores(p: np.ndarray, truth: np.ndarray, voxel_size=(1.0, 1.0, 1.0)) -> dict:
    """Best IoU and best 1-voxel-tolerant F1 (each at its own threshold), ROC AUC."""
    from chunkseg.ops import metrics as m

    spec = m.EvalSpec.make(thresholds=THRESHOLDS, dtype=np.float32, tolerance=1,
                           voxel_size=voxel_size)
    stats = m.volume_statistics(np.clip(p, 0, 1).astype(np.float32), truth.astype(np.uint8),
                                spec)
    s = m.scores_from_counts(**m.confusion_at(stats["hist"], spec.grid, THRESHOLDS))
    f1 = m.boundary_scores(stats, spec.grid, THRESHOLDS)["f1"]
    i, j = int(np.nanargmax(s["iou"])), int(np.nanargmax(f1))
    return {"iou": round(float(s["iou"][i]), 4), "iou_threshold": float(THRESHOLDS[i]),
            "tolerant_f1": round(float(f1[j]), 4), "f1_threshold": float(THRESHOLDS[j]),
            "roc_auc": round(float(m.auc_scores(stats["hist"])["roc_auc"]), 4)}


def scaled(raw: np.ndarray, percentiles, ignore_zero: bool) -> np.ndarray:
    """The raw as the network sees it: 8-bit scaled, / 255."""
    from chunkseg.ops.normalize import scale_to_uint8
    from chunkseg.ops.robust_range import robust_range

    low, high = robust_range(raw, percentiles, ignore_zero=ignore_zero)
    return scale_to_uint8(raw, low, high).astype(np.float32) / 255.0


def predict_whole(model, x: np.ndarray, radius, factor) -> np.ndarray:
    """Whole-volume prediction, mirrored by the receptive field, padded to the pooling grid."""
    pad = [(r, r + (-(s + 2 * r)) % f) for s, r, f in zip(x.shape, radius, factor)]
    xp = np.pad(x, pad, mode="symmetric")
    p = model.predict(xp[None, ..., None], verbose=0)[0, ..., 0]
    return p[tuple(slice(a, a + s) for (a, _), s in zip(pad, x.shape))]


def volumes(sources: list[str]) -> list[dict]:
    out = []
    for src in sources:
        vols = synthetic_volumes(2, start=16) if src == "synthetic" else real_volumes(src)
        out += [{**v, "source": src} for v in vols]
    return out


def floors(x: np.ndarray, truth: np.ndarray, voxel_size) -> dict:
    from chunkseg.ops.acme import plate_measure

    return {"raw_intensity": best_scores(x, truth, voxel_size),
            "hessian_plate_sigma2": best_scores(plate_measure(x, sigmas=(2.0,))[0], truth,
                                                voxel_size)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--sources", nargs="+", default=["ovule"],
                    choices=["ovule", "organoid", "synthetic"])
    ap.add_argument("--percentiles", type=float, nargs=2, default=[1.0, 99.5])
    ap.add_argument("--keep-zero", action="store_true", help="percentiles over all voxels")
    ap.add_argument("--no-floors", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from chunkseg.model.io import load_model

    vols = volumes(args.sources)
    for v in vols:
        v["x"] = scaled(v["raw"], args.percentiles, not args.keep_zero)
    result = {"normalization": {"percentiles": args.percentiles,
                                "ignore_zero": not args.keep_zero},
              "thresholds": [0.02, 0.98, 0.02], "volumes": {}}
    for v in vols:
        result["volumes"][v["name"]] = {"source": v["source"], "labels": v["labels_from"],
                                        "shape": list(v["raw"].shape), "models": {}}
        if not args.no_floors:
            result["volumes"][v["name"]]["floors"] = floors(v["x"], v["mask"], v["voxel_size"])
            print(v["name"], result["volumes"][v["name"]]["floors"], flush=True)
    for path in args.models:
        model, meta = load_model(path)
        radius, factor = meta["receptive_field"], meta["pooling_factor"]
        for v in vols:
            sc = best_scores(predict_whole(model, v["x"], radius, factor), v["mask"],
                             v["voxel_size"])
            result["volumes"][v["name"]]["models"][str(path)] = sc
            print(v["name"], path, sc, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
