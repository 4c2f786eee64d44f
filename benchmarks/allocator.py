"""The C allocator's settings against the CLI's speed and memory (``chunkseg.engine.memory``).

Each run is the ``chunkseg`` CLI in a fresh child process, with one of three settings
(for ``predict`` the LocalCluster workers get the same):

``reuse``
    what the CLI does: :func:`chunkseg.engine.memory.reuse_buffers` (no mmap, one arena,
    256 MiB trim threshold);
``mmap 1 MiB``
    a fixed 1 MiB mmap threshold: every buffer of 1 MiB or more mapped fresh and
    unmapped on free (the CLI's earlier setting);
``glibc``
    glibc's defaults (a dynamic mmap threshold of at most 32 MiB).

Sections (settings rotated within each round, so a round sees the same load):

``segment``
    ``chunkseg segment PROB`` (every default) on ``--prob``;
``predict``
    ``chunkseg predict RAW --model default --dtype uint8`` on ``--raw``;
``series``
    ``chunkseg segment`` on ``--series`` (a probability with several time points): peak
    resident memory of the CLI process in each quarter of the run, sampled every 0.5 s
    (flat: bounded by the blocks in flight, not by the series length).

Per run: wall seconds, user and kernel CPU seconds (the child and its workers), peak
RSS of the CLI process.  Usage::

    python benchmarks/allocator.py --prob P.zarr --raw R.zarr --series S.zarr \
        [--sections segment,predict,series] [--settings reuse,glibc] [--rounds 1] [--label L]

(``python benchmarks/segment_speed.py --full --sections ratio`` leaves a full time
point's raw and probability in its ``--work`` folder.)  Writes
``benchmarks/results/allocator.{json,md}``; runs of each ``--label`` are kept side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: setting name -> code run in the child before the CLI (after its imports)
SETTINGS = {
    "reuse": "",
    "mmap 1 MiB": (
        "import ctypes, chunkseg.engine.memory as m, chunkseg.engine.cluster as c\n"
        "m.reuse_buffers = lambda: bool(ctypes.CDLL('libc.so.6').mallopt(-3, 1 << 20))\n"
        "c.ALLOCATOR_ENV = {'MALLOC_MMAP_THRESHOLD_': str(1 << 20)}\n"),
    "glibc": (
        "import chunkseg.engine.memory as m, chunkseg.engine.cluster as c\n"
        "m.reuse_buffers = lambda: False\n"
        "c.ALLOCATOR_ENV = {}\n"),
}
_CHILD = "{setup}import sys\nfrom chunkseg.cli import main\nsys.exit(main({argv!r}))\n"


def run_cli(argv: list[str], setting: str = "reuse", *, tree: str | os.PathLike | None = None,
            cwd: str | os.PathLike | None = None) -> dict:
    """One CLI run in a child process: seconds, CPU, peak RSS, RSS by quarter and the
    CLI's JSON summary (``--quiet`` prints it).

    ``tree``: a chunkseg checkout put first on the child's ``PYTHONPATH``; ``cwd`` (give
    one outside any checkout with a tree: ``python -c`` puts the working folder first).
    """
    code = _CHILD.format(setup=SETTINGS[setting], argv=argv)
    env = dict(os.environ, PYTHONPATH=str(tree)) if tree is not None else None
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=stdout, env=env, cwd=cwd)
        samples = []
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    samples.append(next(int(v.split()[1]) for v in f if v.startswith("VmRSS")))
            except (OSError, StopIteration):
                pass
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        stdout.seek(0)
        text = stdout.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{setting}: chunkseg {' '.join(argv)} failed")
    n = max(1, len(samples))
    quarters = [max(samples[n * i // 4 : max(n * (i + 1) // 4, n * i // 4 + 1)] or [0]) / 1024
                for i in range(4)]
    try:
        summary = json.loads(text)
    except ValueError:
        summary = None
    return {"seconds": round(wall, 1), "user_s": round(usage.ru_utime, 1),
            "kernel_s": round(usage.ru_stime, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "rss_quarters_mb":
            [round(q) for q in quarters], "load_before": load, "summary": summary}


def _argv(section: str, args, out: Path) -> list[str]:
    if section == "predict":
        return ["predict", str(args.raw), "--out", str(out), "--model", "default",
                "--dtype", "uint8", "--overwrite", "--quiet"]
    src = args.prob if section == "segment" else args.series
    return ["segment", str(src), "--out", str(out), "--overwrite", "--quiet"]


def measure(args) -> dict:
    """Every section x setting, ``args.rounds`` rounds; per cell the fastest round."""
    out: dict = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for section in args.sections:
            runs: dict[str, list] = {s: [] for s in args.settings}
            for _ in range(args.rounds):
                for setting in args.settings:
                    runs[setting].append(run_cli(_argv(section, args, Path(tmp) / "out.zarr"),
                                                 setting))
            out[section] = {s: dict(min(rs, key=lambda r: r["seconds"]), summary=None,
                                    rounds_seconds=[r["seconds"] for r in rs])
                            for s, rs in runs.items()}
    return out


def _md(report: dict) -> str:
    lines = []
    for label, run in report["runs"].items():
        lines += [f"### {label} ({run['commit']}; {run['cpu']})", "",
                  "| section | setting | seconds (rounds) | user CPU s | kernel CPU s | "
                  "peak RSS MB | RSS by quarter MB | load before |",
                  "|---|---|---|---|---|---|---|---|"]
        for section, rows in run["sections"].items():
            for setting, r in rows.items():
                lines.append(f"| {section} | {setting} | {r['seconds']} "
                             f"({', '.join(map(str, r['rounds_seconds']))}) | {r['user_s']} | "
                             f"{r['kernel_s']} | {r['peak_rss_mb']} | "
                             f"{' / '.join(map(str, r['rss_quarters_mb']))} | "
                             f"{r['load_before'][0]} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prob", type=Path, help="probability of one time point (segment)")
    ap.add_argument("--raw", type=Path, help="raw image (predict)")
    ap.add_argument("--series", type=Path, help="probability with several time points")
    ap.add_argument("--sections", default="segment,predict,series")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated, of {list(SETTINGS)}")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--label", default="run")
    ap.add_argument("--tmp", default=None, help="folder for the outputs (default: system)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "allocator"))
    args = ap.parse_args(argv)
    args.sections = args.sections.split(",")
    args.settings = args.settings.split(",")
    unknown = sorted(set(args.settings) - set(SETTINGS))
    if unknown:
        ap.error(f"unknown settings {unknown}; expected some of {list(SETTINGS)}")
    need = {"segment": args.prob, "predict": args.raw, "series": args.series}
    missing = [s for s in args.sections if need.get(s) is None]
    if missing:
        ap.error(f"sections {missing} need --prob / --raw / --series")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import _cpu_model, git_commit, labelled_runs, write_results

    report = labelled_runs(args.out)
    report["runs"][args.label] = {"commit": git_commit(REPO), "cpu": _cpu_model(),
                                  "inputs": {k: str(v) for k, v in need.items() if v},
                                  "sections": measure(args)}
    write_results(args.out, _md(report), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
