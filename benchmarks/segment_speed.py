"""Segment against predict on the same volume, with every default: the time ratio, the
share of each stage of ``segment``, and peak memory at 1x and 4x volume.

Usage::

    python benchmarks/segment_speed.py [--shape 64 512 512] [--label after]
        [--sections ratio,stages,memory] [--full] [--work DIR]
        [--out benchmarks/results/segment_speed]

Volume
    A ``chunkseg synth`` raw volume of ``--shape`` (default 64 x 512 x 512 at the
    default 0.4 x 0.1 x 0.1 µm); ``--full`` mirrors it to 251 x 1024 x 1024 (a full
    time point of the paper; mirrored, so the cells stay continuous).
Sections
    ratio
        ``run_predict`` (default model, every default) then ``run_segment`` (every
        default: ``agglo``) and ``run_segment --method flood`` on its probability, one
        after the other in this process, ``--rounds`` times: per step the fastest
        round's wall seconds, voxels/s, CPU seconds of the process (all its threads),
        peak RSS above the start, and the segment : predict ratios of both; per round
        the machine's matmul GFLOP/s just before it (its speed varies with other
        tenants' load) and predict + segment against the original ACME's rate.
    stages
        ``run_segment`` (default) under cProfile in dask's synchronous scheduler (CPU
        time of the process, so the load of other processes counts less): seconds and
        share of the total per phase, and inside the seed and flood tasks per step.
    memory
        ``run_segment`` (default) on the probability and on it mirrored to 2 x 2 in y
        and x (4x volume): seconds, voxels/s, peak RSS above the start.
Results of each ``--label`` (e.g. ``before`` run with ``PYTHONPATH`` on another
checkout) are kept side by side in ``<out>.json`` and ``<out>.md``; the load average
is recorded before and after every section (only ratios within one run mean much on
a shared machine).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakRSS, git_commit, labelled_runs, matmul_gflops, write_results  # noqa: E402
from sections import original_acme_seconds  # noqa: E402
from segment import _store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FULL = (251, 1024, 1024)
#: (stage, function, caller or None): cumulative seconds of the function (from that caller)
STAGES = [
    ("check probability (min/max pass)", "check_probability", None),
    ("A seeds phase (tasks + write)", "_seed_phase", None),
    ("  read probability + halo", "__call__", "_seed_task"),
    ("  capped distance", "capped_sq_distance", None),
    ("  smoothing", "gaussian_filter", "fragment_seeds"),
    ("  maxima", "maximum_filter", "fragment_seeds"),
    ("  label seeds", "label_seeds", "_seed_task"),
    ("A2 face merge", "_face_phase", None),
    ("B flood phase (tasks + write)", "_flood_phase", None),
    ("  read probability + halo", "__call__", "_flood_task"),
    ("  read seed runs", "runs", "_flood_task"),
    ("  seed ids to roots", "relabel", "_flood_task"),
    ("  flood", "flood", "_flood_task"),
    ("  fragment statistics", "block_stats", "_flood_task"),
    ("  edge tables", "block_edges", "_flood_task"),
    ("C global step (with the cell table)", "_stats_phase", None),
    ("  cell table rows", "write_rows", "_stats_phase"),
    ("D relabel + write labels", "_write_labels", None),
    ("pyramid", "finish_image", None),
]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _volumes(work: Path, shape, full: bool) -> tuple[Path, tuple[float, ...]]:
    """The raw store (made once, reused)."""
    from chunkseg.synth import synth_volume

    name = "full" if full else "x".join(map(str, shape))
    raw = work / f"raw_{name}.zarr"
    vs = (0.4, 0.1, 0.1)
    if (raw / "zarr.json").is_file():
        return raw, vs
    v = synth_volume(tuple(shape), seed=3)
    arr = v.raw
    if full:
        pad = [(0, max(0, f - s)) for f, s in zip(FULL, arr.shape)]
        arr = np.pad(arr, pad, mode="symmetric")[: FULL[0], : FULL[1], : FULL[2]]
    return _store(raw, arr, v.params.voxel_size, "raw"), tuple(v.params.voxel_size)


def _timed(fn, **kw) -> dict:
    load0 = _load()
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        s = fn(**kw)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": secs, "cpu_seconds": cpu, "peak_rss_mb": mem.delta_mb,
            "load_before": load0, "load_after": _load(), "summary": s}


def ratio_section(raw: Path, work: Path, n: int, rounds: int, methods: list[str]) -> dict:
    """``rounds`` x (predict, segment, segment --method flood); per step the fastest
    round (the least disturbed by the other processes) and its ratio to predict's."""
    from chunkseg.pipeline.predict import run_predict
    from chunkseg.pipeline.segment import run_segment

    prob = work / f"{raw.stem}.prob.zarr"
    runs: dict[str, list] = {"predict": [], **{f"segment {m}": [] for m in methods}}
    probes = []
    for _ in range(rounds):
        probes.append(matmul_gflops())
        runs["predict"].append(_timed(run_predict, in_path=raw, out=prob, overwrite=True,
                                      progress=False))
        for method in methods:
            runs[f"segment {method}"].append(_timed(
                run_segment, prob_path=prob, out=work / f"{raw.stem}.{method}.zarr",
                method=method, overwrite=True, progress=False))
    acme_s = original_acme_seconds(n)
    out = {"end to end": [
        {"matmul_gflops": g, "predict": p["seconds"], "segment": sg["seconds"],
         "total": p["seconds"] + sg["seconds"],
         "x_original_acme": acme_s / (p["seconds"] + sg["seconds"])}
        for g, p, sg in zip(probes, runs["predict"], runs[f"segment {methods[0]}"])]}
    best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    for name, r in best.items():
        s = r.pop("summary")
        r["rounds_seconds"] = [x["seconds"] for x in runs[name]]
        r["voxels_per_s"] = n / r["seconds"]
        r["ratio_to_predict"] = r["seconds"] / best["predict"]["seconds"]
        r["cpu_ratio_to_predict"] = r["cpu_seconds"] / best["predict"]["cpu_seconds"]
        if name.startswith("segment"):
            r.update(n_cells=s["n_cells"][0], halo=s["halo"], block=s["block"],
                     graph=s["graph"], phases=s["seconds"])
        out[name] = r
    return out


