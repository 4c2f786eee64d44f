"""float32 against mixed bfloat16 on this CPU: training steps/s and inference voxels/s.

The same U-Net (the packaged default's architecture) is built twice, once under the
``float32`` dtype policy and once under ``mixed_bfloat16`` (bfloat16 compute, float32
weights), with the same weights.  Rounds alternate between the two so that a change of
machine load hits both; the table reports the median of the rounds and the ratio.  The
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


def _timed(fn, n: int) -> float:
    fn()  # warm-up (graph tracing)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
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
    n_inf, n_tr = (2, 3) if args.quick else (3, 5)
    times: dict[str, list[float]] = {k: [] for k in ("inf_f32", "inf_bf16", "tr_f32", "tr_bf16")}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        times["inf_f32"].append(_timed(lambda: f32.predict_on_batch(x_inf), n_inf))
        times["inf_bf16"].append(_timed(lambda: bf16.predict_on_batch(x_inf), n_inf))
        times["tr_f32"].append(_timed(lambda: f32.train_on_batch(x_tr, y_tr), n_tr))
        times["tr_bf16"].append(_timed(lambda: bf16.train_on_batch(x_tr, y_tr), n_tr))
    med = {k: statistics.median(v) for k, v in times.items()}
    inf_vox, tr_vox = math.prod(tile), batch * math.prod(crop)
    result = {
        "model": config.to_dict(), "tile": list(tile), "crop": list(crop), "batch": batch,
        "rounds": args.rounds, "seconds": times, "load_1min": loads,
        "tf_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "inference_voxels_per_s": {"float32": inf_vox / med["inf_f32"],
                                   "mixed_bfloat16": inf_vox / med["inf_bf16"]},
        "training_voxels_per_s": {"float32": tr_vox / med["tr_f32"],
                                  "mixed_bfloat16": tr_vox / med["tr_bf16"]},
        "inference_speedup": med["inf_f32"] / med["inf_bf16"],
        "training_speedup": med["tr_f32"] / med["tr_bf16"],
        "bf16_max_abs_prob_diff": float(np.abs(p32 - p16).max()),
        "hardware": hardware(),
        "cpu_flags": sorted({f for f in open("/proc/cpuinfo").read().split()
                             if f.startswith(("avx512_bf16", "amx"))}),
    }
    rows = [("measure", "float32", "mixed_bfloat16", "bf16 / f32 speed"), ("---",) * 4,
            (f"inference, tile {tile}", f"{result['inference_voxels_per_s']['float32']:.0f} vox/s",
             f"{result['inference_voxels_per_s']['mixed_bfloat16']:.0f} vox/s",
             f"{result['inference_speedup']:.2f}x"),
            (f"training step, batch {batch} x {crop}",
             f"{result['training_voxels_per_s']['float32']:.0f} vox/s",
             f"{result['training_voxels_per_s']['mixed_bfloat16']:.0f} vox/s",
             f"{result['training_speedup']:.2f}x")]
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    note = (f"\nmax |p_bf16 - p_f32| = {result['bf16_max_abs_prob_diff']:.3g}; CPU flags "
            f"{result['cpu_flags']}; 1-min load {loads} (shared machine); medians of "
            f"{args.rounds} alternating rounds.\n")
    print(table + note)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(table + note)
    return result


if __name__ == "__main__":
    main()
