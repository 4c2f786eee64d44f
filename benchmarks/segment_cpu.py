"""CPU seconds of ``segment`` (every default) across checkouts, with the labels compared.

Usage::

    python benchmarks/segment_cpu.py --prob PROB.zarr --trees main=/path/a lever1=/path/b ...
        [--region 60:188,256:768,256:768] [--rounds 2] [--sections block,crop]
        [--work /tmp/segment_cpu] [--out benchmarks/results/segment_cpu]
    python benchmarks/segment_cpu.py --prob PROB.zarr --sections blocks
        [--blocks 64,256,256 128,512,512] [--region 0:251,0:1024,0:1024] ...

Each ``NAME=PATH`` is a checkout of chunkseg (e.g. ``git archive COMMIT | tar -x -C PATH``);
every measurement runs in a subprocess with ``PYTHONPATH=PATH``, the checkouts one after
the other within each round (a first, uncounted round compiles their numba kernels), so
their ratios come from the same minutes of a shared machine.  CPU seconds (all threads of
the process) are less disturbed by other processes than wall seconds; the load average is
recorded.

Sections
    block
        The interior block ``(1, 1, 1)`` (64 x 256 x 256 voxels, read with every halo) of
        ``--prob``'s first time point, as a ``segment`` task computes it: fragment seeds
        on the block with the seed halo, seed components, the flood over the block with
        the flood halo, the fragment statistics and the edge table.  CPU seconds per step
        (median over rounds; each run computes the block twice and counts the second, after
        numba has loaded its compiled kernels); the flood's labels of the owned block are
        compared.
    crop
        ``run_segment`` with every default in dask's synchronous scheduler on ``--region``
        of ``--prob`` (stored once under ``--work``): CPU and wall seconds (median), and
        the labels compared bit for bit with the first checkout's.
    blocks
        ``run_segment`` with every default but the processing block, one run per
        ``--blocks`` entry (this checkout, interleaved within each round) on ``--region``:
        CPU and wall seconds (median), the process's peak RSS (synchronous: one block
        task at a time, i.e. the memory of one worker) and the labels compared bit for
        bit with the first block's, time point by time point.
    steps
        For each ``--blocks`` entry, the block of that shape at the centre of ``--prob``'s
        first time point, computed as a ``segment`` task does (as in ``block``): CPU
        nanoseconds per owned voxel of each step, and the voxels the flood reads per
        owned voxel (its halo).  One process, every block twice, the second counted.
    flood
        The flood of the interior block (as in ``block``, with dense int32 markers) by
        the ``chunkseg/ops/watershed.py`` of each checkout, all loaded into one process
        and called in turn, ``--rounds`` paired rounds after an uncounted one: CPU
        seconds (median) and the median of the per-round ratios to the first checkout;
        the labels compared.  Paired calls in one process cancel most of the load of
        other processes.
    profile
        ``run_segment`` with every default on ``--region`` (this checkout, synchronous
        scheduler, a first uncounted run loads the compiled kernels) under cProfile with
        the process CPU clock: CPU seconds per phase and per step
        (``segment_speed.STAGES``), inside the flood, and the functions of most own CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402
from segment_speed import STAGES, _cum  # noqa: E402

HERE = Path(__file__).resolve()
BLOCK = (64, 256, 256)


def _interior_block(prob: str) -> tuple:
    """The interior block ``(1, 1, 1)`` of ``prob``'s first time point as a ``segment``
    task reads it: ``(rules, shape3, flood block, probability read with the flood and
    seed halos, the flood region inside it, that read region)``."""
    from chunkseg.engine.agglomerate import segment_method
    from chunkseg.engine.geometry import Block
    from chunkseg.io.store import open_volume
    from chunkseg.ops.watershed import as_probability, flood_halo

    vol = open_volume(prob)
    rules, _ = segment_method("agglo", voxel_size=vol.voxel_size)
    shape3 = tuple(vol.shape[1:])
    fb = Block.at((1, 1, 1), shape=shape3, block=BLOCK, halo=flood_halo(rules.flood))
    ext = tuple(slice(r.start, min(n, r.stop + 1)) for r, n in zip(fb.read, shape3))
    big = tuple(slice(max(0, r.start - h), min(n, r.stop + h))
                for r, h, n in zip(ext, rules.seed_halo, shape3))
    p = as_probability(np.asarray(vol.data[(0, *big)]))
    inner = tuple(slice(e.start - g.start, e.stop - g.start) for e, g in zip(ext, big))
    return rules, shape3, fb, p, inner, big


def _timed_steps(rules, p: np.ndarray, seed_region: tuple, ext: tuple, crop: tuple,
                 offset: list[int], shape3: tuple) -> tuple[dict, np.ndarray, np.ndarray]:
    """One block's ``segment`` steps on ``p`` (read with the seed halo), timed on the process
    clock: seeds of ``seed_region``; seeds labelled, flood, statistics and edge table of
    ``ext`` (owned box ``crop`` inside it, at ``offset`` in a volume of ``shape3``).
    Returns the CPU seconds per step, the probability of ``ext`` and the owned labels."""
    from chunkseg.ops.rag import block_edges
    from chunkseg.ops.segstats import block_stats
    from chunkseg.ops.watershed import flood, label_seeds

    cpu = {}

    def timed(step, fn, *a, **k):
        c = time.process_time()
        r = fn(*a, **k)
        cpu[step] = time.process_time() - c
        return r

    timed("seeds", rules.seeds, np.ascontiguousarray(p[seed_region]))
    markers, _ = timed("label seeds", label_seeds, rules.seeds(p)[ext])
    pe = np.ascontiguousarray(p[ext])
    plus = tuple(slice(c.start, min(c.stop + 1, n)) for c, n in zip(crop, pe.shape))
    lab = timed("flood", flood, markers.astype(np.uint64), pe, rules.flood, exact=plus)
    owned = lab[crop]
    timed("statistics", block_stats, owned, offset=offset, shape=shape3)
    timed("edge table", block_edges, lab[plus], pe[plus], owned.shape)
    return cpu, pe, owned


def _worker_block(prob: str, out: str) -> dict:
    from chunkseg.engine.geometry import Block

    rules, shape3, fb, p, inner, big = _interior_block(prob)
    sb = Block.at((1, 1, 1), shape=shape3, block=BLOCK, halo=rules.seed_halo)
    sreg = tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(sb.read, big))
    for _ in range(2):  # the second pass counts: the first loads the compiled kernels
        cpu, _, owned = _timed_steps(rules, p, sreg, inner, fb.crop,
                                     [r.start for r in fb.owned], shape3)
    np.save(out, owned)
    return cpu


def _flood_inputs(prob: str) -> tuple:
    """Dense markers, probability, flood parameters and exact box of the interior block."""
    from chunkseg.ops.segstats import dense_labels
    from chunkseg.ops.watershed import label_seeds

    rules, _, fb, p, inner, _ = _interior_block(prob)
    markers = dense_labels(label_seeds(rules.seeds(p)[inner])[0])[2]
    pe = np.ascontiguousarray(p[inner])
    plus = tuple(slice(c.start, min(c.stop + 1, n)) for c, n in zip(fb.crop, pe.shape))
    return markers, pe, rules.flood, plus


def _flood_ab(prob: str, trees: dict, rounds: int, work: Path) -> dict:
    """The ``flood`` section: paired calls of each checkout's flood in this process.

    Each ``watershed.py`` is loaded from a copy in ``work``: numba caches the kernels
    of a module beside its file, and a checkout's own cache must not hold kernels
    compiled under another module name.
    """
    import dataclasses
    import importlib.util
    import shutil

    markers, pe, params, plus = _flood_inputs(prob)
    floods = {}
    for name, tree in trees.items():
        copy = work / f"ws_{name}.py"
        shutil.copyfile(Path(tree) / "chunkseg" / "ops" / "watershed.py", copy)
        spec = importlib.util.spec_from_file_location(f"ws_{name}", copy)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        floods[name] = (mod.flood, mod.SegmentParams(**dataclasses.asdict(params)))
    cpu: dict[str, list] = {name: [] for name in trees}
    same = {name: True for name in trees}
    ref = None
    for r in range(rounds + 1):  # round 0 loads the compiled kernels
        for name, (fn, par) in floods.items():
            c = time.process_time()
            lab = fn(markers, pe, par, exact=plus)
            if r:
                cpu[name].append(time.process_time() - c)
            ref = lab.copy() if ref is None else ref
            same[name] &= bool(np.array_equal(lab, ref))
    first = np.array(cpu[next(iter(trees))])
    return {name: {"median": float(np.median(c)), "rounds": c, "labels_identical": same[name],
                   "ratio": float(np.median(np.array(c) / first))} for name, c in cpu.items()}


def _flood_table(res: dict, load: list[float]) -> list[str]:
    lines = [f"### flood: interior block, paired calls in one process (load {load})", "",
             "| checkout | flood CPU s (median) | CPU / first (median of paired rounds) | "
             "labels identical to the first |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['median']:.3f} | {r['ratio']:.3f} | {r['labels_identical']} |"
              for name, r in res.items()]
    return lines + [""]


def _centre_regions(shape3, block, flood_halo, seed_halo):
    """Owned, flood-read (+1 on the high side) and seed-read regions of the centred block,
    and the largest region read (what is loaded)."""
    own = tuple(slice((n - b) // 2, (n - b) // 2 + b) for n, b in zip(shape3, block))
    ext = tuple(slice(max(0, o.start - h), min(n, o.stop + h + 1))
                for o, h, n in zip(own, flood_halo, shape3))
    big = tuple(slice(max(0, r.start - h), min(n, r.stop + h))
                for r, h, n in zip(ext, seed_halo, shape3))
    seed = tuple(slice(max(0, o.start - h), min(n, o.stop + h))
                 for o, h, n in zip(own, seed_halo, shape3))
    return own, ext, big, seed


def _worker_steps(prob: str, blocks: list[str]) -> dict:
    from chunkseg.engine.agglomerate import segment_method
    from chunkseg.io.store import open_volume
    from chunkseg.ops.watershed import as_probability, flood_halo

    vol = open_volume(prob)
    rules, _ = segment_method("agglo", voxel_size=vol.voxel_size)
    shape3 = tuple(vol.shape[1:])
    out = {}
    for _ in range(2):  # the second pass counts: the first loads the compiled kernels
        for name in blocks:
            block = tuple(min(int(b), n) for b, n in zip(name.split(","), shape3))
            own, ext, big, seed = _centre_regions(shape3, block, flood_halo(rules.flood),
                                                  rules.seed_halo)
            p = as_probability(np.asarray(vol.data[(0, *big)]))
            local = [tuple(slice(r.start - g.start, r.stop - g.start) for r, g in zip(reg, big))
                     for reg in (ext, seed)]
            crop = tuple(slice(o.start - e.start, o.stop - e.start) for o, e in zip(own, ext))
            cpu, pe, owned = _timed_steps(rules, p, local[1], local[0], crop,
                                          [o.start for o in own], shape3)
            n = owned.size
            out[name] = {"flood read / owned": pe.size / n,
                         **{k: v / n * 1e9 for k, v in cpu.items()}}
    return out


def _steps_table(res: dict, load: list[float]) -> list[str]:
    names = list(res)
    keys = list(res[names[0]])
    lines = [f"### steps: CPU ns per owned voxel, centred block (load {load})", "",
             "| block | " + " | ".join(keys) + " | sum of the steps |", "|---" * (len(keys) + 2)
             + "|"]
    for name in names:
        r = res[name]
        lines.append(f"| ({name}) | " + " | ".join(f"{r[k]:.1f}" for k in keys)
                     + f" | {sum(r[k] for k in keys[1:]):.0f} |")
    return lines + [""]


def _worker_crop(prob: str, out: str) -> dict:
    import dask

    from chunkseg.io.store import open_volume
    from chunkseg.pipeline.segment import run_segment

    with dask.config.set(scheduler="synchronous"):
        t0, c0 = time.perf_counter(), time.process_time()
        s = run_segment(prob, out=out + ".zarr", overwrite=True, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(out + ".npy", np.asarray(open_volume(out + ".zarr").data))
    return {"cpu": cpu, "wall": wall, "cells": s["n_cells"][0]}


#: (step, function, caller or None) inside the flood (:func:`chunkseg.ops.watershed.flood`)
FLOOD_STEPS = [
    ("    flood: light cone", "_light_cone", "flood"),
    ("    flood: state (labels, keys, ranks)", "__init__", "flood"),
    ("    flood: level starts (fronts, sorts)", "start_level", "flood"),
    ("    flood: steps (compiled front loop)", "_flood_step", "step"),
    ("    flood: parked voxels back", "_unpark", "step"),
]


def _worker_profile(prob: str, out: str) -> dict:
    import cProfile
    import pstats

    import dask

    from chunkseg.pipeline.segment import run_segment

    with dask.config.set(scheduler="synchronous"):
        run_segment(prob, out=out + "_warm.zarr", overwrite=True, progress=False)
        prof = cProfile.Profile(time.process_time)
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        s = run_segment(prob, out=out + ".zarr", overwrite=True, progress=False)
        prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    st = pstats.Stats(prof)
    rows = {name: _cum(st, fn, caller) for name, fn, caller in STAGES + FLOOD_STEPS}
    own = sorted(((v[2], f"{Path(k[0]).name}:{k[2]}") for k, v in st.stats.items()),
                 reverse=True)[:15]
    return {"cpu": cpu, "wall": wall, "cells": s["n_cells"][0], "blocks": s["blocks"],
            "halo": s["halo"], "stages": rows, "own": [[n, c] for c, n in own]}


def _profile_table(res: dict, load: list[float]) -> list[str]:
    cpu = res["cpu"]
    lines = [f"### profile: CPU by phase and step, cProfile with the process CPU clock, "
             f"synchronous ({res['blocks']} blocks, halo {res['halo']}, CPU {cpu:.1f} s, "
             f"wall {res['wall']:.1f} s, load {load})", "", "| stage | CPU s | share |",
             "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {100 * v / cpu:.1f} % |" for k, v in res["stages"].items()]
    lines += ["", "Functions of most own CPU:", "", "| function | own CPU s |", "|---|---|"]
    lines += [f"| {name} | {c:.2f} |" for name, c in res["own"]]
    return lines + [""]


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (``VmHWM``: reset by ``exec``, unlike
    ``ru_maxrss``, which a child inherits from the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _worker_blocks(prob: str, out: str, block: str) -> dict:
    import dask

    from chunkseg.pipeline.segment import run_segment

    rss0 = _peak_rss_mb()
    with dask.config.set(scheduler="synchronous"):
        t0, c0 = time.perf_counter(), time.process_time()
        s = run_segment(prob, out=out + ".zarr", overwrite=True, progress=False,
                        block=[int(b) for b in block.split(",")])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    phases = {f"{k} (s)": s["seconds"][k] for k in ("seeds", "flood", "relabel")}
    return {"cpu": cpu, "wall": wall, "cells": s["n_cells"][0], "peak_rss_mb": _peak_rss_mb(),
            "rss_after_import_mb": rss0, "blocks": s["blocks"], **phases}


def _same_labels(a: Path, b: Path) -> bool:
    """Two label stores equal voxel for voxel (read one z-slab of a time point at a time)."""
    from chunkseg.io.store import open_volume

    x, y = open_volume(a).data, open_volume(b).data
    if x.shape != y.shape:
        return False
    step = max(1, x.shape[1] // 8)
    return all(np.array_equal(np.asarray(x[t, z:z + step]), np.asarray(y[t, z:z + step]))
               for t in range(x.shape[0]) for z in range(0, x.shape[1], step))


def _compare_blocks(blocks: list[str], prob: Path, work: Path, rounds: int) -> dict:
    """Every block in each round (this checkout); the median per key, labels against the
    first block's."""
    tree = str(HERE.parents[1])
    runs: dict[str, list] = {b: [] for b in blocks}
    warm: dict[str, dict] = {}
    load = [round(os.getloadavg()[0], 2)]
    for r in range(rounds + 1):  # round 0 loads the compiled kernels (kept, not counted)
        for b in blocks:
            res = _run(tree, "blocks", prob, work / f"blocks_{b.replace(',', '_')}", b)
            if r:
                runs[b].append(res)
            else:
                warm[b] = res
        load.append(round(os.getloadavg()[0], 2))
    ref = work / f"blocks_{blocks[0].replace(',', '_')}.zarr"
    out = {}
    for b, rs in runs.items():
        same = _same_labels(work / f"blocks_{b.replace(',', '_')}.zarr", ref)
        out[b] = {"median": {k: float(np.median([x[k] for x in rs])) for k in rs[0]},
                  "rounds": rs, "round_0": warm[b], "labels_identical": bool(same)}
    return {"runs": out, "load": load}


