"""float32 against mixed bfloat16 on this CPU: training steps/s and inference voxels/s.

The same U-Net (the packaged default's architecture) is built twice, once under the
``float32`` dtype policy and once under ``mixed_bfloat16`` (bfloat16 compute, float32
weights), with the same weights.  Calls alternate one by one between the two (the order
flipping each round), so that a change of machine load hits both members of a pair; the
table reports the median time per call and the median of the paired ratios.  The
bfloat16 probability is also compared with the float32 one (max |difference|).

Usage::

    TF_NUM_INTRAOP_THREADS=2 python benchmarks/mixed_precision.py [--rounds 3] [--quick]

Writes ``benchmarks/results/mixed_precision.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402


def _build(policy: str, config, weights=None):
    import keras

    from chunkseg.model.losses import membrane_loss
    from chunkseg.model.unet import build_unet

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        model = build_unet(config)
    finally:
        keras.config.set_dtype_policy(previous)
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=membrane_loss())
    return model


def _paired(a, b, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per call of ``a`` and ``b``, called alternately (after one warm-up each)."""
    a(), b()
    ta, tb = [], []
    for i in range(rounds):
        for fn, out in ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return ta, tb


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=12, help="call pairs per measure")
    p.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "mixed_precision"))
    args = p.parse_args(argv)
    from chunkseg.model.io import read_metadata
    from chunkseg.model.unet import UNetConfig

    config = UNetConfig.from_dict(read_metadata("default")["config"])
    tile = (16, 64, 64) if args.quick else (32, 128, 128)
    crop, batch = ((16, 32, 32), 2) if args.quick else ((32, 64, 64), 2)
    rng = np.random.default_rng(0)
    x_inf = rng.random((1, *tile, 1), dtype=np.float32)
    x_tr = rng.random((batch, *crop, 1), dtype=np.float32)
    y_tr = (rng.random(x_tr.shape) < 0.2).astype(np.float32)
    f32 = _build("float32", config)
    bf16 = _build("mixed_bfloat16", config, f32.get_weights())
    p32 = np.asarray(f32.predict_on_batch(x_inf), np.float32)
    p16 = np.asarray(bf16.predict_on_batch(x_inf), np.float32)
    loads = [os.getloadavg()[0]]
    times: dict[str, list[float]] = {}
    times["inf_f32"], times["inf_bf16"] = _paired(lambda: f32.predict_on_batch(x_inf),
                                                  lambda: bf16.predict_on_batch(x_inf), args.rounds)
    loads.append(os.getloadavg()[0])
    times["tr_f32"], times["tr_bf16"] = _paired(lambda: f32.train_on_batch(x_tr, y_tr),
                                                lambda: bf16.train_on_batch(x_tr, y_tr), args.rounds)
    loads.append(os.getloadavg()[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median(a / b for a, b in zip(times[f"{k}_f32"], times[f"{k}_bf16"]))
             for k in ("inf", "tr")}
    inf_vox, tr_vox = math.prod(tile), batch * math.prod(crop)
    result = {
        "model": config.to_dict(), "tile": list(tile), "crop": list(crop), "batch": batch,
        "rounds": args.rounds, "seconds": times, "load_1min": loads,
        "tf_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "inference_voxels_per_s": {"float32": inf_vox / med["inf_f32"],
                                   "mixed_bfloat16": inf_vox / med["inf_bf16"]},
        "training_voxels_per_s": {"float32": tr_vox / med["tr_f32"],
                                  "mixed_bfloat16": tr_vox / med["tr_bf16"]},
        "inference_speedup": ratio["inf"],
        "training_speedup": ratio["tr"],
        "inference_speedup_best_of": min(times["inf_f32"]) / min(times["inf_bf16"]),
        "training_speedup_best_of": min(times["tr_f32"]) / min(times["tr_bf16"]),
        "bf16_max_abs_prob_diff": float(np.abs(p32 - p16).max()),
        "hardware": hardware(),
        "cpu_flags": sorted({f for f in open("/proc/cpuinfo").read().split()
                             if f.startswith(("avx512_bf16", "amx"))}),
    }
    rows = [("measure", "float32", "mixed_bfloat16", "bf16 / f32 speed"), ("---",) * 4,
            (f"inference, tile {tile}", f"{result['inference_voxels_per_s']['float32']:.0f} vox/s",
             f"{result['inference_voxels_per_s']['mixed_bfloat16']:.0f} vox/s",
             f"{result['inference_speedup']:.2f}x (best-of: "
             f"{result['inference_speedup_best_of']:.2f}x)"),
            (f"training step, batch {batch} x {crop}",
             f"{result['training_voxels_per_s']['float32']:.0f} vox/s",
             f"{result['training_voxels_per_s']['mixed_bfloat16']:.0f} vox/s",
             f"{result['training_speedup']:.2f}x (best-of: "
             f"{result['training_speedup_best_of']:.2f}x)")]
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    note = (f"\nmax |p_bf16 - p_f32| = {result['bf16_max_abs_prob_diff']:.3g}; CPU flags "
            f"{result['cpu_flags']}; 1-min load {[round(v, 1) for v in loads]} on "
            f"{os.cpu_count()} cores (a shared machine); speed: median time per call; ratio: "
            f"median of {args.rounds} paired calls (best-of: fastest call of each, the "
            "least loaded moment).\n")
    print(table + note)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(table + note)
    return result


if __name__ == "__main__":
    main()
