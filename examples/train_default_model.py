"""Train the default model (``chunkseg/models/default.keras``): resumable, seeded.

Data (:mod:`default_model_data`): the real ovule (hand-drawn labels), the real organoid
t1..t5 (labels by the authors' network), the wide synthetic domain and renders of the
real tissue geometry; every raw scaled to uint8 by the default normalization
(:func:`chunkseg.ops.robust_range.robust_range`).  ``--hold-out`` names the sources kept
out of training ENTIRELY (default: the ovule, whose hand-drawn labels are the best judge).
Groups of volumes (each real source, the synthetic generator, the tissue renders) get
per-pair sampler weights so that each offers about as many crop positions (the sampler
draws pairs in proportion to their positions times their weight; ``--balance repeat``
repeats pairs instead, as the runs v2-v5 did); ``--weight organoid 0.5`` gives a group
half the positions of the others.  Validation (model selection by loss): two held-out wide
synthetic volumes, never a real one.

Training: :func:`chunkseg.pipeline.train.run_train` with ``resume=True`` (``chunkseg train
--resume``): depth-3 U-Net (base 8), initialised from ``--init`` (``chunkseg train
--init``); random ``24 x 96 x 96`` crops, membrane-biased, augmented with flips, y-x
rotations, intensity (window / gamma / contrast / offset / 8-bit requantization,
:mod:`chunkseg.ops.augment_intensity`; ``--gamma`` widens the gamma range, ``--curve``
adds sigmoid tone curves) and noise; class-weighted BCE + soft Dice; Adam at a constant
rate, or (``--schedule cosine``) decaying to 1 % over all ``--epochs`` (the decay length:
it must not change when the run is continued).  It runs in chunks of ``--chunk`` epochs; after
each, ``<ckpt>/snapshots/eNNN.keras`` holds the weights of that moment (for the held-out
curve) and ``<ckpt>/default_training/checkpoint.npz`` the weights, Adam state and epoch.
With ``--bn-recompute N`` the last snapshot is also written as ``eNNN_bnN.keras``, its
BatchNorm statistics recomputed over N un-augmented training crops
(:func:`chunkseg.model.batchnorm.recompute_batchnorm`; ``examples/recompute_bn.py`` does it
for any snapshot).  Running the same command again continues where it stopped (a kill loses at most one
epoch), until ``--epochs`` or the ``--until`` UTC time.

Run (one thread; the machine is shared)::

    nice -n 10 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python examples/train_default_model.py --ckpt training/default --until 19:25
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from default_model_data import (IGNORE, IGNORING, LABELS_FROM, build_sources,  # noqa: E402
                                source_names, validation_pairs)

MODEL = {"depth": 3, "base_filters": 8, "pools": [[1, 2, 2], [2, 2, 2]], "kernel_size": 3,
         "dropout": 0.0, "batchnorm": True, "bn_momentum": 0.9}
TRAIN = {"crop": [24, 96, 96], "batch": 1, "steps": 25, "val_steps": 4, "lr": 3e-4,
         "lr_schedule": "constant", "patience": 0, "membrane_weight": 2.0, "membrane_bias": 0.6,
         "noise": "low", "augment": True, "intensity": True, "seed": 0}


def _parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="out/default_model", help="cached data (not committed)")
    ap.add_argument("--ckpt", default="training/default", help="checkpoint folder (committed)")
    ap.add_argument("--hold-out", nargs="*", default=["ovule"],
                    choices=["ovule", "organoid", "synthetic"])
    ap.add_argument("--only", nargs="*", default=None,
                    help="train on these volumes only (e.g. organoid_t1), for fine-tuning")
    ap.add_argument("--init", default="default", help="'default', a .keras file or 'none'")
    ap.add_argument("--crop", type=int, nargs=3, default=TRAIN["crop"])
    ap.add_argument("--batch", type=int, default=TRAIN["batch"])
    ap.add_argument("--lr", type=float, default=TRAIN["lr"])
    ap.add_argument("--membrane-weight", type=float, default=TRAIN["membrane_weight"])
    ap.add_argument("--steps", type=int, default=TRAIN["steps"], help="steps per epoch")
    ap.add_argument("--epochs", type=int, default=200, help="total epochs")
    ap.add_argument("--chunk", type=int, default=8, help="epochs between snapshots")
    ap.add_argument("--until", default=None, help="stop after this UTC time (HH:MM)")
    ap.add_argument("--seed", type=int, default=TRAIN["seed"])
    ap.add_argument("--n-synth", type=int, default=16)
    ap.add_argument("--base-filters", type=int, default=MODEL["base_filters"],
                    help="filters of the first level (the size table: 4 / 8 / 16)")
    ap.add_argument("--mask", choices=["thick", "aniso", "aniso-ignore", "network-ignore"],
                    default="thick",
                    help="training masks: membrane_mask, or training_mask (lateral width "
                         "independent of z anisotropy; 'aniso-ignore' leaves the voxels "
                         "marked only through z neighbours out of the loss; 'network-ignore' "
                         "does that for the labels a network made, the organoid's, and keeps "
                         "every other volume's own mask); use a --work of its own per choice")
    ap.add_argument("--gamma", type=float, nargs=2, default=None,
                    help="gamma range of the intensity augmentation (default 0.6 1.7)")
    ap.add_argument("--curve", type=float, default=None, metavar="P",
                    help="probability of a sigmoid tone curve (chunkseg.ops.augment_intensity."
                         "sigmoid_curve) in the intensity augmentation (default none)")
    ap.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                    help="learning rate: constant, or cosine decay to 1 %% over --epochs")
    ap.add_argument("--weight", nargs=2, action="append", default=[], metavar=("GROUP", "W"),
                    help="relative share of crop positions of a group (organoid, ovule, "
                         "synthetic, tissue_render; default 1 each); repeatable")
    ap.add_argument("--balance", choices=["weights", "repeat"], default="weights",
                    help="balance the groups by per-pair sampler weights, or (the runs "
                         "v2-v5; give it to resume them) by repeating pairs")
    ap.add_argument("--bn-recompute", type=int, default=0, metavar="N",
                    help="write the LAST snapshot also as eNNN_bnN.keras, its BatchNorm "
                         "statistics recomputed over N un-augmented training crops "
                         "(default 0: none)")
    ap.add_argument("--broad", action="store_true",
                    help="add the broad-wall renders of tissue_labels.tif (broad_renders)")
    ap.add_argument("--lightsheet", action="store_true",
                    help="add the light-sheet-like renders of tissue_labels.tif "
                         "(lightsheet_renders), a group of their own")
    args = ap.parse_args(argv)
    args.weight = _weights(ap, args.weight)
    return args


GROUPS = ("organoid", "ovule", "synthetic", "tissue_render", "lightsheet")


def _weights(ap: argparse.ArgumentParser, pairs: list[list[str]]) -> dict[str, float]:
    out = {}
    for group, value in pairs:
        try:
            w = float(value)
        except ValueError:
            w = -1.0
        if group not in GROUPS or not w > 0:
            ap.error(f"--weight {group} {value}: expected a group among {list(GROUPS)} and a "
                     "weight > 0")
        out[group] = w
    return out


def _positions(pair, crop) -> int:
    return int(np.prod([max(0, n - c + 1) for n, c in zip(pair[0].shape[-3:], crop)]))


def _balanced(groups: dict[str, list], crop, weights: dict[str, float] | None = None,
              repeat: bool = False) -> tuple[list, list[float] | None, dict[str, float]]:
    """Balance the groups: each offers crop positions in proportion to its weight (default 1
    each: about as many; the sampler draws pairs in proportion to their positions times
    their pair weight).  Per-pair weights (the group with the fewest positions per weight
    gets 1), or with ``repeat`` each group's pairs repeated a whole number of times (the
    runs v2-v5 were trained so; weights None).  Returns the pairs, their weights and each
    group's share of all crop positions."""
    weights = weights or {}
    counts = {g: sum(_positions(p, crop) for p in plist) for g, plist in groups.items()}
    share = {g: weights.get(g, 1.0) / max(counts[g], 1) for g in groups}
    low = min(share.values())
    reps = {g: max(1, round(share[g] / low)) if repeat else share[g] / low for g in groups}
    total = sum(reps[g] * counts[g] for g in groups)
    shares = {g: round(reps[g] * counts[g] / total, 3) for g in groups}
    if repeat:
        return [p for g, plist in groups.items() for p in plist * reps[g]], None, shares
    return ([p for plist in groups.values() for p in plist],
            [reps[g] for g, plist in groups.items() for _ in plist], shares)


