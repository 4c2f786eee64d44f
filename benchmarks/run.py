"""chunkseg benchmark: one command, one table (issue 8).

    python benchmarks/run.py [--quick] [--out DIR]      (or: chunkseg benchmark ...)

Runs in one process, one session, so ratios are taken side by side:

* I/O: TIFF → OME-Zarr (``convert``) and ``normalize`` MB/s with peak RSS;
* the bare U-Net on in-memory tiles: voxels/s and GFLOP/s against a measured matmul peak;
* ``chunkseg predict`` (default model): useful output voxels/s and its ratio to the bare model;
* the paper-style naive loop over overlapping sub-volumes (one ``model.predict`` each);
* the ACME-style baseline through the same engine: voxels/s, U-Net / ACME speed ratio;
* quality beside speed: membrane IoU / boundary F1 (``evaluate``) and cell F1@0.5
  (``segment``) of both methods on synthetic data and on ``../shared/data/real/ovule_*``;
* scaling: time and peak memory at 1×, 4× (16× without ``--quick``) volume; workers 1 vs 2;
* on a GPU: a full 251 × 1024 × 1024 volume end to end (the paper's unit).

Writes ``results.json``, ``results.md`` (the table) and ``throughput_vs_size.png`` to
``--out``.  A section whose dependency is absent is reported as skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


from common import Skip, fmt, hardware, markdown_table  # noqa: E402
from load import measure_quietly  # noqa: E402
from sections import (  # noqa: E402
    SECTIONS,
    Context,
)

REPO = Path(__file__).resolve().parents[1]


def _section(fn, ctx: Context, retries: int) -> dict[str, Any]:
    """One section, probed for load (:mod:`benchmarks.load`); a loaded run is repeated
    up to ``retries`` times and the fastest kept, flagged ``loaded`` if none was quiet."""
    def once() -> dict[str, Any]:
        t = time.perf_counter()
        try:
            res = fn(ctx)
        except Skip as exc:
            res = {"skipped": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            traceback.print_exc()
            res = {"failed": f"{type(exc).__name__}: {exc}"}
        res["section_seconds"] = round(time.perf_counter() - t, 2)
        return res

    return measure_quietly(once, tries=1 + retries, key="section_seconds")


def run_benchmark(out: str | os.PathLike = "bench_out", *, quick: bool = False,
                  keep: bool = False, only: list[str] | None = None,
                  retries: int = 0) -> dict[str, Any]:
    """Run every section; write results.json, results.md, throughput_vs_size.png.

    Every section records the load around it (load average before/after, CPU seconds
    against wall); ``retries``: how often a loaded section is run again.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    ctx = Context(work=work, quick=quick, real=(REPO / ".." / "shared" / "data" / "real").resolve())
    t0 = time.perf_counter()
    results: dict[str, Any] = {"quick": quick, "sections": {}}
    for name, fn in SECTIONS:
        if only and name not in only:
            continue
        print(f"[benchmark] {name} ...", file=sys.stderr, flush=True)
        res = _section(fn, ctx, retries)
        results["sections"][name] = res
        print(f"[benchmark] {name}: {res['section_seconds']} s", file=sys.stderr, flush=True)
    results["hardware"] = hardware(ctx.gpus)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    cpu = os.times()
    results["cpu_seconds"] = round(cpu.user + cpu.system + cpu.children_user + cpu.children_system, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = render(results)
    (out / "results.md").write_text(table + "\n")
    plot(results, out / "throughput_vs_size.png")
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    print(table)
    return results


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    s = results["sections"]
    rows: list[tuple[str, str, str, str]] = []

    def add(sec: str, measure: str, value: Any, note: str = "") -> None:
        rows.append((sec, measure, fmt(value), note))

    for name, res in s.items():
        if "skipped" in res or "failed" in res:
            add(name, "—", res.get("skipped") and "skipped" or "FAILED",
                (res.get("skipped") or res.get("failed", "")).replace("|", "/"))
            continue
        flag = (f" [LOADED: load average {res['load_before']:.1f} on {res['cores']} cores; "
                "re-measure on an idle machine]") if res.get("loaded") else ""
        for measure, value, note in res.get("rows", []):
            add(name, measure, value, note + flag)
    return rows


def render(results: dict[str, Any]) -> str:
    """The Markdown report: hardware line and the table."""
    hw = results["hardware"]
    gpu = ", ".join(hw.get("gpus") or []) or "no GPU"
    cpu = f"{hw['cpu']} ({hw['cpu_id']})" if "cpu_id" in hw else hw["cpu"]
    head = (f"chunkseg benchmark{' (--quick)' if results['quick'] else ''}: {cpu}, "
            f"{hw['cores']} cores, {hw['ram_gib']} GiB RAM, {gpu}; Python {hw['python']}, "
            f"TensorFlow {hw.get('tensorflow', '?')}; total {results['total_seconds']} s wall, "
            f"{results.get('cpu_seconds', '?')} s CPU (a wall/CPU gap means a shared machine).")
    return head + "\n\n" + markdown_table(_rows(results))


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput (voxels/s) against volume size, one line per method."""
    scaling = results["sections"].get("scaling", {})
    series = scaling.get("series")
    if not series:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, pts in series.items():
        xs = [p["voxels"] for p in pts]
        ys = [p["voxels_per_s"] for p in pts]
        ax.plot(xs, ys, "o-", label=method)
    ax.set_xscale("log")
    ax.set_xlabel("volume (voxels)")
    ax.set_ylabel("throughput (voxels/s)")
    ax.set_title("chunkseg throughput vs volume size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, < 5 minutes on 2 cores")
    p.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    p.add_argument("--keep", action="store_true", help="keep the intermediate volumes")
    p.add_argument("--only", nargs="+", metavar="SECTION",
                   help=f"run only these sections ({', '.join(n for n, _ in SECTIONS)})")
    p.add_argument("--retries", type=int, default=0,
                   help="run a section measured on a loaded machine again, up to N times")
    a = p.parse_args(argv)
    run_benchmark(a.out, quick=a.quick, keep=a.keep, only=a.only, retries=a.retries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
