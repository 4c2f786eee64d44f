"""``chunkseg plan``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli.predict import _halo


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan`` sub-command."""
    p = sub.add_parser(
        "plan",
        help="what a predict run will cost (blocks, tasks, memory, time) before running it",
        description="Plan a 'chunkseg predict' run without running it: blocks, tasks, network "
        "voxels (halo included), memory per worker and the expected time on N workers from a "
        "throughput calibrated on a reference machine; for a real input (only its shape is "
        "read) or a described one (--shape T Z Y X --dtype uint16, no data needed).",
    )
    p.add_argument("input", metavar="IN", nargs="?", help="input store or TIFF (or --shape)")
    p.add_argument("--shape", nargs="+", type=int, metavar="N",
                   help="described input: T Z Y X (or Z Y X for one time point)")
    p.add_argument("--dtype", default="uint16", help="voxel dtype of a described input")
    p.add_argument("--model", default="default", help="chunkseg .keras model or 'default'")
    p.add_argument("--halo", type=_halo, default=10, metavar="N|auto",
                   help="as predict (default 10)")
    p.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"), help="as predict")
    p.add_argument("--tile", nargs=3, type=int, metavar=("Z", "Y", "X"), help="as predict")
    p.add_argument("--batch", type=int, help="as predict")
    p.add_argument("--memory", type=float, metavar="GIB", help="as predict")
    p.add_argument("--workers", type=int, default=1, help="workers (or GPUs) to plan for")
    p.add_argument("--threads-per-worker", type=int, default=2,
                   help="dask threads per worker (blocks held at once; default 2)")
    p.add_argument("--voxels-per-s", type=float,
                   help="network-input voxels/s of one worker (e.g. measured on a GPU); "
                   "default: the packaged CPU calibration")
    p.add_argument("--target-hours", type=float, help="also say how many workers reach this")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.plan import format_plan, plan_run

    plan = plan_run(args.input, shape=args.shape, dtype=args.dtype, model=args.model,
                    halo=args.halo, block=args.block, tile=args.tile, batch=args.batch,
                    memory_gib=args.memory, workers=args.workers,
                    threads_per_worker=args.threads_per_worker, voxels_per_s=args.voxels_per_s,
                    target_hours=args.target_hours)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return 0
