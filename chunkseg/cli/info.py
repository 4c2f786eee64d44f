"""``chunkseg info``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` sub-command."""
    p = sub.add_parser(
        "info",
        help="shape, dtype, chunks/shards, voxel size, size on disk and completeness of a volume",
        description="Describe an OME-Zarr store or TIFF without reading its voxels.",
    )
    p.add_argument("path", help="OME-Zarr store or TIFF file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.info import format_info, volume_info

    info = volume_info(args.path)
    print(json.dumps(info, indent=2, default=str) if args.json else format_info(info))
    return 0 if info["complete"] else 1
