"""Train the default model (``chunkseg/models/default.keras``): resumable, seeded.

Data (:mod:`default_model_data`): the real ovule (hand-drawn labels), the real organoid
t1..t5 (labels by the authors' network), the wide synthetic domain and renders of the
real tissue geometry; every raw scaled to uint8 by the default normalization
(:func:`chunkseg.ops.robust_range.robust_range`).  ``--hold-out`` names the sources kept
out of training ENTIRELY (default: the ovule, whose hand-drawn labels are the best judge).
Groups of volumes (each real source, the synthetic generator, the tissue renders) are
repeated so that each offers about as many crop positions (the sampler draws pairs in
proportion to their positions).  Validation (model selection by loss): two held-out wide
synthetic volumes, never a real one.

Training: :func:`chunkseg.pipeline.train.run_train` with ``resume=True`` (``chunkseg train
--resume``): depth-3 U-Net (base 8), initialised from ``--init`` (``chunkseg train
--init``); random ``24 x 96 x 96`` crops, membrane-biased, augmented with flips, y-x
rotations, intensity (window / gamma / contrast / offset / 8-bit requantization,
:mod:`chunkseg.ops.augment_intensity`) and noise; class-weighted BCE + soft Dice; Adam
at a constant rate.  It runs in chunks of ``--chunk`` epochs; after
each, ``<ckpt>/snapshots/eNNN.keras`` holds the weights of that moment (for the held-out
curve) and ``<ckpt>/default_training/checkpoint.npz`` the weights, Adam state and epoch.
Running the same command again continues where it stopped (a kill loses at most one
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
from default_model_data import (IGNORE, LABELS_FROM, build_sources,  # noqa: E402
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
    ap.add_argument("--mask", choices=["thick", "aniso", "aniso-ignore"], default="thick",
                    help="training masks: membrane_mask, or training_mask (lateral width "
                         "independent of z anisotropy; 'aniso-ignore' leaves the voxels "
                         "marked only through z neighbours out of the loss); use a --work "
                         "of its own per choice")
    ap.add_argument("--gamma", type=float, nargs=2, default=None,
                    help="gamma range of the intensity augmentation (default 0.6 1.7)")
    ap.add_argument("--broad", action="store_true",
                    help="add the broad-wall renders of tissue_labels.tif (broad_renders)")
    return ap.parse_args(argv)


def _positions(pair, crop) -> int:
    return int(np.prod([max(0, n - c + 1) for n, c in zip(pair[0].shape[-3:], crop)]))


def _balanced(groups: dict[str, list], crop) -> list:
    """Repeat each group's pairs so every group offers about as many crop positions
    (the sampler draws pairs in proportion to their positions)."""
    counts = {g: sum(_positions(p, crop) for p in plist) for g, plist in groups.items()}
    top = max(counts.values())
    out = []
    for g, plist in groups.items():
        out += plist * max(1, round(top / max(counts[g], 1)))
    return out


def _pairs(args, work: Path) -> tuple[list, dict]:
    sources = build_sources(work, args.n_synth, args.mask, args.broad)
    names = source_names(args.n_synth, args.broad)
    groups, used = {}, {}
    for src, plist in sources.items():
        if src in args.hold_out:
            continue
        keep = [(p, v) for p, v in zip(plist, names[src]) if args.only is None or v in args.only]
        for p, v in keep:
            groups.setdefault("tissue_render" if "_render" in v else src, []).append(p)
        if keep:
            used[src] = {"volumes": [v for _, v in keep], "labels": LABELS_FROM[src],
                         "mask": args.mask}
    if not groups:
        raise SystemExit("no training volume left after --hold-out / --only")
    return _balanced(groups, args.crop), used


def _snapshot(ckpt: Path, out: Path, dest: Path) -> None:
    """Save the checkpoint's current (last) weights as an inference model with ``out``'s
    metadata and the default normalization record."""
    from chunkseg.model.checkpoint import read_checkpoint
    from chunkseg.model.io import load_model, save_model

    model, meta = load_model(out)
    _, groups = read_checkpoint(ckpt / f"{out.stem}_training" / "checkpoint.npz")
    model.set_weights(groups["weights"])
    save_model(model, dest, metadata=_with_normalization(meta))


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
    pairs, used = _pairs(args, work)
    val = validation_pairs(work, args.n_synth, args.mask)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {len(pairs)} pairs, {used}",
          flush=True)
    from chunkseg.model.io import load_model, save_model
    from chunkseg.pipeline.train import run_train

    out = ckpt / "default.keras"
    state_f = ckpt / "default_training" / "history.json"
    done = len(json.loads(state_f.read_text())["history"]["loss"]) if state_f.exists() else 0
    train = {**TRAIN, "crop": list(args.crop), "batch": args.batch, "lr": args.lr,
             "membrane_weight": args.membrane_weight, "steps": args.steps, "seed": args.seed}
    if args.gamma:
        train["intensity"] = {"gamma": list(args.gamma)}
    target = done
    while target < args.epochs and not _past(args.until):
        target = min(args.epochs, target + args.chunk)
        summary = run_train([p[0] for p in pairs], [p[1] for p in pairs], out=out,
                            val_raw=[p[0] for p in val], val_mask=[p[1] for p in val],
                            config={"model": MODEL, "train": {**train, "epochs": target}},
                            init=None if args.init == "none" else args.init, resume=True,
                            ignore_value=IGNORE if args.mask == "aniso-ignore" else None,
                            overwrite=True, verbose=0)
        model, meta = load_model(out)
        save_model(model, out, metadata=_with_normalization(
            {**meta, "training": {**meta["training"], "sources": used,
                                  "held_out": args.hold_out}}))
        _snapshot(ckpt, out, ckpt / "snapshots" / f"e{summary['epochs_run']:03d}.keras")
        print(f"epoch {summary['epochs_run']} ({summary['steps_done']} steps): best "
              f"val_loss {summary['best'].get('val_loss', float('nan')):.4f} at epoch "
              f"{summary['best_epoch']}; {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"stopped after {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
