"""``chunkseg train``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = sub.add_parser(
        "train",
        help="train the 3D U-Net on augmented crops of (raw, membrane mask) volumes",
        description="Train Çiçek's 3D U-Net on random augmented crops read directly from "
        "OME-Zarr (raw, mask) pairs. Writes the best model (lowest validation loss) as a "
        ".keras file carrying chunkseg metadata, and next to it <stem>_training/ with the "
        "history (JSON), a CSV log, TensorBoard event files and the training curves (PNG). "
        "Options given here override the [train] / [model] tables of --config.",
    )
    p.add_argument("--raw", nargs="+", required=True, help="raw volume(s): OME-Zarr, zarr or TIFF")
    p.add_argument("--mask", nargs="+", required=True, help="membrane mask(s), one per raw")
    p.add_argument("--val-raw", nargs="+", help="held-out validation raw volume(s)")
    p.add_argument("--val-mask", nargs="+", help="held-out validation mask(s)")
    p.add_argument("--out", required=True, help="output model file (.keras)")
    p.add_argument("--config", help="TOML file with [model] and [train] tables")
    p.add_argument("--epochs", type=int, help="epochs (default 50)")
    p.add_argument("--steps", type=int, help="batches per epoch (default 100)")
    p.add_argument("--val-steps", type=int, help="validation batches per epoch (default 10)")
    p.add_argument("--crop", nargs=3, type=int, metavar=("Z", "Y", "X"),
                   help="training crop (default 64 128 128)")
    p.add_argument("--batch", type=int, help="crops per step (default 2)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 1e-3)")
    p.add_argument("--lr-schedule", choices=["plateau", "cosine", "constant"],
                   help="learning-rate schedule (default plateau)")
    p.add_argument("--decay-epochs", type=int,
                   help="cosine schedule: decay over this many epochs (default: --epochs; "
                   "set it when a training is resumed in parts with a growing --epochs)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--membrane-weight", type=float, help="membrane class weight (default 3)")
    p.add_argument("--noise", help="noise augmentation preset: none, low, medium, high")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--depth", type=int, help="U-Net levels (overrides [model] depth)")
    p.add_argument("--base-filters", type=int, help="channels of the first level")
    p.add_argument("--normalization", nargs=2, type=float, metavar=("LOW", "HIGH"),
                   help="one intensity range for every raw (default: each raw's stored range, else "
                   "its (1, 99.5) percentiles of the non-zero voxels, as predict does)")
    p.add_argument("--mixed-precision", action="store_true",
                   help="train with mixed_float16 on GPUs (mixed_bfloat16 on CPU: only on CPUs "
                   "with avx512_bf16 or amx_bf16; 23x slower on AVX2-only ones); the saved "
                   "model is float32")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    p.add_argument("--resume", action="store_true",
                   help="continue from <stem>_training/checkpoint.npz (weights, optimizer state, "
                   "epoch; written after every epoch) with the same data and options; --epochs "
                   "may grow. Without a checkpoint: start afresh")
    p.add_argument("--init", metavar="MODEL",
                   help="fine-tune: start from the weights of 'default' or a chunkseg .keras "
                   "model (its architecture unless [model]/--depth/--base-filters ask for one)")
    p.add_argument("--ignore-value", type=int, metavar="V",
                   help="mask value of unlabelled voxels (sparse labels): excluded from the "
                   "loss and the metrics")
    _sampling_options(p)
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_run)


def _sampling_options(p: argparse.ArgumentParser) -> None:
    """``--pair-weights`` and ``--bn-recompute``."""
    p.add_argument("--pair-weights", nargs="+", type=float, metavar="W",
                   help="one weight > 0 per --raw: crops are drawn from a volume in "
                   "proportion to its weight times its number of crop positions")
    p.add_argument("--bn-recompute", type=int, metavar="N",
                   help="set the saved model's BatchNorm moving mean / variance to the "
                   "statistics of each layer's input over N un-augmented training crops "
                   "(default 0: keep the moving averages; with batch 1-2, 200 gives "
                   "population statistics instead of those of the last few crops)")


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.train import load_train_config, run_train

    model_config = None
    if args.depth is not None or args.base_filters is not None:
        model_config = dict(load_train_config(args.config)["model"])
        if args.depth is not None:
            model_config["depth"] = args.depth
            if len(model_config.get("pools", [])) != args.depth - 1:
                model_config.pop("pools", None)  # default pools for the new depth
        if args.base_filters is not None:
            model_config["base_filters"] = args.base_filters
    summary = run_train(
        args.raw, args.mask, out=args.out, val_raw=args.val_raw, val_mask=args.val_mask,
        config=args.config, model_config=model_config,
        normalization=tuple(args.normalization) if args.normalization else None,
        mixed_precision=args.mixed_precision, overwrite=args.overwrite,
        verbose=2 if args.quiet else 1, resume=args.resume, init=args.init,
        ignore_value=args.ignore_value, pair_weights=args.pair_weights,
        bn_recompute=args.bn_recompute, epochs=args.epochs, steps=args.steps, val_steps=args.val_steps,
        crop=tuple(args.crop) if args.crop else None, batch=args.batch, lr=args.lr,
        lr_schedule=args.lr_schedule, decay_epochs=args.decay_epochs, patience=args.patience,
        membrane_weight=args.membrane_weight, noise=args.noise, seed=args.seed,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0