def _group(source: str, volume: str) -> str:
    """The sampling group of ``volume``: light-sheet renders, other renders, or its source."""
    if volume.startswith("lightsheet_render"):
        return "lightsheet"
    return "tissue_render" if "_render" in volume else source


def _pairs(args, work: Path) -> tuple[list, list[float] | None, dict, dict]:
    sources = build_sources(work, args.n_synth, args.mask, args.broad, args.lightsheet)
    names = source_names(args.n_synth, args.broad, args.lightsheet)
    groups, used = {}, {}
    for src, plist in sources.items():
        if src in args.hold_out:
            continue
        keep = [(p, v) for p, v in zip(plist, names[src]) if args.only is None or v in args.only]
        for p, v in keep:
            groups.setdefault(_group(src, v), []).append(p)
        if keep:
            used[src] = {"volumes": [v for _, v in keep], "labels": LABELS_FROM[src],
                         "mask": args.mask}
    if not groups:
        raise SystemExit("no training volume left after --hold-out / --only")
    return (*_balanced(groups, args.crop, args.weight, args.balance == "repeat"), used)


def _snapshot(ckpt: Path, out: Path, dest: Path, bn: tuple | None = None) -> None:
    """Save the checkpoint's current (last) weights as an inference model with ``out``'s
    metadata and the default normalization record; with ``bn = (sampler, n)`` also
    ``<dest stem>_bn<n>.keras``, its BatchNorm statistics recomputed over ``n`` crops."""
    from chunkseg.model.batchnorm import recompute_batchnorm, sampler_batches
    from chunkseg.model.checkpoint import read_checkpoint
    from chunkseg.model.io import load_model, save_model

    model, meta = load_model(out)
    _, groups = read_checkpoint(ckpt / f"{out.stem}_training" / "checkpoint.npz")
    model.set_weights(groups["weights"])
    meta = {**_with_normalization(meta), "bn_statistics": "moving averages of the training"}
    save_model(model, dest, metadata=meta)
    if bn is not None:
        recompute_batchnorm(model, sampler_batches(*bn))
        save_model(model, dest.with_name(f"{dest.stem}_bn{bn[1]}.keras"), metadata={
            **meta, "bn_statistics": f"recomputed over {bn[1]} un-augmented training crops "
                                     "(chunkseg.model.batchnorm.recompute_batchnorm)"})