def _blocks_table(res: dict) -> list[str]:
    names = list(res["runs"])
    first = res["runs"][names[0]]["median"]
    lines = [f"### blocks (load average over the rounds: {res['load']})", "",
             "| block | blocks | CPU s | wall s | seeds / flood / relabel phase s | CPU / first "
             "| CPU / first, round 0 | peak RSS of the process (MB) | cells | "
             "labels identical to the first |", "|---" * 10 + "|"]
    for name in names:
        m, w = res["runs"][name]["median"], res["runs"][name]["round_0"]
        phases = " / ".join(f"{m[k]:.1f}" for k in ("seeds (s)", "flood (s)", "relabel (s)"))
        lines.append(f"| ({name}) | {int(m['blocks'])} | {m['cpu']:.1f} | {m['wall']:.1f} | "
                     f"{phases} | {m['cpu'] / first['cpu']:.3f} | "
                     f"{w['cpu'] / res['runs'][names[0]]['round_0']['cpu']:.3f} | "
                     f"{m['peak_rss_mb']:.0f} | {int(m['cells'])} | "
                     f"{res['runs'][name]['labels_identical']} |")
    return lines + [""]


def _crop_store(prob: Path, region: str, work: Path) -> Path:
    """``region`` (``z0:z1,y0:y1,x0:x1``) of the first time point, stored once."""
    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete, open_volume
    import dask.array as da

    out = work / ("crop_" + region.replace(":", "-").replace(",", "_") + ".zarr")
    if (out / "zarr.json").is_file():
        return out
    vol = open_volume(prob)
    sl = tuple(slice(*map(int, r.split(":"))) for r in region.split(","))
    arr = np.asarray(vol.data[(slice(0, 1), *sl)])
    create_image(out, shape=arr.shape, dtype=arr.dtype, voxel_size=vol.voxel_size,
                 attrs={"kind": "probability"}, overwrite=True)
    write_volume(da.from_array(arr), out, progress=False)
    mark_complete(out)
    return out


