"""``chunkseg segment``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``segment`` sub-command."""
    p = sub.add_parser(
        "segment",
        help="cell instance labels from a membrane probability (blockwise seeded watershed)",
        description="Seeded, bounded watershed of a membrane probability, block by block with "
        "halos and an exact union-find merge across block faces: the labels do not depend on "
        "the block shape and equal a whole-volume pass. Writes an OME-Zarr label image "
        "(napari opens it as labels) and a cell table OUT/cells.csv.",
    )
    p.add_argument("input", metavar="PROB", help="membrane probability (OME-Zarr, Zarr or TIFF)")
    p.add_argument("--out", required=True, help="output OME-Zarr label image")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="cell interior is p < T (default 0.5; must lie in (0, 1))")
    p.add_argument("--min-size", type=float, default=1.0, metavar="V",
                   help="merge segments smaller than V µm³ into a neighbour (default 1)")
    p.add_argument("--seed-distance", type=float, default=0.5, metavar="D",
                   help="seeds lie farther than D µm from any membrane voxel (default 0.5; "
                   "about 1/8 of the cell diameter works best)")
    p.add_argument("--reach", type=float, metavar="R",
                   help="how far cells grow from their seeds through the interior, µm "
                   "(default 3 D)")
    p.add_argument("--membrane-reach", type=float, metavar="M",
                   help="growth per membrane level, µm (default 0.5)")
    p.add_argument("--timepoints", metavar="A:B", help="segment only time points A..B-1")
    p.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="processing block (default 64 256 256); the result does not depend on it")
    add_output_options(p)
    add_scheduler_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.segment import run_segment

    with cluster(args) as client:
        summary = run_segment(
            args.input, out=args.out, threshold=args.threshold, min_size=args.min_size,
            seed_distance=args.seed_distance, reach=args.reach,
            membrane_reach=args.membrane_reach, timepoints=args.timepoints, block=args.block,
            chunks=args.chunks, overwrite=args.overwrite, resume=args.resume, client=client,
            progress=not args.quiet,
        )
    print(json.dumps(summary, indent=2))
    return 0
