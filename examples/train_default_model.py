"""Train the default model shipped as ``chunkseg/models/default.keras`` (reproducible, seeded).

Steps
-----
1. ``chunkseg synth``: 10 synthetic membrane volumes with varied voxel size (anisotropy
   1.3-5), cell diameter (2.5-8 µm), size variation, PSF, signal (photon noise), haze and
   out-of-focus blobs; 8 for training, 2 held out for validation.
2. ``chunkseg normalize``: each to uint8 between its (0, 99.99) percentiles, the paper's
   default and what ``chunkseg predict`` computes for an input without a stored range.
3. ``chunkseg train``: depth-3 U-Net, base 8 filters, pools (1,2,2) then (2,2,2), on
   augmented 16 x 64 x 64 crops (flips, y-x rotations, intensity, noise presets).
4. Evaluation of the kept model on the 2 synthetic validation volumes and on the real
   ovule volume ``../shared/data/real/ovule_raw.tif`` (never trained on; membrane mask
   from its labels with ``chunkseg.ops.boundaries.membrane_mask``); writes
   ``evaluation.json`` next to the model.

Run (about 25 min on one CPU core; the shared machine is busy, so one thread)::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
        python examples/train_default_model.py --work out/default_model \
        --out chunkseg/models/default.keras
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chunkseg.ops.normalize import DEFAULT_PERCENTILES as PERCENTILES

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / ".." / "shared" / "data" / "real"

MODEL = {"depth": 3, "base_filters": 8, "pools": [[1, 2, 2], [2, 2, 2]], "kernel_size": 3,
         "dropout": 0.0, "batchnorm": True, "bn_momentum": 0.9}
TRAIN = {"epochs": 20, "steps": 16, "val_steps": 4, "crop": [16, 64, 64], "batch": 2,
         "lr": 2e-3, "lr_schedule": "plateau", "patience": 8, "membrane_weight": 2.0,
         "membrane_bias": 0.5, "noise": "low", "augment": True, "seed": 0}
SHAPE = (40, 128, 128)
OVULE_VOXEL_SIZE = (0.235, 0.15, 0.15)  # µm, ../shared/data/README.md


def volume_params(i: int) -> dict:
    """Synthetic acquisition parameters of volume ``i`` (deterministic, varied)."""
    rng = np.random.default_rng([2024, i])
    xy = float(rng.choice([0.1, 0.13, 0.16, 0.2]))
    z = float(np.round(xy * rng.uniform(1.3, 5.0), 3))
    psf = float(rng.uniform(0.7, 1.5))
    return {
        "seed": 100 + i,
        "voxel_size": (z, xy, xy),
        "cell_diameter": float(np.round(rng.uniform(2.5, 8.0), 2)),
        "size_variation": float(np.round(rng.uniform(0.1, 0.4), 2)),
        "psf_sigma": (round(0.45 * psf * max(1.0, z / 0.4), 3), round(0.12 * psf, 3),
                      round(0.12 * psf, 3)),
        "membrane_photons": float(np.round(np.exp(rng.uniform(np.log(60), np.log(1200))), 1)),
        "cell_contrast": float(np.round(rng.uniform(0.1, 0.5), 2)),
        "haze_photons": float(np.round(rng.uniform(5, 60), 1)),
        "blobs": bool(rng.random() < 0.7),
    }


def make_data(work: Path, n: int) -> list[tuple[str, str, dict]]:
    from chunkseg.pipeline.normalize import run_normalize
    from chunkseg.pipeline.synth import run_synth

    pairs = []
    for i in range(n):
        params = volume_params(i)
        d = work / f"synth{i:02d}"
        if not (d / "norm.ome.zarr").exists():
            paths = run_synth(d, shape=SHAPE, outputs=("raw", "mask"), overwrite=True,
                              progress=False, **params)
            run_normalize(paths["raw"], d / "norm.ome.zarr", percentiles=PERCENTILES,
                          overwrite=True, progress=False)
        pairs.append((str(d / "norm.ome.zarr"), str(d / "mask.ome.zarr"), params))
    return pairs


def predict_volume(model, x8: np.ndarray, factor) -> np.ndarray:
    """In-memory prediction of a whole small volume (reflect-padded to the pooling grid)."""
    pad = [(0, (-s) % f) for s, f in zip(x8.shape, factor)]
    x = np.pad(x8.astype(np.float32) / 255.0, pad, mode="reflect")
    p = model.predict(x[None, ..., None], verbose=0)[0, ..., 0]
    return p[tuple(slice(0, s) for s in x8.shape)]


def scores(p: np.ndarray, truth: np.ndarray, voxel_size) -> dict:
    """Voxel scores at threshold 0.5, the best thresholds, AUCs and boundary-tolerant
    scores (tolerance 1 voxel, 3x3x3), from :mod:`chunkseg.ops.metrics`."""
    from chunkseg.ops import metrics as m

    thresholds = np.round(np.arange(0.05, 1.0, 0.05), 2)
    spec = m.EvalSpec.make(thresholds=thresholds, dtype=np.float32, voxel_size=voxel_size,
                           tolerance=1)
    stats = m.volume_statistics(p.astype(np.float32), truth.astype(np.uint8), spec)
    counts = m.confusion_at(stats["hist"], spec.grid, thresholds)
    s = m.scores_from_counts(**counts)
    b = m.boundary_scores(stats, spec.grid, thresholds)
    k = int(np.flatnonzero(thresholds == 0.5)[0])
    r4 = lambda v: None if v is None or np.isnan(v) else round(float(v), 4)  # noqa: E731
    out = {"voxels": int(truth.size), "membrane_fraction": r4(truth.mean()),
           **{name: r4(s[name][k]) for name in ("accuracy", "precision", "recall", "iou",
                                                "dice")},
           "best": {key: {"threshold": v["threshold"], "value": r4(v["value"])}
                    for key, v in m.best_thresholds(thresholds, s).items()},
           **{key: r4(v) for key, v in m.auc_scores(stats["hist"]).items()},
           "tolerant_1voxel": {name: r4(b[name][k]) for name in ("precision", "recall", "f1")}}
    return out


def evaluate(model_path: Path, val_pairs: list) -> dict:
    from chunkseg.io.store import open_volume
    from chunkseg.model import load_model, pooling_factor, UNetConfig
    from chunkseg.ops.normalize import scale_to_uint8

    model, meta = load_model(model_path)
    factor = pooling_factor(UNetConfig.from_dict(meta["config"]))
    result: dict = {"synthetic_validation": []}
    for raw, mask, params in val_pairs:
        vol = open_volume(raw)
        x8 = np.asarray(vol.data[0])
        truth = np.asarray(open_volume(mask).data[0])
        s = scores(predict_volume(model, x8, factor), truth, vol.voxel_size)
        result["synthetic_validation"].append({"volume": raw, "params": params, **s})
    raw_tif, lab_tif = REAL / "ovule_raw.tif", REAL / "ovule_labels.tif"
    if raw_tif.exists() and lab_tif.exists():
        import tifffile

        from chunkseg.ops.boundaries import membrane_mask

        raw = tifffile.imread(raw_tif)
        labels = tifffile.imread(lab_tif)
        low, high = np.percentile(raw, PERCENTILES)  # what predict computes without a range
        t0 = time.perf_counter()
        p = predict_volume(model, scale_to_uint8(raw, low, high), factor)
        seconds = time.perf_counter() - t0
        truth = membrane_mask(labels)
        result["real_ovule"] = {
            "raw": str(raw_tif.relative_to(ROOT)), "shape": list(raw.shape),
            "range": [float(low), float(high)],
            "truth": "chunkseg.ops.boundaries.membrane_mask(labels) (thick, width 1, 0 ignored)",
            **scores(p, truth, OVULE_VOXEL_SIZE),
            "predict_seconds": round(seconds, 2),
        }
        np.save(model_path.with_name(model_path.stem + "_ovule_probability.npy"),
                p.astype(np.float16))
    else:
        result["real_ovule"] = f"skipped: {raw_tif} not found"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="out/default_model", help="data + training folder")
    parser.add_argument("--out", default="out/default_model/default.keras")
    parser.add_argument("--epochs", type=int, default=TRAIN["epochs"])
    parser.add_argument("--steps", type=int, default=TRAIN["steps"])
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = make_data(work, 10)
    train_pairs, val_pairs = pairs[:8], pairs[8:]
    print(f"data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.evaluate_only:
        from chunkseg.pipeline.train import run_train

        train = {**TRAIN, "epochs": args.epochs, "steps": args.steps}
        run_train([p[0] for p in train_pairs], [p[1] for p in train_pairs], out=out,
                  val_raw=[p[0] for p in val_pairs], val_mask=[p[1] for p in val_pairs],
                  config={"model": MODEL, "train": train}, overwrite=True, verbose=2)
    result = evaluate(out, val_pairs)
    result["train_volumes"] = [{"volume": r, "params": p} for r, _, p in train_pairs]
    (out.with_name(out.stem + "_evaluation.json")).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "train_volumes"}, indent=2))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
