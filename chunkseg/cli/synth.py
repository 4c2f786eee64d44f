"""``chunkseg synth``."""

from __future__ import annotations

import argparse

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    p = sub.add_parser(
        "synth",
        help="write synthetic lattice light-sheet membrane data with exact truth",
        description="Write raw.ome.zarr (uint16), labels.ome.zarr (uint32 cell ids) and "
        "mask.ome.zarr (uint8 membranes) into OUT: a Laguerre tessellation of cells imaged "
        "with an anisotropic PSF, depth fall-off, haze, blobs and camera noise. Deterministic "
        "per seed; streamed block by block (bounded memory at any size).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--shape", required=True, nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="voxels of one time point")
    p.add_argument("--timepoints", type=int, default=1, metavar="T", help="time points (1)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (0)")
    p.add_argument("--voxel-size", nargs=3, type=float, default=(0.4, 0.1, 0.1),
                   metavar=("Z", "Y", "X"), help="voxel size in µm (0.4 0.1 0.1)")
    p.add_argument("--cell-diameter", type=float, default=4.0, metavar="UM",
                   help="mean cell diameter in µm (4)")
    p.add_argument("--no-blobs", action="store_true", help="no out-of-focus blobs")
    p.add_argument("--background", action="store_true",
                   help="label 0 outside an embryo-like ellipsoid")
    add_output_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.synth import run_synth

    with cluster(args) as client:
        paths = run_synth(
            args.out, shape=args.shape, timepoints=args.timepoints, seed=args.seed,
            voxel_size=args.voxel_size, chunks=args.chunks, blobs=not args.no_blobs,
            cell_diameter=args.cell_diameter, background=args.background,
            overwrite=args.overwrite, resume=args.resume, pyramid=args.pyramid, client=client,
        )
    print(json.dumps(paths, indent=2))
    return 0
