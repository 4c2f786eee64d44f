"""``chunkseg convert``."""

from __future__ import annotations

import argparse

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command."""
    p = sub.add_parser(
        "convert",
        help="convert TIFF stacks / series / HDF5 / Zarr to a chunkseg OME-Zarr image",
        description="Stream light-sheet data into an OME-Zarr (NGFF 0.5, Zarr v3) image with "
        "axes t z y x. Inputs: one 3D TIFF, one 4D TIFF (t z y x), several 3D TIFFs or a glob "
        "(a time series, natural order: t2 before t10), or an existing Zarr array.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF file(s), glob, HDF5 dataset FILE.h5:/DATASET, or Zarr store")
    p.add_argument("--out", required=True, help="output OME-Zarr group (e.g. raw.ome.zarr)")
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size in µm (overrides the TIFF / HDF5 metadata)")
    p.add_argument("--channel", type=int, help="channel of a multi-channel hyperstack (or ilastik HDF5 with a c axis)")
    p.add_argument("--drop-slices", metavar="SPEC",
                   help="artifact z-slices to remove, e.g. 3,17,40-45 (recorded in the metadata)")
    add_output_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.convert import run_convert

    with cluster(args) as client:
        summary = run_convert(
            args.inputs, args.out, voxel_size=args.voxel_size, chunks=args.chunks,
            channel=args.channel, drop_slices=args.drop_slices, overwrite=args.overwrite,
            resume=args.resume, pyramid=args.pyramid, client=client,
        )
    print(json.dumps(summary, indent=2))
    return 0
