"""Where ``chunkseg predict`` spends its CPU: network voxels per output voxel and the
stages around the network, for the default plan and alternatives, in one run.

Usage::

    TF_NUM_INTRAOP_THREADS=1 python benchmarks/predict_cost.py [--shape 128 512 512]
        [--label after] [--plans default,...] [--work DIR]
        [--out benchmarks/results/predict_cost]

Sections
    geometry
        Exact network voxels per output voxel (:func:`chunkseg.engine.predict.tile_stats`
        of the plan :func:`chunkseg.engine.plan.plan_tiles` makes) on the full
        251 x 1024 x 1024 time point and on ``--shape``, for every plan.
    stages
        ``run_predict`` (default model, every default but the plan's block / tile) on a
        ``chunkseg synth`` raw volume of ``--shape``, under cProfile in dask's synchronous
        scheduler with one TensorFlow thread: CPU seconds of the process per stage
        (intensity range, read with halo, network, tiling, output dtype, shard writes,
        pyramid), network CPU seconds per network voxel.  Plans alternate, ``--rounds``
        times each; the fastest round of each is kept.
    read
        Every block's haloed region of the default plan read from the ``--shape`` raw
        store (``--full``: mirrored to 251 x 1024 x 1024) and scaled to uint8, as predict
        reads it (the region scaled as read) and as it read before (the array scaled chunk
        by chunk, then sliced): CPU seconds, alternated ``--rounds`` times.
    network
        The bare network (the folded default model, as ``predict`` runs it) on the tile each
        plan picks for the full time point, in memory: CPU seconds per million input voxels,
        calls rotated between the tiles ``--rounds`` times after one warm-up call each.
Plans: ``default`` (what ``plan_tiles`` picks with no block or tile given) and
``BZxBYxBX[/TZxTYxTX]`` (a block and optionally a tile).  Results of each ``--label``
are kept side by side in ``<out>.json`` / ``<out>.md``; the load average is recorded
before and after every run (only ratios within one run mean much on a shared machine).
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import math
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import dask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segment_speed import FULL, _cum, _load, _volumes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: (stage, function, caller or None): cumulative CPU seconds of the function
STAGES = [
    ("intensity range (histogram pass)", "input_range", None),
    ("predict + write (all blocks)", "write_volume", None),
    ("  read raw + halo (decompress, scale to uint8)", "mirror_region", None),
    ("    of which scale to uint8", "scale_to_uint8", None),
    ("  network (predict_on_batch)", "run_model", None),
    ("  model load (TensorFlow import, load, fold; once)", "get_model", None),
    ("  tiling (pad, weights, stitch)", "predict_tiled", None),
    ("  output dtype", "to_output_dtype", None),
    ("  write shards (compress)", "_write_block", None),
    ("pyramid", "finish_image", None),
]


def _parse_plan(text: str) -> dict:
    if text == "default":
        return {}
    parts = [[int(v) for v in p.split("x")] for p in text.split("/")]
    return {"block": parts[0], **({"tile": parts[1]} if len(parts) > 1 else {})}


def geometry(plans: list[str], shapes: list[tuple[int, ...]]) -> dict:
    """Network voxels per output voxel of each plan on each shape (exact)."""
    from chunkseg.engine.cluster import memory_budget
    from chunkseg.engine.plan import plan_tiles, resolve_halo
    from chunkseg.model.info import model_info

    info = model_info("default")
    halo = resolve_halo(10, info.receptive)
    out = {}
    for name in plans:
        for shape in shapes:
            p = plan_tiles(shape, info, halo=halo, budget_bytes=memory_budget(None),
                           **_parse_plan(name))
            out[f"{name} @ {'x'.join(map(str, shape))}"] = {
                "block": list(p.block), "tile": list(p.tile), "batch": p.batch, **p.stats,
                "redundancy": p.stats["tile_voxels"] / math.prod(shape)}
    return out


def _profiled(raw: Path, prob: Path, plan: dict) -> dict:
    from chunkseg.pipeline.predict import run_predict

    load0 = _load()
    prof = cProfile.Profile(time.process_time)
    t0, c0 = time.perf_counter(), time.process_time()
    with dask.config.set(scheduler="synchronous"):
        prof.enable()
        s = run_predict(raw, out=prob, overwrite=True, progress=False, **plan)
        prof.disable()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = pstats.Stats(prof)
    stages = {name: _cum(st, fn, caller) for name, fn, caller in STAGES}
    stages["  tiling (pad, weights, stitch)"] -= (stages["  network (predict_on_batch)"]
                                                  + stages["  model load (TensorFlow import, "
                                                           "load, fold; once)"])
    return {"wall_s": wall, "cpu_s": cpu, "stages_cpu_s": stages, "block": s["block"],
            "tile": s["tile"], "tile_voxels": s["tile_voxels"], "redundancy": s["redundancy"],
            "network_cpu_s_per_mvoxel": 1e6 * stages["  network (predict_on_batch)"]
            / s["tile_voxels"], "load_before": load0, "load_after": _load()}


def stages(raw: Path, work: Path, plans: list[str], rounds: int) -> dict:
    """Fastest profiled round of each plan (plans alternate)."""
    runs: dict[str, list] = {p: [] for p in plans}
    for i in range(rounds):
        for name in plans if i % 2 == 0 else plans[::-1]:
            runs[name].append(_profiled(raw, work / "prob.zarr", _parse_plan(name)))
    out = {}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["cpu_s"])
        best["rounds_cpu_s"] = [r["cpu_s"] for r in rs]
        out[name] = best
    return out


def network(tiles: dict[str, list[int]], rounds: int) -> dict:
    """Median CPU seconds per million voxels of one network call on each tile."""
    import numpy as np

    from chunkseg.engine.predict import ModelSpec
    from chunkseg.model.info import model_info

    spec = ModelSpec(model_info("default").path)
    rng = np.random.default_rng(0)
    xs = {k: rng.random((1, *t, 1), dtype=np.float32) for k, t in tiles.items()}
    for x in xs.values():
        spec(x)
    cpu: dict[str, list[float]] = {k: [] for k in xs}
    names = list(xs)
    for i in range(rounds):
        for k in names[i % len(names):] + names[:i % len(names)]:
            c0 = time.process_time()
            spec(xs[k])
            cpu[k].append(time.process_time() - c0)
    return {k: {"tile": list(tiles[k]), "cpu_s": v, "cpu_s_per_mvoxel": sorted(v)[len(v) // 2]
                / (math.prod(tiles[k]) / 1e6), "load": _load()} for k, v in cpu.items()}


def read(raw: Path, rounds: int) -> dict:
    """CPU seconds to read and scale every haloed block region, both ways."""
    from chunkseg.engine.geometry import Block
    from chunkseg.engine.plan import DEFAULT_BLOCK
    from chunkseg.engine.predict import _ArrayReader, mirror_region, scale_array
    from chunkseg.io.store import open_volume

    vol = open_volume(raw)
    shape, halo, rng = vol.shape[1:], (10, 10, 10), (100.0, 3000.0)
    readers = {"region scaled as read": _ArrayReader(vol.data, rng),
               "array scaled, then sliced (before)": _ArrayReader(scale_array(vol.data, rng))}
    grid = [range(-(-n // b)) for n, b in zip(shape, DEFAULT_BLOCK)]
    cpu: dict[str, list[float]] = {k: [] for k in readers}
    for i in range(rounds):
        for name in list(readers)[:: 1 if i % 2 == 0 else -1]:
            c0 = time.process_time()
            for idx in itertools.product(*grid):
                blk = Block.at(idx, shape=shape, block=DEFAULT_BLOCK, halo=halo)
                stop = [o.stop + h for o, h in zip(blk.owned, halo)]
                mirror_region(lambda box, r=readers[name]: r((slice(0, 1), *box)), shape,
                              blk.origin, stop)
            cpu[name].append(time.process_time() - c0)
    return {"shape": list(shape), "cpu_s": cpu, "load": _load()}


def _markdown(label: str, result: dict) -> str:
    lines = [f"### {label} ({result['commit']}; shape {result['shape']}; uptime before: "
             f"{result['uptime_before']})", "",
             *([result["note"], ""] if result.get("note") else []),
             "| plan @ shape | block | tile | tiles | network voxels / output voxel |",
             "|---|---|---|---|---|"]
    for k, g in result["geometry"].items():
        lines.append(f"| {k} | {g['block']} | {g['tile']} | {g['tiles']} | "
                     f"{g['redundancy']:.4f} |")
    if "read" in result:
        r = result["read"]
        lines.append(f"\nRead + scale every haloed 128 x 256 x 256 block region of a "
                     f"{r['shape']} uint16 store (load {r['load']}): " + "; ".join(
                         f"{k} {min(v):.2f} CPU s (rounds {[round(x, 2) for x in v]})"
                         for k, v in r["cpu_s"].items()))
    for k, n in result.get("network", {}).items():
        lines.append(f"\nBare network, tile {n['tile']} ({k}): {n['cpu_s_per_mvoxel']:.3f} CPU s "
                     f"per M voxels (median of {len(n['cpu_s'])}; load {n['load']})")
    st = result.get("stages", {})
    if st:
        names = list(st)
        lines += ["", "CPU seconds (cProfile, synchronous scheduler, TF_NUM_INTRAOP_THREADS="
                  f"{result['tf_threads']}; fastest of {result['rounds']} alternated rounds):", "",
                  "| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for stage, *_ in STAGES:
            lines.append(f"| {stage} | " + " | ".join(
                f"{st[n]['stages_cpu_s'][stage]:.2f}" if stage in st[n]['stages_cpu_s'] else "-"
                for n in names) + " |")
        for key, fmt in (("cpu_s", "{:.2f}"), ("wall_s", "{:.2f}"),
                         ("network_cpu_s_per_mvoxel", "{:.3f}"), ("redundancy", "{:.3f}")):
            lines.append(f"| **{key}** | " + " | ".join(fmt.format(st[n][key]) for n in names)
                         + " |")
        lines.append("| load before → after | " + " | ".join(
            f"{st[n]['load_before'][0]} → {st[n]['load_after'][0]}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 512, 512])
    ap.add_argument("--plans", default="default")
    ap.add_argument("--sections", default="geometry,stages")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="read section: mirror --shape to "
                    "251 x 1024 x 1024")
    ap.add_argument("--label", default="run")
    ap.add_argument("--work", default="/tmp/chunkseg_predict_cost")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "predict_cost"))
    args = ap.parse_args(argv)
    plans, sections = args.plans.split(","), args.sections.split(",")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "shape": args.shape, "rounds": args.rounds,
              "uptime_before": subprocess.run(["uptime"], capture_output=True,
                                              text=True).stdout.strip(),
              "tf_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
              "geometry": geometry(plans, [FULL, tuple(args.shape)])}
    if "network" in sections:
        tiles = {name: result["geometry"][f"{name} @ {'x'.join(map(str, FULL))}"]["tile"]
                 for name in plans}
        result["network"] = network(tiles, args.rounds)
    if "read" in sections:
        result["read"] = read(_volumes(work, args.shape, args.full)[0], args.rounds)
    if "stages" in sections:
        raw, _ = _volumes(work, args.shape, False)
        result["stages"] = stages(raw, work, plans, args.rounds)
    out = Path(args.out)
    saved = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
        ".json").is_file() else {}
    saved[args.label] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(saved, indent=2))
    out.with_suffix(".md").write_text("\n".join(_markdown(k, v) for k, v in saved.items()))
    print(_markdown(args.label, result))
    return result


if __name__ == "__main__":
    main()
