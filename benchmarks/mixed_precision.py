"""float32 against mixed precision on this CPU: training steps, inference voxels/s, loss.

The same U-Net (the default model's architecture: ``examples/train_default_model.py``
MODEL) is built once per Keras dtype policy (``float32``, ``mixed_bfloat16``,
``mixed_float16``: low-precision compute, float32 weights), all with the same weights.
Calls rotate one by one between the policies (the order shifting each round), so that a
change of machine load hits every policy alike; the table reports the median time per
call (wall and process CPU: on a loaded machine the CPU time is the fairer measure) and
the median of the paired float32 / policy ratios.  Numerics: the probability of each
policy against float32 (max |difference|), and the training loss after ``--loss-steps``
identical steps (same start weights, same synthetic membrane crops, same order).  A
policy that cannot run here is reported with its error.

Usage (one thread, as ``chunkseg train`` runs on a shared machine)::

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_ENABLE_ONEDNN_OPTS=1 \\
        python benchmarks/mixed_precision.py [--rounds 8] [--out results/NAME]

Writes ``benchmarks/results/mixed_precision.{json,md}`` (or ``--out``).
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

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def _build(policy: str, config, weights=None):
    import keras

    from chunkseg.model.losses import membrane_loss
    from chunkseg.model.unet import build_unet

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        model = build_unet(config)
        if weights is not None:
            model.set_weights(weights)
        model.compile(optimizer=keras.optimizers.Adam(3e-4), loss=membrane_loss(2.0))
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def _rotated(calls: dict, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds per call of each of ``calls``, called in rotation (after one
    warm-up each)."""
    for fn in calls.values():
        fn()
    names = list(calls)
    out = {n: {"wall": [], "cpu": []} for n in names}
    for i in range(rounds):
        for n in names[i % len(names):] + names[:i % len(names)]:
            w0, c0 = time.perf_counter(), time.process_time()
            calls[n]()
            out[n]["cpu"].append(time.process_time() - c0)
            out[n]["wall"].append(time.perf_counter() - w0)
    return out


def _crops(crop, batch: int, steps: int, seed: int = 0):
    """``steps`` (x, y) batches of synthetic membrane crops in [0, 1] and {0, 1}."""
    from chunkseg.synth import synth_volume

    v = synth_volume((2 * crop[0], 4 * crop[1], 4 * crop[2]), seed=seed)
    raw = v.raw.astype(np.float32)
    raw = (raw - raw.min()) / max(float(np.ptp(raw)), 1.0)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(batch):
            o = [int(rng.integers(0, s - c + 1)) for s, c in zip(raw.shape, crop)]
            sl = tuple(slice(a, a + c) for a, c in zip(o, crop))
            xs.append(raw[sl]), ys.append(v.mask[sl].astype(np.float32))
        out.append((np.stack(xs)[..., None], np.stack(ys)[..., None]))
    return out


def _losses(config, weights, policies, crop, batch: int, steps: int) -> dict[str, list[float]]:
    """Training loss per step of each policy from the same weights on the same batches."""
    data = _crops(crop, batch, steps)
    out = {}
    for policy in policies:
        model = _build(policy, config, weights)
        out[policy] = [float(model.train_on_batch(x, y)) for x, y in data]
    return out


def _try_build(policies, config, weights, x_inf, x_tr, y_tr):
    """Models of the policies that build, predict and train here; errors of the others."""
    models, errors = {}, {}
    for policy in policies:
        try:
            m = _build(policy, config, weights)
            m.predict_on_batch(x_inf[:, :16, :32, :32])
            m.train_on_batch(x_tr, y_tr)
            models[policy] = _build(policy, config, weights)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            errors[policy] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return models, errors


def _summarise(times, base: str, voxels: float) -> dict[str, dict[str, float]]:
    out = {}
    for name, t in times.items():
        out[name] = {
            "wall_s": statistics.median(t["wall"]), "cpu_s": statistics.median(t["cpu"]),
            "voxels_per_s": voxels / statistics.median(t["wall"]),
            "voxels_per_cpu_s": voxels / statistics.median(t["cpu"]),
            "speed_vs_float32_wall": statistics.median(
                a / b for a, b in zip(times[base]["wall"], t["wall"])),
            "speed_vs_float32_cpu": statistics.median(
                a / b for a, b in zip(times[base]["cpu"], t["cpu"])),
        }
    return out