def _run(tree: str, section: str, prob: Path, out: Path, *blocks: str) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    cmd = [sys.executable, str(HERE), "--worker", section, "--prob", str(prob), "--out", str(out),
           *(["--blocks", *blocks] if blocks else [])]
    res = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _compare(trees: dict, section: str, prob: Path, work: Path, rounds: int) -> dict:
    """Every checkout in each round; the median per key, labels against the first's."""
    runs: dict[str, list] = {name: [] for name in trees}
    load = [round(os.getloadavg()[0], 2)]
    for r in range(rounds + 1):  # round 0 compiles the numba kernels of each checkout
        for name, tree in trees.items():
            res = _run(tree, section, prob, work / f"{section}_{name}")
            if r:
                runs[name].append(res)
        load.append(round(os.getloadavg()[0], 2))
    ref = np.load(work / f"{section}_{next(iter(trees))}.npy")
    out = {}
    for name, rs in runs.items():
        same = np.array_equal(np.load(work / f"{section}_{name}.npy"), ref)
        out[name] = {"median": {k: float(np.median([x[k] for x in rs])) for k in rs[0]},
                     "rounds": rs, "labels_identical": bool(same)}
    return {"runs": out, "load": load}


def _table(section: str, res: dict) -> list[str]:
    names = list(res["runs"])
    keys = list(res["runs"][names[0]]["median"])
    cpu_keys = [k for k in keys if k not in ("wall", "cells")]

    def total(name: str) -> float:
        return sum(res["runs"][name]["median"][k] for k in cpu_keys)

    lines = [f"### {section} (load average over the rounds: {res['load']})", "",
             "| checkout | " + " | ".join(f"{k} (s)" if k != "cells" else k for k in keys)
             + " | CPU / first | labels identical to the first |",
             "|---" * (len(keys) + 3) + "|"]
    for name in names:
        med = res["runs"][name]["median"]
        lines.append(f"| {name} | " + " | ".join(f"{med[k]:.3g}" if k != "cells" else
                                                 str(int(med[k])) for k in keys)
                     + f" | {total(name) / total(names[0]):.3f} | "
                     f"{res['runs'][name]['labels_identical']} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prob", required=True, help="probability store (t, z, y, x)")
    ap.add_argument("--trees", nargs="+", default=[], help="NAME=PATH checkouts")
    ap.add_argument("--region", default="60:188,256:768,256:768")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sections", default="block,crop")
    ap.add_argument("--work", type=Path, default=Path("/tmp/segment_cpu"))
    ap.add_argument("--out", default=str(HERE.parent / "results" / "segment_cpu"))
    ap.add_argument("--blocks", nargs="+", default=["64,256,256", "128,512,512"],
                    help="processing blocks z,y,x of the blocks section")
    ap.add_argument("--worker", choices=["block", "crop", "blocks", "steps", "profile"],
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    from chunkseg.engine.memory import reuse_buffers

    reuse_buffers()  # as the CLI does, before any thread starts
    if args.worker:
        fn = {"block": _worker_block, "crop": _worker_crop,
              "blocks": functools.partial(_worker_blocks, block=args.blocks[0]),
              "steps": lambda prob, out: _worker_steps(prob, args.blocks),
              "profile": _worker_profile}[args.worker]
        print(json.dumps(fn(args.prob, args.out)))
        return
    trees = dict(t.split("=", 1) for t in args.trees)
    args.work.mkdir(parents=True, exist_ok=True)
    report = {"prob": args.prob, "region": args.region, "trees": trees, "blocks": args.blocks,
              "sections": {}}
    lines = [f"Probability {args.prob}; crop region {args.region}; {args.rounds} rounds.", ""]
    for section in args.sections.split(","):
        if section == "flood":
            load = [round(os.getloadavg()[0], 2)]
            res = _flood_ab(args.prob, trees, args.rounds, args.work)
            report["sections"][section] = {"runs": res, "load": load + [
                round(os.getloadavg()[0], 2)]}
            lines += _flood_table(res, report["sections"][section]["load"])
            continue
        if section in ("steps", "profile"):
            load = [round(os.getloadavg()[0], 2)]
            prob = (Path(args.prob) if section == "steps"
                    else _crop_store(Path(args.prob), args.region, args.work))
            res = _run(str(HERE.parents[1]), section, prob, args.work / section, *args.blocks)
            load.append(round(os.getloadavg()[0], 2))
            report["sections"][section] = {"runs": res, "load": load}
            lines += (_steps_table if section == "steps" else _profile_table)(res, load)
            continue
        prob = (Path(args.prob) if section == "block"
                else _crop_store(Path(args.prob), args.region, args.work))
        if section == "blocks":
            report["sections"][section] = res = _compare_blocks(args.blocks, prob, args.work,
                                                                args.rounds)
            lines += _blocks_table(res)
            continue
        report["sections"][section] = res = _compare(trees, section, prob, args.work,
                                                     args.rounds)
        lines += _table(section, res)
    write_results(args.out, "\n".join(lines), report)


if __name__ == "__main__":
    main()
