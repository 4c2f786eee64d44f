"""``chunkseg benchmark``: runs ``benchmarks/run.py`` of the source checkout."""

from __future__ import annotations

import argparse
from pathlib import Path

#: where ``benchmarks/run.py`` may be: next to the package (source checkout or editable
#: install), or in the current directory (a checkout with chunkseg installed from it)
CANDIDATES = (Path(__file__).resolve().parents[2] / "benchmarks" / "run.py",
              Path("benchmarks") / "run.py")


def find_script() -> Path:
    """The benchmark script of the source checkout.

    Raises
    ------
    InputNotFoundError
        Neither candidate exists (``benchmarks/`` is not part of the installed package).
    """
    from chunkseg.errors import InputNotFoundError

    for path in CANDIDATES:
        if path.is_file():
            return path.resolve()
    raise InputNotFoundError(
        f"benchmark script not found at {', '.join(map(str, CANDIDATES))}: run from a source "
        "checkout of chunkseg (benchmarks/ is not installed with the package)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` sub-command."""
    p = sub.add_parser(
        "benchmark",
        help="throughput and quality table: I/O, bare U-Net, predict, naive loop, ACME baseline",
        description="Run benchmarks/run.py: I/O MB/s, bare U-Net voxels/s and GFLOP/s against "
        "the measured matmul peak, chunkseg predict, the paper's naive loop, the ACME-style "
        "baseline, quality of both methods on synthetic and real data, scaling and workers. "
        "Writes results.json, results.md and throughput_vs_size.png. Needs a source checkout.",
    )
    p.add_argument("--quick", action="store_true", help="small sizes (< 5 minutes on 2 cores)")
    p.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    p.add_argument("--keep", action="store_true", help="keep the intermediate volumes")
    p.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import importlib.util
    import sys

    script = find_script()
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("chunkseg_benchmarks_run", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.run_benchmark(args.out, quick=args.quick, keep=args.keep, only=args.only)
    return 0
