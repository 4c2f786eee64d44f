"""``chunkseg demo``."""

from __future__ import annotations

import argparse

from chunkseg.cli._options import add_scheduler_option, cluster
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on synthetic data (no data, no GPU needed)",
        description="Synthesize a small membrane time series with exact truth, save it as TIFF "
        "stacks, convert to OME-Zarr, predict with the default model (seam-free halo), evaluate "
        "against the truth, binarize at the best-IoU threshold, and print where everything is.",
    )
    p.add_argument("--out", default="chunkseg-demo", help="folder for everything "
                   "(default ./chunkseg-demo; replaced if it exists)")
    p.add_argument("--model", default="default", help="model (default: the packaged one)")
    p.add_argument("--timepoints", type=int, default=2, help="synthetic time points (default 2)")
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    add_scheduler_option(p, cluster=True)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.workflows.demo import run_demo

    with cluster(args, layout="model") as client:
        s = run_demo(args.out, model=args.model, timepoints=args.timepoints, seed=args.seed,
                     client=client, progress=not args.quiet)
    lines = [
        "",
        "chunkseg demo finished in {:.0f} s".format(s["seconds"]),
        f"  raw (OME-Zarr)        {s['raw']}",
        f"  membrane probability  {s['probability']}",
        f"  binarized mask        {s['mask']}  (p >= {s['threshold']:.2f}, best IoU)",
        f"  truth mask            {s['truth']}",
        f"  report                {s['report']}",
        *[f"  figure                {p}" for p in s["pngs"]],
        f"  dask dashboard        {s['dashboard'] or '(no cluster)'}",
        f"  predict               {s['voxels_per_s']:,.0f} voxels/s (halo {s['halo']})",
        f"  membrane IoU          {s['iou']:.3f}   boundary F1 {s['boundary_f1']:.3f}",
        "",
    ]
    print("\n".join(lines), file=sys.stderr)
    print(json.dumps(s, indent=2))
    return 0
