"""Why does training on organoid + synthetic + renders not transfer to the ovule?

Measures, per volume (cheap numpy + TF inference, one thread):
- cells: count, median extent along z / y / x in voxels (labels' bounding boxes);
- mask: membrane fraction of the labelled voxels, median run length of mask voxels along
  x (lateral width), for ``membrane_mask`` and for the anisotropy-aware
  ``training_mask``;
- raw wall profile: mean scaled raw (0-1) against the in-plane distance (voxels) to the
  label interface (negative = inside the 2-voxel mask), and the lateral FWHM of the bright
  wall (run length along x above half-way between cytoplasm and wall level);
- per model: mean probability against the same distance, best-IoU threshold, precision /
  recall there, predicted lateral width, and recall on the dimmest third of wall voxels.

    python training/loso_ovule_v2/diagnose.py --models m1.keras ... > diag.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
from default_model_data import (broad_renders, real_volumes, synthetic_volumes,  # noqa: E402
                                tissue_renders, training_mask)
from evaluate_default_model import best_scores, predict_whole, scaled  # noqa: E402

BINS = np.arange(-5, 9)


def runs_along_x(m: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True along the last axis."""
    d = np.diff(np.pad(m.astype(np.int8), [(0, 0)] * (m.ndim - 1) + [(1, 1)]), axis=-1)
    starts, ends = np.nonzero(d.reshape(-1, d.shape[-1]) == 1), np.nonzero(
        d.reshape(-1, d.shape[-1]) == -1)
    return ends[1] - starts[1]


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """In-plane (y, x) distance to the mask, negative inside it (per z slice)."""
    out = np.zeros(mask.shape, np.float32)
    for z in range(mask.shape[0]):
        m = mask[z].astype(bool)
        out[z] = ndi.distance_transform_edt(~m) - ndi.distance_transform_edt(m)
    return out


def profile(values: np.ndarray, dist: np.ndarray, region: np.ndarray) -> list[float]:
    r = np.rint(dist[region]).astype(int)
    v = values[region]
    return [round(float(v[r == b].mean()), 3) if (r == b).any() else float("nan")
            for b in BINS]


def cell_extent(labels: np.ndarray) -> tuple:
    objs = ndi.find_objects(labels)
    ext = np.array([[s.stop - s.start for s in o] for o in objs if o is not None])
    return tuple(int(v) for v in np.median(ext, axis=0)), len(ext)


def describe(v: dict, models: list) -> None:
    x, mask, lab = v["x"], v["mask"].astype(bool), v["labels"]
    region = lab > 0  # labelled voxels only (the organoid's outside is 0 and dark)
    dist = signed_distance(mask)
    ext, n = cell_extent(lab)
    prof = profile(x, dist, region)
    cyt, wall = np.nanmedian(prof[-3:]), np.nanmax(prof[:6])
    bright = (x > (cyt + wall) / 2) & region
    thin = training_mask(lab, v["voxel_size"]).astype(bool)
    print(f"{v['name']}: voxel {v['voxel_size']} cells {n} median extent zyx {ext}; mask "
          f"fraction {mask[region].mean():.3f}, median x-run {np.median(runs_along_x(mask)):.0f};"
          f" training_mask {thin[region].mean():.3f}, x-run "
          f"{np.median(runs_along_x(thin)):.0f}; raw x-run above half-max "
          f"{np.median(runs_along_x(bright)):.0f}")
    print(f"   raw profile d={BINS.tolist()}: {prof}")
    dim = mask & (x < np.quantile(x[mask], 1 / 3))
    for name, model, meta in models:
        p = predict_whole(model, x, meta["receptive_field"], meta["pooling_factor"])
        sc = best_scores(p, mask, v["voxel_size"])
        pm = p >= sc["iou_threshold"]
        prec = (pm & mask).sum() / max(pm.sum(), 1)
        rec = (pm & mask).sum() / mask.sum()
        print(f"   {name}: IoU {sc['iou']} @ {sc['iou_threshold']} F1 {sc['tolerant_f1']} AUC "
              f"{sc['roc_auc']}; P {prec:.2f} R {rec:.2f}; pred x-run "
              f"{np.median(runs_along_x(pm)):.0f}; dim-wall recall {(pm & dim).sum() / dim.sum():.2f}")
        print(f"      p profile: {profile(p, dist, region)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--sources", nargs="*", default=["ovule", "organoid", "synthetic", "renders", "broad"])
    args = ap.parse_args()
    from chunkseg.model.io import load_model

    models = [(Path(m).parent.parent.name + "/" + Path(m).name, *load_model(m))
              for m in args.models]
    vols = []
    for s in args.sources:
        vols += (real_volumes(s) if s in ("ovule", "organoid") else synthetic_volumes(4)
                 if s == "synthetic" else broad_renders() if s == "broad" else tissue_renders())
    for v in vols:
        v["x"] = scaled(v["raw"], (1.0, 99.5), True)
        describe(v, models if v["name"] in ("ovule", "organoid_t1", "organoid_t3") else [])


if __name__ == "__main__":
    main()
