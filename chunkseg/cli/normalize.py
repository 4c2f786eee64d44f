"""``chunkseg normalize``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster
from chunkseg.ops.normalize import DEFAULT_PERCENTILES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``normalize`` sub-command."""
    p = sub.add_parser(
        "normalize",
        help="scale intensities to 8 bit between two percentiles (exact, one streaming pass)",
        description="Map the intensity range (LOW, HIGH) of a volume or time series to uint8: "
        "floor(clip(255 (x - LOW) / (HIGH - LOW), 0, 255) + 0.5). By default LOW, HIGH are "
        "the 0th and 99.99th percentiles of all voxels (exact for integer data). Without "
        "--out nothing is written: the percentiles are printed (and plotted with --plot) so "
        "you can choose a range. The range used is stored in the output's metadata.",
    )
    p.add_argument("input", help="raw volume: OME-Zarr store, Zarr array or TIFF")
    p.add_argument("--out", help="output OME-Zarr (uint8); omit to only print / plot")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="fixed intensity range (skips the percentile pass unless --plot)")
    g.add_argument("--percentiles", nargs=2, type=float, metavar=("P_LOW", "P_HIGH"),
                   default=DEFAULT_PERCENTILES,
                   help="percentiles giving the range (default 0 99.99)")
    p.add_argument("--per-timepoint", action="store_true",
                   help="one range per time point instead of one for the whole series")
    p.add_argument("--plot", metavar="FILE.png",
                   help="plot intensity versus percentile with the range dashed")
    p.add_argument("--drop-slices", metavar="SPEC",
                   help="artifact z slices to remove first, e.g. 3,17,40-45")
    add_output_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.normalize import run_normalize

    with cluster(args) as client:
        summary = run_normalize(
            args.input, args.out, range=args.range, percentiles=args.percentiles,
            per_timepoint=args.per_timepoint, plot=args.plot, drop_slices=args.drop_slices,
            chunks=args.chunks, overwrite=args.overwrite, resume=args.resume,
            pyramid=args.pyramid, client=client,
        )
    print(json.dumps(summary, indent=2))
    return 0