def _table(result: dict) -> str:
    rows = [("measure", "policy", "median wall s", "median CPU s", "voxels / CPU s",
             "speed vs float32 (CPU; wall)", "loss after steps")]
    for kind, label in (("inference", f"inference, tile {tuple(result['tile'])}"),
                        ("training", f"training step, batch {result['batch']} x "
                                     f"{tuple(result['crop'])}")):
        for policy, s in result[kind].items():
            loss = result["losses"].get(policy, [math.nan])
            rows.append((label, policy, f"{s['wall_s']:.3f}", f"{s['cpu_s']:.3f}",
                         f"{s['voxels_per_cpu_s'] / 1e3:.0f} k",
                         f"{s['speed_vs_float32_cpu']:.3g}x; {s['speed_vs_float32_wall']:.3g}x",
                         f"{loss[0]:.4f} -> {loss[-1]:.4f}" if kind == "training" else ""))
    for policy, err in result["errors"].items():
        rows.append(("-", policy, "does not run", "", "", "", err))
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + " --- |" * len(rows[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8, help="calls per policy and measure")
    p.add_argument("--tile", type=int, nargs=3, default=[32, 128, 128], help="inference tile")
    p.add_argument("--crop", type=int, nargs=3, default=[24, 96, 96], help="training crop")
    p.add_argument("--batch", type=int, default=1, help="training batch")
    p.add_argument("--loss-steps", type=int, default=20, help="identical steps per policy")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "mixed_precision"))
    args = p.parse_args(argv)
    import keras

    from chunkseg.model.unet import UNetConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from train_default_model import MODEL

    config = UNetConfig.from_dict(MODEL)
    keras.utils.set_random_seed(0)
    weights = _build("float32", config).get_weights()
    rng = np.random.default_rng(0)
    x_inf = rng.random((1, *args.tile, 1), dtype=np.float32)
    (x_tr, y_tr), = _crops(args.crop, args.batch, 1, seed=1)
    models, errors = _try_build(args.policies, config, weights, x_inf, x_tr, y_tr)
    base = "float32"
    probs = {k: np.asarray(m.predict_on_batch(x_inf), np.float32) for k, m in models.items()}
    loads = [os.getloadavg()]
    inf = _rotated({k: (lambda m=m: m.predict_on_batch(x_inf)) for k, m in models.items()},
                   args.rounds)
    loads.append(os.getloadavg())
    tr = _rotated({k: (lambda m=m: m.train_on_batch(x_tr, y_tr)) for k, m in models.items()},
                  args.rounds)
    loads.append(os.getloadavg())
    losses = _losses(config, weights, list(models), args.crop, args.batch, args.loss_steps)
    loads.append(os.getloadavg())
    result = {
        "model": config.to_dict(), "tile": args.tile, "crop": args.crop, "batch": args.batch,
        "rounds": args.rounds, "loss_steps": args.loss_steps,
        "seconds": {"inference": inf, "training": tr},
        "inference": _summarise(inf, base, math.prod(args.tile)),
        "training": _summarise(tr, base, args.batch * math.prod(args.crop)),
        "losses": losses, "errors": errors,
        "max_abs_prob_diff_vs_float32": {k: float(np.abs(v - probs[base]).max())
                                         for k, v in probs.items()},
        "load_avg_1_5_15": loads, "tf_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "hardware": hardware(),
        "cpu_flags": sorted({f for f in open("/proc/cpuinfo").read().split()
                             if f.startswith(("avx512", "amx", "avx2", "fma", "f16c"))}),
    }
    note = (f"\nmax |p - p_float32| (tile above, same weights): "
            f"{ {k: round(v, 6) for k, v in result['max_abs_prob_diff_vs_float32'].items()} }; "
            f"loss: membrane loss of {args.loss_steps} identical Adam steps (lr 3e-4) on "
            f"synthetic crops, first -> last; CPU flags {result['cpu_flags']}; "
            f"TF_NUM_INTRAOP_THREADS={result['tf_threads']}, TF_ENABLE_ONEDNN_OPTS="
            f"{result['onednn']}; load average (1, 5, 15 min) before / between / after: "
            f"{[[round(v, 2) for v in load] for load in loads]} on {os.cpu_count()} cores (a "
            f"shared machine); medians of {args.rounds} calls per policy in rotation; speed "
            "ratios: median of the per-round float32 / policy time ratios.\n")
    text = _table(result) + note
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(text)
    return result


if __name__ == "__main__":
    main()
