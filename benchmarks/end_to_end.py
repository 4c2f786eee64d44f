"""The pipeline end to end on one full time point through the CLI, against the original ACME.

Per round, each command in a fresh child process (:func:`allocator.run_cli`: process
start, TensorFlow import and cluster included) with every default:
``chunkseg predict RAW`` then ``chunkseg segment PROB``; then, as a probe of how fast
this machine runs ACME-style filtering, ``chunkseg predict --method acme`` (the
ACME-like re-implementation, not ACME) on a 64 x 256 x 256 crop of the same raw.

Reported per round: wall and CPU seconds and peak RSS of both steps, the machine's
float32 matmul GFLOP/s just before, the end-to-end time against the original ACME's
reference rate (:data:`sections.ORIGINAL_ACME`, measured once on an earlier machine of
this project and not re-runnable), and the ACME-like probe's seconds.  The reference is
a fixed number while the machine is not (its CPU generation has changed between
sessions), so the probe says how much of a change is the machine's.

Usage::

    python benchmarks/end_to_end.py [--raw RAW.zarr] [--work DIR] [--rounds 2]
        [--label L] [--out benchmarks/results/end_to_end]

Without ``--raw`` the synthetic volume of ``segment_speed.py --full`` (251 x 1024 x 1024)
is made in ``--work`` once.  Runs of each ``--label`` are kept side by side in
``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from allocator import run_cli  # noqa: E402
from common import git_commit, hardware, labelled_runs, matmul_gflops, write_results  # noqa: E402
from sections import ORIGINAL_ACME, original_acme_seconds  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: the crop of the ACME-like probe, the original ACME's reference shape
PROBE = ORIGINAL_ACME["shape"]


def _probe_crop(raw: Path, work: Path) -> Path:
    """A ``PROBE``-shaped crop from the middle of ``raw`` (made once)."""
    from segment import _store

    from chunkseg.io.store import open_volume

    out = work / "acme_probe.zarr"
    if (out / "zarr.json").is_file():
        return out
    vol = open_volume(raw)
    start = [(s - p) // 2 for s, p in zip(vol.data.shape[1:], PROBE)]
    key = (0, *(slice(a, a + p) for a, p in zip(start, PROBE)))
    return _store(out, np.asarray(vol.data[key]), vol.voxel_size, "raw")


def one_round(raw: Path, crop: Path, work: Path) -> dict:
    """predict, segment and the ACME-like probe, each through the CLI."""
    prob, cells = work / "e2e.prob.zarr", work / "e2e.cells.zarr"
    gflops = matmul_gflops()
    steps = {
        "predict": run_cli(["predict", str(raw), "--out", str(prob), "--overwrite", "--quiet"],
                           cwd=work),
        "segment": run_cli(["segment", str(prob), "--out", str(cells), "--overwrite", "--quiet"],
                           cwd=work),
        "acme_probe": run_cli(["predict", str(crop), "--method", "acme", "--out",
                               str(work / "acme_probe.prob.zarr"), "--overwrite", "--quiet"],
                              cwd=work),
    }
    n = steps["predict"]["summary"]["voxels"]
    acme_s = original_acme_seconds(n)
    total = steps["predict"]["seconds"] + steps["segment"]["seconds"]
    for r in steps.values():
        r.pop("summary")
    return {"matmul_gflops": gflops, **steps, "end_to_end_s": round(total, 1),
            "x_original_acme": round(acme_s / total, 1), "voxels": n}


def _md(report: dict) -> str:
    lines = [f"Original ACME reference: {ORIGINAL_ACME['shape']} in {ORIGINAL_ACME['seconds']} s "
             f"({ORIGINAL_ACME['threads']} threads), measured once on an earlier machine.", ""]
    for label, run in report["runs"].items():
        lines += [f"### {label} ({run['commit']}; {run['machine']})", "",
                  "| round | matmul GFLOP/s | predict s (CPU s) | segment s (CPU s) | "
                  "peak RSS MB predict / segment | end to end s | × original ACME | "
                  "ACME-like probe s | load before |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for i, r in enumerate(run["rounds"], 1):
            p, s = r["predict"], r["segment"]
            lines.append(f"| {i} | {r['matmul_gflops']} | {p['seconds']} ({p['cpu_s']}) | "
                         f"{s['seconds']} ({s['cpu_s']}) | {p['peak_rss_mb']} / "
                         f"{s['peak_rss_mb']} | {r['end_to_end_s']} | {r['x_original_acme']} | "
                         f"{r['acme_probe']['seconds']} | {p['load_before'][0]} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw", default=None, help="raw OME-Zarr (default: the synthetic full "
                                                "time point, made in --work)")
    ap.add_argument("--work", default="end-to-end-work")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "end_to_end"))
    args = ap.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.raw is None:
        from segment_speed import _volumes

        raw, _ = _volumes(work, (64, 512, 512), True)
    else:
        raw = Path(args.raw).resolve()
    crop = _probe_crop(raw, work)
    hw = hardware()
    rounds = [one_round(raw, crop, work) for _ in range(args.rounds)]
    report = labelled_runs(args.out)
    report["runs"][args.label] = {"commit": git_commit(REPO), "raw": str(raw), "hardware": hw,
                                  "machine": f"{hw['cpu']} ({hw['cpu_id']}), "
                                             f"{hw['cores']} cores",
                                  "rounds": rounds}
    write_results(args.out, _md(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
