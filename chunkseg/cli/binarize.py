"""``chunkseg binarize``."""

from __future__ import annotations

import argparse

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``binarize`` sub-command."""
    p = sub.add_parser(
        "binarize",
        help="cell instance labels -> binary membrane mask (chunked, exact)",
        description="Mark voxels whose neighbourhood of radius WIDTH (6-connected) holds two "
        "different labels, ignored label values counting as one background. Mode 'thick' "
        "(default) is symmetric about each interface (= skimage find_boundaries "
        "mode='thick' for width 1); 'inner' keeps only voxels inside cells (the paper's "
        "binary foreground minus cytosol). Runs chunk by chunk with a halo of WIDTH voxels.",
    )
    p.add_argument("labels", help="cell instance labels (integer): OME-Zarr, Zarr or TIFF")
    p.add_argument("--out", required=True, help="output OME-Zarr mask (uint8 0/1)")
    p.add_argument("--ignore", nargs="*", type=int, default=[0], metavar="VALUE",
                   help="label values that are not cells (default 0; the paper uses 0 1)")
    p.add_argument("--width", type=int, default=1,
                   help="membrane half-width in voxels (default 1)")
    p.add_argument("--mode", choices=("thick", "inner"), default="thick",
                   help="thick (default): both sides of each interface; inner: inside cells")
    p.add_argument("--in-plane", choices=("auto", "yes", "no"), default="no",
                   help="draw the mask of each z slice on its own (interfaces between slices "
                   "unmarked); auto: when the z step exceeds twice the lateral one (voxel size "
                   "of the labels, else of --like); default no (3D)")
    p.add_argument("--drop-slices", metavar="SPEC",
                   help="artifact z slices to remove, e.g. 3,17,40-45 (same spec as the raw)")
    p.add_argument("--like", metavar="RAW",
                   help="raw volume these labels annotate: shapes must match")
    add_output_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.binarize import run_binarize

    with cluster(args) as client:
        summary = run_binarize(
            args.labels, args.out, ignore=args.ignore, width=args.width, mode=args.mode,
            in_plane={"auto": None, "yes": True, "no": False}[args.in_plane],
            drop_slices=args.drop_slices, like=args.like, chunks=args.chunks,
            overwrite=args.overwrite, resume=args.resume, pyramid=args.pyramid, client=client,
        )
    print(json.dumps(summary, indent=2))
    return 0
