"""``chunkseg predict``."""

from __future__ import annotations

import argparse
import json

from chunkseg.cli._options import add_output_options, add_scheduler_option, cluster


def _halo(value: str) -> str | int:
    return "auto" if value.strip().lower() == "auto" else int(value)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = sub.add_parser(
        "predict",
        help="membrane probability of a volume / time series with a 3D U-Net, chunk by chunk",
        description="Predict membrane probability block by block (dask map_overlap with a halo, "
        "tiles inside each block, batched), on a LocalCluster sized to this machine or any dask "
        "cluster. With --halo auto (the model's receptive-field radius) the output equals a "
        "single whole-volume pass: no seams. Input: OME-Zarr/Zarr (t z y x or z y x) or TIFF.",
    )
    p.add_argument("input", metavar="IN", help="input OME-Zarr / Zarr store or TIFF file")
    p.add_argument("--out", required=True, help="output OME-Zarr probability image")
    p.add_argument("--model", default="default",
                   help="chunkseg .keras model, or 'default' (the packaged model)")
    p.add_argument("--method", choices=("unet", "acme"), default="unet",
                   help="'unet' (default) or 'acme': the classical ACME-style baseline (median, "
                   "isotropic resampling, Hessian plate measure, tensor voting) on the same engine")
    p.add_argument("--halo", type=_halo, default=10, metavar="N|auto",
                   help="context voxels around each block (default 10, as the paper); 'auto' = "
                   "the model's receptive-field radius (seam-free)")
    p.add_argument("--block", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="output block = shard = one task (default 128 256 256)")
    p.add_argument("--tile", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="network input tile, a multiple of the pooling factor (default: the "
                   "fewest network voxels per block within --memory)")
    p.add_argument("--batch", type=int, help="tiles per network call (default: from the budget)")
    p.add_argument("--memory", type=float, default=None, metavar="GIB",
                   help="activation memory of one network call in GiB; the default tile and "
                   "batch are the cheapest that fit it (default: a quarter of this machine's "
                   "RAM per worker, 1 to 16 GiB; 1 GiB on GPUs or a remote --scheduler)")
    p.add_argument("--blend", choices=("gaussian", "linear", "none"), default="gaussian",
                   help="weights of overlapping tile outputs when halo < receptive field")
    p.add_argument("--dtype", choices=("uint8", "float16", "float32"), default="float32",
                   help="output dtype (uint8 stores round(255 p))")
    p.add_argument("--timepoints", metavar="A:B", help="predict only time points A..B-1")
    p.add_argument("--threshold", type=float,
                   help="also write a binary mask p >= T (to --mask-out)")
    p.add_argument("--mask-out", help="mask store (default: OUT with suffix _mask)")
    add_scheduler_option(p, cluster=True)
    p.add_argument("--workers", type=int, help="LocalCluster worker processes (default 1)")
    p.add_argument("--threads-per-worker", type=int, help="LocalCluster threads per worker")
    add_output_options(p, chunks=False)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-resample", dest="resample", action="store_false",
                   help="predict at the input's voxel size even when the model declares "
                   "another (default: each block is resampled to the model's voxel size "
                   "and back when they differ by more than 10%%)")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="network compute precision (bfloat16: faster on CPUs with AVX512-BF16 "
                   "or AMX; probabilities differ by about 3e-4 on average)")
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="the input's voxel size in µm, when its metadata lacks it")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.predict import run_predict

    with cluster(args, layout="filters" if args.method == "acme" else "model") as client:
        summary = run_predict(
            args.input, model=args.model, out=args.out, halo=args.halo, block=args.block,
            tile=args.tile, batch=args.batch, blend=args.blend, dtype=args.dtype,
            timepoints=args.timepoints, threshold=args.threshold, mask_out=args.mask_out,
            client=client, resume=args.resume, overwrite=args.overwrite,
            progress=not args.quiet, method=args.method, memory_gib=args.memory,
            resample=args.resample, voxel_size=args.voxel_size, precision=args.precision,
            pyramid=args.pyramid,
        )
    print(json.dumps(summary, indent=2))
    return 0
