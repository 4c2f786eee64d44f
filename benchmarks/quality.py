"""Quality beside speed: the same scores for the U-Net and the ACME-style baseline.

Membrane IoU / boundary F1 come from ``chunkseg evaluate`` (``run_evaluate``), cell
F1@0.5 from ``chunkseg segment`` with every default (``run_segment``: the agglomerative
method, its default merge threshold) and the instance metrics; beside it, as a
comparison row, ``segment --method flood`` (the seeded watershed: ACME's
``membraneSegmentation`` step) at each method's best membrane threshold.
``benchmarks/agglomerate.py`` scores both segmenters in more detail.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from common import Skip


def _need(module: str, name: str):
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise Skip(f"{module}.{name} is not available in this checkout") from None


def _scores(ctx, prob: str, mask: str, labels: str, key: str) -> dict[str, Any]:
    """Evaluate (when available), then segment at the method's best membrane threshold."""
    run_segment = _need("chunkseg.pipeline.segment", "run_segment")
    instance_report = _need("chunkseg.engine.instances", "instance_report")
    out: dict[str, Any] = {}
    try:
        run_evaluate = _need("chunkseg.pipeline.evaluate", "run_evaluate")
        rep = run_evaluate(prob, out=ctx.work / f"eval_{key}", truth=mask, figures=False,
                           overwrite=True)
        ov = rep["overall"]
        out["evaluate"] = {"iou": ov["best"]["iou"], "boundary_f1": ov["boundary"]["best_f1"],
                           "iou_at_0.5": ov["at_0.5"].get("iou")}
    except Skip as exc:
        out["evaluate"] = {"skipped": str(exc)}
    thr = out["evaluate"].get("iou", {}).get("threshold")
    thr = 0.5 if thr is None else min(max(float(thr), 0.02), 0.98)
    cells = ctx.work / f"cells_{key}.ome.zarr"
    out["segment"] = run_segment(prob, out=cells, overwrite=True, progress=False)
    out["instances"] = instance_report(cells, labels)
    flood = ctx.work / f"cells_flood_{key}.ome.zarr"
    out["segment_flood"] = run_segment(prob, out=flood, method="flood", threshold=thr,
                                       overwrite=True, progress=False)
    out["segment_threshold"] = thr
    out["instances_flood"] = instance_report(flood, labels)
    return out


def _rows(name: str, method: str, sc: dict[str, Any]) -> list[tuple[str, Any, str]]:
    ev, inst = sc["evaluate"], sc["instances"]
    rows = []
    if "skipped" in ev:
        rows.append((f"{name} {method}: membrane IoU / boundary F1", "skipped", ev["skipped"]))
    else:
        iou, bf1 = ev["iou"], ev["boundary_f1"]
        rows += [(f"{name} {method}: membrane IoU", iou["value"],
                  f"at its best threshold {iou['threshold']:.2f}"),
                 (f"{name} {method}: boundary F1", bf1["value"],
                  f"1-voxel tolerance, best threshold {bf1['threshold']:.2f}")]
    seg = sc["segment"]
    rows.append((f"{name} {method}: cell F1@0.5", inst.get("f1"),
                 f"segment defaults ({seg.get('method')}, merge threshold "
                 f"{seg.get('threshold')}); {_cells(inst)}"))
    flood = sc["instances_flood"]
    rows.append((f"{name} {method}: cell F1@0.5, flood", flood.get("f1"),
                 f"segment --method flood, threshold {sc['segment_threshold']:.2f}; "
                 f"{_cells(flood)}"))
    return rows


def _cells(inst: dict[str, Any]) -> str:
    return (f"{inst.get('n_pred')} cells vs {inst.get('n_truth')} true; adapted Rand error "
            f"{inst.get('adapted_rand_error', float('nan')):.3f}")


def _both(ctx, inp: str, mask: str, labels: str, key: str) -> dict[str, Any]:
    res: dict[str, Any] = {"rows": []}
    for method in ("unet", "acme"):
        run = ctx.predict(inp, key, method=method)
        sc = _scores(ctx, run["out"], mask, labels, f"{key}_{method}")
        res[method] = sc
        res["rows"] += _rows(key, "U-Net" if method == "unet" else "ACME-like", sc)
    if not ctx.trained:
        res["rows"].append((f"{key} U-Net", "untrained", "no packaged default model"))
    return res


def sec_quality_synth(ctx) -> dict[str, Any]:
    """Both methods on the synthetic 1× volume against its exact truth."""
    d = ctx.synth(1)
    return _both(ctx, d["norm"], d["mask"], d["labels"], 1)


def sec_quality_real(ctx) -> dict[str, Any]:
    """Both methods on the real ovule crop (PlantSeg test data, Wolny et al. 2020)."""
    raw, lab = ctx.real / "ovule_raw.tif", ctx.real / "ovule_labels.tif"
    if not raw.is_file() or not lab.is_file():
        raise Skip(f"real data {raw} / {lab} absent (see ../shared/data/README.md)")
    from chunkseg.pipeline.binarize import run_binarize
    from chunkseg.pipeline.convert import run_convert
    from chunkseg.pipeline.normalize import run_normalize

    w: Path = ctx.work
    run_convert(str(raw), w / "ovule_raw.ome.zarr", progress=False)
    run_convert(str(lab), w / "ovule_labels.ome.zarr", progress=False)
    run_normalize(w / "ovule_raw.ome.zarr", w / "ovule_norm.ome.zarr", progress=False)
    run_binarize(w / "ovule_labels.ome.zarr", w / "ovule_mask.ome.zarr", progress=False)
    return _both(ctx, str(w / "ovule_norm.ome.zarr"), str(w / "ovule_mask.ome.zarr"),
                 str(w / "ovule_labels.ome.zarr"), "ovule")