def _cum(st: pstats.Stats, func: str, caller: str | None) -> float:
    total = 0.0
    for (_, _, name), (_, _, _, ct, callers) in st.stats.items():
        if name != func:
            continue
        if caller is None:
            total += ct
        else:
            total += sum(v[3] for (_, _, c), v in callers.items() if c == caller)
    return total


def stages_section(prob: Path, work: Path) -> dict:
    import dask

    from chunkseg.pipeline.segment import run_segment

    load0 = _load()
    prof = cProfile.Profile(time.process_time)
    with dask.config.set(scheduler="synchronous"):
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        s = run_segment(prob, out=work / "stages.zarr", overwrite=True, progress=False)
        prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = pstats.Stats(prof)
    rows = [{"stage": name, "cpu_seconds": _cum(st, fn, caller)} for name, fn, caller in STAGES]
    for r in rows:
        r["share"] = r["cpu_seconds"] / cpu
    return {"wall_seconds": wall, "cpu_seconds": cpu, "halo": s["halo"], "block": s["block"],
            "rows": rows, "load_before": load0, "load_after": _load()}


def memory_section(prob: Path, work: Path) -> dict:
    from chunkseg.io.store import open_volume
    from chunkseg.pipeline.segment import run_segment

    vol = open_volume(prob)
    p = vol.data[0].compute()
    big = work / f"{prob.stem}.x4.zarr"
    if not (big / "zarr.json").is_file():
        _store(big, np.pad(p, [(0, 0), (0, p.shape[1]), (0, p.shape[2])], mode="symmetric"),
               vol.voxel_size, "probability")
    out = {}
    for scale, path in ((1, prob), (4, big)):
        r = _timed(run_segment, prob_path=path, out=work / f"memory{scale}.zarr",
                   overwrite=True, progress=False)
        s = r.pop("summary")
        n = int(np.prod(s["shape"]))
        out[str(scale)] = {**r, "shape": s["shape"], "voxels_per_s": n / r["seconds"],
                           "n_cells": s["n_cells"][0]}
    return out


