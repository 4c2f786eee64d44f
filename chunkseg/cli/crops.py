"""``chunkseg crops``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``crops`` sub-command."""
    p = sub.add_parser(
        "crops",
        help="write random augmented training crops as TIFF pairs (raw uint8, mask uint8)",
        description=(
            "Draw N random crops from a raw volume and its membrane mask (OME-Zarr or TIFF), "
            "augment them (flips, 90-degree y-x rotations, intensity, optional Gaussian noise; "
            "identical geometry for raw and mask) and write raw_#####.tif / mask_#####.tif plus "
            "crops.json. Raw crops are uint8 = round(255 * x) of the [0, 1] network input "
            "(--raw-dtype float32 writes x itself); masks are uint8 0/1."
        ),
    )
    p.add_argument("raw", help="raw volume: uint8 normalised, or uint16 with a normalization range")
    p.add_argument("mask", help="membrane mask (uint8 0/1) of the same shape")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of crop pairs")
    p.add_argument("--size", type=int, nargs=3, metavar=("Z", "Y", "X"), default=[64, 128, 128],
                   help="crop shape (default 64 128 128)")
    noise = p.add_mutually_exclusive_group()
    noise.add_argument("--noise", choices=["none", "low", "medium", "high"],
                       help="Gaussian noise preset: sigma 0.02 / 0.05 / 0.10 of the [0, 1] range")
    noise.add_argument("--noise-sigma", type=float, metavar="S",
                       help="Gaussian noise standard deviation, in [0, 1] intensity units")
    p.add_argument("--noise-mu", type=float, metavar="M",
                   help="Gaussian noise mean (with --noise-sigma; default 0)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--membrane-bias", type=float, default=0.5,
                   help="probability that a crop is chosen to contain membrane (default 0.5)")
    p.add_argument("--normalization", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="intensity range of a uint16 raw (default: the store's normalization)")
    p.add_argument("--raw-dtype", choices=["uint8", "float32"], default="uint8",
                   help="dtype of the raw TIFFs (default uint8)")
    p.add_argument("--no-augment", action="store_true",
                   help="no flips, rotations or intensity changes (noise still applies)")
    p.add_argument("--workers", type=int, default=4, help="parallel reader/writer threads")
    p.add_argument("--overwrite", action="store_true", help="replace crops already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.errors import ParameterError
    from chunkseg.pipeline.crops import run_crops

    if args.noise_mu is not None and args.noise_sigma is None:
        raise ParameterError(f"--noise-mu {args.noise_mu} needs --noise-sigma")
    noise = args.noise
    if args.noise_sigma is not None:
        noise = (args.noise_mu or 0.0, args.noise_sigma)
    manifest = run_crops(
        args.raw, args.mask, out=args.out, n=args.n, size=args.size, noise=noise, seed=args.seed,
        augment=not args.no_augment, membrane_bias=args.membrane_bias,
        normalization=args.normalization, raw_dtype=args.raw_dtype, overwrite=args.overwrite,
        workers=args.workers, progress=not args.quiet,
    )
    print(f"wrote {manifest['n']} crop pairs {tuple(manifest['size'])} (raw {manifest['raw_dtype']}, "
          f"mask uint8) to {args.out}; mean membrane fraction "
          f"{manifest['mean_membrane_fraction']:.3f}")
    return 0
