"""One CLI command run by several chunkseg checkouts in rotation (a change against its base).

Each run is the CLI in a fresh child process (:func:`allocator.run_cli`) with a checkout
first on ``PYTHONPATH`` and the working folder outside every checkout; the checkouts
take turns within each round, so a round sees the same machine.  Per run: wall
seconds, user and kernel CPU seconds (the child and its workers), peak RSS, and the
``seconds`` per phase of the CLI's JSON summary.  Per round the wall-time ratio of
every checkout to the first (paired: the machine's speed drifts between rounds).
With ``--compare`` the outputs of all checkouts are compared voxel for voxel (level 0).

Usage::

    python benchmarks/checkouts.py --trees base=/tmp/base new=. \\
        [--rounds 2] [--compare] [--label L] [--warmup "segment SMALL.zarr --overwrite --quiet"] \\
        --command segment PROB.zarr --overwrite --quiet

``OUT`` in the command stands for each run's output path (added as ``--out OUT`` when
absent).  Writes ``benchmarks/results/checkouts.{json,md}``; runs of each ``--label``
are kept side by side.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from allocator import run_cli  # noqa: E402
from common import git_commit, hardware, labelled_runs, matmul_gflops, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _argv(command: list[str], out: Path) -> list[str]:
    argv = [str(out) if a == "OUT" else a for a in command]
    return argv if str(out) in argv else [*argv, "--out", str(out)]


def same_output(a: Path, b: Path) -> bool:
    """Whether two stores hold the same level-0 array (read slab by slab)."""
    from chunkseg.io.store import open_array

    x, y = open_array(a), open_array(b)
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    step = max(1, (x.chunks[0] if x.ndim == 3 else x.chunks[1]))
    axis = 0 if x.ndim == 3 else 1
    for i in range(0, x.shape[axis], step):
        key = (slice(None),) * axis + (slice(i, i + step),)
        if not np.array_equal(np.asarray(x[key]), np.asarray(y[key])):
            return False
    return True


def measure(trees: dict[str, Path], command: list[str], rounds: int, compare: bool,
            warmup: list[str] | None = None) -> dict:
    """Every checkout once per round, in turn; the outputs compared after the last round.

    ``warmup``: a command each checkout runs first, uncounted (a fresh checkout compiles
    its numba functions into its cache on its first run).
    """
    names = list(trees)
    runs: dict[str, list] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {n: Path(tmp) / f"{n}.zarr" for n in names}
        for n in names if warmup else ():
            run_cli(_argv(warmup, Path(tmp) / "warmup.zarr"), tree=trees[n], cwd=tmp)
        for _ in range(rounds):
            for n in names:
                r = run_cli(_argv(command, outs[n]), tree=trees[n], cwd=tmp)
                summary = r.pop("summary") or {}
                runs[n].append({**r, "phases": summary.get("seconds")})
        same = ({n: same_output(outs[names[0]], outs[n]) for n in names[1:]} if compare
                else None)
    ratios = {n: [round(b["seconds"] / a["seconds"], 3) for a, b in zip(runs[names[0]], runs[n])]
              for n in names[1:]}
    return {"runs": runs, "ratio_to_first": ratios, "same_output_as_first": same}


def _md(report: dict) -> str:
    lines = []
    for label, run in report["runs"].items():
        first = next(iter(run["trees"]))
        lines += [f"### {label} ({run['machine']})", "",
                  f"`chunkseg {' '.join(run['command'])}`; checkouts: "
                  + ", ".join(f"{n} = {c}" for n, c in run["commits"].items()), "",
                  "| round | checkout | wall s | user CPU s | kernel CPU s | peak RSS MB | "
                  f"wall / {first} | load before | phases (s) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        res = run["result"]
        for i in range(len(res["runs"][first])):
            for n, rs in res["runs"].items():
                r = rs[i]
                ratio = 1.0 if n == first else res["ratio_to_first"][n][i]
                ph = r["phases"]  # per phase (segment) or the command's total (predict)
                phases = (", ".join(f"{k} {v}" for k, v in ph.items()) if isinstance(ph, dict)
                          else f"total {ph}")
                lines.append(f"| {i + 1} | {n} | {r['seconds']} | {r['user_s']} | "
                             f"{r['kernel_s']} | {r['peak_rss_mb']} | {ratio} | "
                             f"{r['load_before'][0]} | {phases} |")
        if res["same_output_as_first"] is not None:
            lines += ["", "Output identical to the first checkout's, voxel for voxel: "
                      + ", ".join(f"{n}: {v}" for n, v in res["same_output_as_first"].items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trees", nargs="+", required=True, help="NAME=PATH checkouts")
    ap.add_argument("--command", nargs=argparse.REMAINDER, required=True,
                    help="the chunkseg command and its arguments (last option)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", default=None, metavar="COMMAND",
                    help="a command (one string) each checkout runs first, uncounted "
                         "(e.g. 'segment SMALL.zarr --overwrite --quiet')")
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "checkouts"))
    args = ap.parse_args(argv)
    trees = {t.split("=", 1)[0]: Path(t.split("=", 1)[1]).resolve() for t in args.trees}
    hw = hardware()
    machine = f"{hw['cpu']}, {hw['cores']} cores, matmul {matmul_gflops()} GFLOP/s before"
    result = measure(trees, args.command, args.rounds, args.compare,
                     shlex.split(args.warmup) if args.warmup else None)
    report = labelled_runs(args.out)
    report["runs"][args.label] = {"command": args.command, "machine": machine,
                                  "commits": {n: git_commit(t) for n, t in trees.items()},
                                  "trees": {n: str(t) for n, t in trees.items()},
                                  "result": result}
    write_results(args.out, _md(report), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
