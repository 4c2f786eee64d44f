"""``chunkseg segment``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``segment`` sub-command."""
    p = sub.add_parser(
        "segment",
        help="cell instance labels from a membrane probability (blockwise, chunking-exact)",
        description="Cells from a membrane probability, block by block with halos and an "
        "exact merge across block faces: the labels do not depend on the block shape and equal "
        "a whole-volume pass. Default method 'agglo': fragments (watershed of the distance to "
        "the boundaries), their region graph with the mean boundary probability over each "
        "interface, one global agglomeration (mutex watershed). Method 'flood': the seeded, "
        "bounded watershed. Writes an OME-Zarr label image (napari opens it as labels) and a "
        "cell table cells.csv beside the labels; on its own (--out) or inside the raw image (--labels-in).",
    )
    p.add_argument("input", metavar="PROB", help="membrane probability (OME-Zarr, Zarr or TIFF)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output OME-Zarr label image of its own")
    where.add_argument("--labels-in", metavar="IMAGE",
                       help="write the labels inside this OME-Zarr image (same shape, e.g. the "
                       "raw) as IMAGE/labels/NAME, where napari shows them over the image")
    p.add_argument("--label-name", default="cells", metavar="NAME",
                   help="name of the label image inside --labels-in (default cells)")
    p.add_argument("--method", choices=("agglo", "flood"), default="agglo",
                   help="agglomeration on the fragment graph (default) or seeded flood")
    p.add_argument("--threshold", type=float,
                   help="agglo: fragments merge when their interface score (--criterion) is "
                   "below T (default 0.1 for contrast, 0.45 for mean); flood: cell interior is "
                   "p < T (default 0.5); must lie in (0, 1)")
    p.add_argument("--criterion", choices=("contrast", "mean"),
                   help="agglo: the interface score: contrast (default; the interface's mean "
                   "probability minus the mean probability of the two fragments) or mean (the "
                   "interface's mean probability)")
    p.add_argument("--min-size", type=float, metavar="V",
                   help="merge cells smaller than V µm³ into a neighbour (default 0.3 for agglo, "
                   "1 for flood)")
    p.add_argument("--fragment-radius", type=float, metavar="R",
                   help="agglo: cap of the distance to the boundaries for the fragment seeds, "
                   "µm (default 0.5); cells wider than 2 R start from one seed")
    p.add_argument("--fragment-sigma", type=float, metavar="S",
                   help="agglo: smoothing of that distance, µm (default 0.15)")
    p.add_argument("--linkage", choices=("mutex", "average", "single"),
                   help="agglo: mutex watershed (default), average or single linkage")
    p.add_argument("--seed-distance", type=float, metavar="D",
                   help="flood: seeds lie farther than D µm from any membrane voxel (default "
                   "0.5; about 1/8 of the cell diameter works best)")
    p.add_argument("--reach", type=float, metavar="R",
                   help="flood: how far cells grow from their seeds through the interior, µm "
                   "(default 3 D)")
    p.add_argument("--membrane-reach", type=float, metavar="M",
                   help="growth per membrane level (flood: of the cells, agglo: of the "
                   "fragments), µm (default 0.5, or one voxel of the coarsest axis if larger)")
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
            args.input, out=args.out, labels_in=args.labels_in, label_name=args.label_name, method=args.method, threshold=args.threshold,
            min_size=args.min_size, seed_distance=args.seed_distance, reach=args.reach,
            fragment_radius=args.fragment_radius, fragment_sigma=args.fragment_sigma,
            linkage=args.linkage, criterion=args.criterion,
            membrane_reach=args.membrane_reach, timepoints=args.timepoints, block=args.block,
            chunks=args.chunks, overwrite=args.overwrite, resume=args.resume,
            pyramid=args.pyramid, client=client,
            progress=not args.quiet,
        )
    print(json.dumps(summary, indent=2))
    return 0
