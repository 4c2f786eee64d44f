"""Cost of the U-Net sizes of the model card's size table: bare voxels/s and FLOPs per voxel.

The shipped default model's architecture (its config: depth 3, pools (1, 2, 2), (2, 2, 2))
is built with each base-filter count and called as ``chunkseg predict`` calls it (``ModelSpec``:
BatchNorm folded into the convolutions, ``predict_on_batch``) on the same in-memory tile.
Calls rotate one by one between the sizes (the order shifting each round), so a change of
machine load hits every size alike.  The table reports, per size, the median wall and
process-CPU time per call, voxels per wall second and per CPU second, and the median of
the paired base-8 / size CPU ratios.  Weights are untrained: the speed of a network does
not depend on its weights.

Usage::

    python benchmarks/model_sizes.py [--rounds 5] [--tile 64 256 256] [--out results/NAME]

Writes ``benchmarks/results/model_sizes.{json,md}`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware, write_results  # noqa: E402

SIZES = (4, 8, 16)
REFERENCE = 8


def build(work: Path, base: int) -> tuple[str, float]:
    """Save an untrained model of the default model's config with ``base`` filters;
    (path, FLOPs/voxel)."""
    import dataclasses

    from chunkseg.model import build_unet, save_model
    from chunkseg.model.info import model_info

    cfg = dataclasses.replace(model_info("default").config, base_filters=base)
    path = save_model(build_unet(cfg), work / f"base{base}.keras",
                      metadata={"config": cfg.to_dict()})
    return str(path), model_info(str(path)).flops_per_voxel


def measure(paths: dict[int, str], tile: tuple[int, int, int], rounds: int
            ) -> dict[int, list[tuple[float, float]]]:
    """(wall s, CPU s) of one call per size per round, calls rotated between sizes."""
    from chunkseg.engine.predict import ModelSpec

    specs = {b: ModelSpec(p) for b, p in paths.items()}
    x = np.random.default_rng(0).random((1, *tile, 1), dtype=np.float32)
    for spec in specs.values():
        spec(x)  # load, fold, trace once outside the timings
    times: dict[int, list[tuple[float, float]]] = {b: [] for b in specs}
    order = list(specs)
    for r in range(rounds):
        for b in order[r % len(order):] + order[:r % len(order)]:
            w, c = time.perf_counter(), time.process_time()
            specs[b](x)
            times[b].append((time.perf_counter() - w, time.process_time() - c))
    return times


def report(times, flops, tile, rounds) -> tuple[str, dict]:
    """Markdown table and JSON payload of :func:`measure`'s times."""
    n = math.prod(tile)
    ref = [c for _, c in times[REFERENCE]]
    rows, payload = [], {}
    for b, ts in times.items():
        wall = statistics.median(w for w, _ in ts)
        cpu = statistics.median(c for _, c in ts)
        ratio = statistics.median(r / c for (_, c), r in zip(ts, ref))
        payload[b] = {"kflop_per_voxel": flops[b] / 1e3, "wall_s": wall, "cpu_s": cpu,
                      "voxels_per_s": n / wall, "voxels_per_cpu_s": n / cpu,
                      "speed_vs_base8_cpu": ratio, "calls": ts}
        rows.append(f"| {b} | {flops[b] / 1e3:.1f} | {n / wall / 1e6:.2f} | "
                    f"{n / cpu / 1e6:.2f} | {ratio:.2f} |")
    md = (f"Tile {' × '.join(map(str, tile))} (batch 1), {rounds} rounds, calls rotated; "
          "untrained weights, BatchNorm folded, `predict_on_batch`.\n\n"
          "| depth 3, base filters | kFLOP per voxel | M voxels per wall s | "
          "M voxels per CPU s | speed relative to base 8 (paired CPU) |\n"
          "| --- | --- | --- | --- | --- |\n" + "\n".join(rows))
    return md, payload


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tile", type=int, nargs=3, default=(64, 256, 256))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_sizes"))
    args = ap.parse_args(argv)
    from chunkseg.engine.backend import configure_backend
    from chunkseg.engine.cluster import cpu_cores

    configure_backend(cpu_cores())
    sizes = sorted(set(args.sizes) | {REFERENCE})
    with tempfile.TemporaryDirectory() as work:
        built = {b: build(Path(work), b) for b in sizes}
        times = measure({b: p for b, (p, _) in built.items()}, tuple(args.tile), args.rounds)
    md, payload = report(times, {b: f for b, (_, f) in built.items()}, tuple(args.tile),
                         args.rounds)
    write_results(args.out, md, {"tile": args.tile, "rounds": args.rounds, "sizes": payload,
                                 "hardware": hardware()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