def _bn_sampler(args, pairs, pair_weights):
    """The training crop sampler (its volumes and weights) for BatchNorm statistics."""
    from chunkseg.model.training_data import CropSampler

    return CropSampler(pairs, crop=args.crop, seed=args.seed,
                       membrane_bias=TRAIN["membrane_bias"], weights=pair_weights,
                       ignore_value=IGNORE if args.mask in IGNORING else None)


def _with_normalization(meta: dict) -> dict:
    from chunkseg.ops.robust_range import ROBUST_PERCENTILES

    return {**meta, "normalization": {
        "input": "scale_to_uint8(raw, low, high) / 255", "method": "robust_percentiles",
        "percentiles": list(ROBUST_PERCENTILES), "ignore_zero": True,
        "training_volumes": "each scaled by its own robust range (examples/"
                            "default_model_data.py)"}}


def _past(until: str | None) -> bool:
    if not until:
        return False
    now = datetime.now(timezone.utc)
    h, m = (int(v) for v in until.split(":"))
    return (now.hour, now.minute) >= (h, m)


def main(argv=None) -> None:
    args = _parse(argv)
    work, ckpt = Path(args.work), Path(args.ckpt)
    (ckpt / "snapshots").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs, pair_weights, shares, used = _pairs(args, work)
    val = validation_pairs(work, args.n_synth, args.mask)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {len(pairs)} pairs, crop shares "
          f"{shares}, {used}", flush=True)
    from chunkseg.model.io import load_model, save_model
    from chunkseg.pipeline.train import run_train

    out = ckpt / "default.keras"
    state_f = ckpt / "default_training" / "history.json"
    done = len(json.loads(state_f.read_text())["history"]["loss"]) if state_f.exists() else 0
    train = {**TRAIN, "crop": list(args.crop), "batch": args.batch, "lr": args.lr,
             "membrane_weight": args.membrane_weight, "steps": args.steps, "seed": args.seed}
    intensity = {**({"gamma": list(args.gamma)} if args.gamma else {}),
                 **({"curve_p": args.curve} if args.curve else {})}
    if intensity:
        train["intensity"] = intensity
    if args.schedule == "cosine":
        train.update(lr_schedule="cosine", decay_epochs=args.epochs)
    target = done
    while target < args.epochs and not _past(args.until):
        target = min(args.epochs, target + args.chunk)
        summary = run_train([p[0] for p in pairs], [p[1] for p in pairs], out=out,
                            val_raw=[p[0] for p in val], val_mask=[p[1] for p in val],
                            config={"model": {**MODEL, "base_filters": args.base_filters},
                                    "train": {**train, "epochs": target}},
                            init=None if args.init == "none" else args.init, resume=True,
                            ignore_value=IGNORE if args.mask in IGNORING else None,
                            pair_weights=pair_weights, overwrite=True, verbose=0)
        model, meta = load_model(out)
        save_model(model, out, metadata=_with_normalization(
            {**meta, "training": {**meta["training"], "sources": used, "crop_shares": shares,
                                  "held_out": args.hold_out}}))
        last = (target >= args.epochs or _past(args.until)) and args.bn_recompute
        _snapshot(ckpt, out, ckpt / "snapshots" / f"e{summary['epochs_run']:03d}.keras",
                  (_bn_sampler(args, pairs, pair_weights), args.bn_recompute) if last else None)
        print(f"epoch {summary['epochs_run']} ({summary['steps_done']} steps): best "
              f"val_loss {summary['best'].get('val_loss', float('nan')):.4f} at epoch "
              f"{summary['best_epoch']}; {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"stopped after {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