def _md(report: dict) -> str:
    lines = []
    for label, res in report["runs"].items():
        head = f"### {label} ({res['commit']}; shape {res['shape']})"
        lines.append(head)
        if "ratio" in res:
            lines += ["", "| step | seconds (fastest round; all rounds) | voxels/s | CPU s | "
                      "peak RSS above start (MB) | time / predict | CPU / predict | "
                      "load before → after |", "|---|---|---|---|---|---|---|---|"]
            for name, r in res["ratio"].items():
                if name == "end to end":
                    continue
                rounds = ", ".join(f"{x:.1f}" for x in r.get("rounds_seconds", []))
                lines.append(f"| {name} | {r['seconds']:.1f} ({rounds}) | "
                             f"{r['voxels_per_s'] / 1e3:.0f} k | {r.get('cpu_seconds', 0):.1f} | "
                             f"{r['peak_rss_mb']:.0f} | {r['ratio_to_predict']:.2f} | "
                             f"{r.get('cpu_ratio_to_predict', float('nan')):.2f} | "
                             f"{r['load_before'][0]} → {r['load_after'][0]} |")
            if "end to end" in res["ratio"]:
                lines += ["", "| round | matmul GFLOP/s before | predict s | segment s | "
                          "end to end s | x original ACME |", "|---|---|---|---|---|---|"]
                lines += [f"| {i + 1} | {r['matmul_gflops']} | {r['predict']:.1f} | "
                          f"{r['segment']:.1f} | {r['total']:.1f} | "
                          f"{r['x_original_acme']:.1f} |"
                          for i, r in enumerate(res["ratio"]["end to end"])]
        if "stages" in res:
            s = res["stages"]
            lines += ["", f"Stages (cProfile, synchronous, CPU {s['cpu_seconds']:.1f} s, wall "
                      f"{s['wall_seconds']:.1f} s, halo {s['halo']}, load "
                      f"{s['load_before'][0]} → {s['load_after'][0]}):", "",
                      "| stage | CPU s | share |", "|---|---|---|"]
            lines += [f"| {r['stage']} | {r['cpu_seconds']:.2f} | {100 * r['share']:.1f} % |"
                      for r in s["rows"]]
        if "memory" in res:
            lines += ["", "| volume | shape | seconds | voxels/s | peak RSS above start (MB) | "
                      "cells | load before → after |", "|---|---|---|---|---|---|---|"]
            for scale, r in res["memory"].items():
                lines.append(f"| {scale}x | {r['shape']} | {r['seconds']:.1f} | "
                             f"{r['voxels_per_s'] / 1e3:.0f} k | {r['peak_rss_mb']:.0f} | "
                             f"{r['n_cells']} | {r['load_before'][0]} → {r['load_after'][0]} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 512, 512))
    ap.add_argument("--full", action="store_true", help="mirror to 251 x 1024 x 1024")
    ap.add_argument("--label", default="after")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the ratio section")
    ap.add_argument("--methods", default="agglo,flood", help="segment methods of the ratio")
    ap.add_argument("--sections", default="ratio,stages,memory")
    ap.add_argument("--work", default="segment-speed-work")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "segment_speed"))
    args = ap.parse_args(argv)
    from chunkseg.engine.memory import reuse_buffers

    reuse_buffers()  # as the CLI does, before any thread starts
    import chunkseg

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    raw, _ = _volumes(work, args.shape, args.full)
    shape = list(FULL) if args.full else list(args.shape)
    n = int(np.prod(shape))
    tree = Path(chunkseg.__file__).parent
    res = {"commit": git_commit(tree), "chunkseg": str(tree), "shape": shape}
    wanted = args.sections.split(",")
    prob = work / f"{raw.stem}.prob.zarr"
    if "ratio" in wanted:
        res["ratio"] = ratio_section(raw, work, n, args.rounds, args.methods.split(","))
    if "stages" in wanted:
        res["stages"] = stages_section(prob, work)
    if "memory" in wanted:
        res["memory"] = memory_section(prob, work)
    report = labelled_runs(args.out)
    report["runs"][args.label] = res
    report["hardware"] = {"machine": platform.machine(), "cpus": os.cpu_count(),
                          "python": platform.python_version()}
    write_results(args.out, _md(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
