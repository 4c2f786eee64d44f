"""The default model on every shared real volume, with no parameter, beside two floors.

For each volume of ``../shared/data/real`` with labels (the ovule: HAND-DRAWN labels; the
organoid t1..t5: labels by the authors' network, i.e. agreement with a published
pipeline): ``run_convert`` of the TIFF, then ``run_predict`` with the default model and
no other option (the default intensity range, the model's voxel size), then the best
membrane IoU and best 1-voxel-tolerant F1 over thresholds 0.02-0.98 against
``membrane_mask(labels)`` (binarize's definition), beside the scaled raw intensity and
the Hessian plate measure (σ 2 voxels) scored the same way
(``examples/evaluate_default_model.py``: ``best_scores``, ``floors``).  Whether a volume
was in the default model's training data is read from the model's metadata.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from common import Skip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


def _trained_on(meta: dict[str, Any]) -> set[str]:
    sources = (meta.get("training") or {}).get("sources") or {}
    return {v for s in sources.values() for v in s.get("volumes", [])}


def sec_default_real(ctx) -> dict[str, Any]:
    """Default model, no parameter, on each shared real volume; floors beside it."""
    from default_model_data import real_volumes
    from evaluate_default_model import best_scores, floors, scaled

    from chunkseg.io.store import open_volume
    from chunkseg.model.io import read_metadata
    from chunkseg.pipeline.convert import run_convert

    if not (ctx.real / "ovule_raw.tif").is_file():
        raise Skip(f"real data absent under {ctx.real} (see ../shared/data/README.md)")
    trained = _trained_on(read_metadata(ctx.model()))
    res: dict[str, Any] = {"rows": [], "volumes": {}}
    for src in ("ovule", "organoid"):
        for v in real_volumes(src):
            name = v["name"]
            tif = ctx.real / (f"{name}_raw.tif" if src == "ovule" else f"organoid/{name}_raw.tif")
            zarr_in = ctx.work / f"{name}.ome.zarr"
            run_convert(str(tif), zarr_in, progress=False)
            run = ctx.predict(str(zarr_in), f"real_{name}")
            p = np.asarray(open_volume(run["out"]).data[0]).astype(np.float32)
            if p.dtype == np.uint8:
                p = p / 255.0
            sc = best_scores(p, v["mask"], v["voxel_size"])
            fl = floors(scaled(v["raw"], (1.0, 99.5), True), v["mask"], v["voxel_size"])
            state = "TRAINED ON" if name in trained else "held out"
            res["volumes"][name] = {"model": sc, **fl, "labels": v["labels_from"],
                                    "in_training": name in trained}
            note = (f"{state}; labels {v['labels_from']}; raw {fl['raw_intensity']['iou']:.3f}"
                    f" / {fl['raw_intensity']['tolerant_f1']:.3f}, Hessian σ2 "
                    f"{fl['hessian_plate_sigma2']['iou']:.3f} / "
                    f"{fl['hessian_plate_sigma2']['tolerant_f1']:.3f}")
            res["rows"].append((f"{name}: default model best IoU / tolerant F1",
                                f"{sc['iou']:.3f} / {sc['tolerant_f1']:.3f}", note))
    return res
