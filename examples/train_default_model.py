"""Train the default model (``chunkseg/models/default.keras``): resumable, seeded.

Data (:mod:`default_model_data`): the real ovule (hand-drawn labels), the real organoid
t1..t5 (labels by the authors' network), the wide synthetic domain and renders of the
real tissue geometry; every raw scaled to uint8 by the default normalization
(:func:`chunkseg.ops.robust_range.robust_range`).  ``--hold-out`` names the sources kept
out of training ENTIRELY (default: the ovule, whose hand-drawn labels are the best judge).

Training: depth-3 U-Net (base 8; the shipped default's architecture), initialised from
``--init`` (a ``.keras`` file, default: the packaged default) or from scratch
(``--init none``); random ``--crop`` crops, membrane-biased, augmented with flips, y-x
rotations, intensity (window / gamma / contrast / offset / 8-bit requantization,
:mod:`chunkseg.ops.augment_intensity`) and noise; class-weighted BCE + soft Dice; Adam.

Checkpoints (``--ckpt`` folder): after every ``--steps-per-epoch`` steps
``last_train.keras`` (weights + optimizer state) and ``state.json`` (step counter,
history); every ``--keep-every`` epochs an inference copy ``step_NNNNN.keras`` with chunkseg
metadata (``chunkseg predict --model`` loads it).  Running the same command again
resumes from ``last_train.keras`` with the same data stream (crop ``i`` depends only on
``(seed, i)``), until ``--total-steps`` or the ``--until`` UTC time.

Run (one thread; the machine is shared)::

    nice -n 10 env TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        python examples/train_default_model.py --ckpt training/default --until 19:30
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
from default_model_data import LABELS_FROM, build_sources  # noqa: E402

MODEL = {"depth": 3, "base_filters": 8, "pools": [[1, 2, 2], [2, 2, 2]], "kernel_size": 3,
         "dropout": 0.0, "batchnorm": True, "bn_momentum": 0.9}
INTENSITY = True  # chunkseg.ops.augment_intensity.INTENSITY_RANGES


def _parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="out/default_model", help="cached data (not committed)")
    ap.add_argument("--ckpt", default="training/default", help="checkpoint folder (committed)")
    ap.add_argument("--hold-out", nargs="*", default=["ovule"],
                    choices=["ovule", "organoid", "synthetic"])
    ap.add_argument("--only", nargs="*", default=None,
                    help="train on these volumes only (e.g. organoid_t1), for fine-tuning")
    ap.add_argument("--init", default="default", help="'default', a .keras file or 'none'")
    ap.add_argument("--crop", type=int, nargs=3, default=[24, 96, 96])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--membrane-weight", type=float, default=2.0)
    ap.add_argument("--steps-per-epoch", type=int, default=20)
    ap.add_argument("--keep-every", type=int, default=5, help="epochs between kept copies")
    ap.add_argument("--total-steps", type=int, default=4000)
    ap.add_argument("--until", default=None, help="stop after this UTC time (HH:MM)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-synth", type=int, default=16)
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
    sources = build_sources(work, args.n_synth)
    names = {"ovule": ["ovule"], "organoid": [f"organoid_t{t}" for t in range(1, 6)],
             "synthetic": [f"synth{i:02d}" for i in range(args.n_synth)]
             + [f"tissue_render{k}" for k in range(3)]}
    groups, used = {}, {}
    for src, plist in sources.items():
        if src in args.hold_out:
            continue
        keep = [(p, v) for p, v in zip(plist, names[src]) if args.only is None or v in args.only]
        for p, v in keep:
            groups.setdefault("tissue_render" if v.startswith("tissue") else src, []).append(p)
        if keep:
            used[src] = {"volumes": [v for _, v in keep], "labels": LABELS_FROM[src]}
    if not groups:
        raise SystemExit("no training volume left after --hold-out / --only")
    return _balanced(groups, args.crop), used


def _model(args, ckpt: Path):
    import keras

    from chunkseg.model.io import load_model, resolve_model
    from chunkseg.model.losses import membrane_loss
    from chunkseg.model.unet import UNetConfig, build_unet

    last = ckpt / "last_train.keras"
    if last.exists():
        return keras.models.load_model(last), True
    model = build_unet(UNetConfig.from_dict(MODEL))
    if args.init != "none":
        src, _ = load_model(resolve_model(args.init))
        model.set_weights(src.get_weights())
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=membrane_loss(
        args.membrane_weight))
    return model, False


def _metadata(args, used: dict, state: dict) -> dict:
    from chunkseg.model.unet import UNetConfig, flops_per_voxel, pooling_factor, receptive_field
    from chunkseg.ops.robust_range import ROBUST_PERCENTILES

    cfg = UNetConfig.from_dict(MODEL)
    return {
        "config": cfg.to_dict(),
        "normalization": {"input": "scale_to_uint8(raw, low, high) / 255",
                          "method": "robust_percentiles", "percentiles": list(ROBUST_PERCENTILES),
                          "ignore_zero": True},
        "voxel_size": None, "crop": list(args.crop),
        "receptive_field": list(receptive_field(cfg)),
        "pooling_factor": list(pooling_factor(cfg)), "flops_per_voxel": flops_per_voxel(cfg),
        "input": "float32 (batch, z, y, x, 1): 8-bit normalised raw / 255",
        "output": "membrane probability, sigmoid, float32 (batch, z, y, x, 1)",
        "training": {"sources": used, "held_out": args.hold_out, "init": args.init,
                     "steps": state["step"], "crop": list(args.crop), "batch": args.batch,
                     "lr": args.lr, "membrane_weight": args.membrane_weight,
                     "augment": "flips, y-x quarter turns, intensity (augment_intensity), "
                                "noise low", "seed": args.seed,
                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }


def _past(until: str | None) -> bool:
    if not until:
        return False
    now = datetime.now(timezone.utc)
    h, m = (int(v) for v in until.split(":"))
    return (now.hour, now.minute) >= (h, m)


def main(argv=None) -> None:
    args = _parse(argv)
    work, ckpt = Path(args.work), Path(args.ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs, used = _pairs(args, work)
    print(f"data ready in {time.perf_counter() - t0:.0f} s: {len(pairs)} volumes, {used}",
          flush=True)
    import keras

    from chunkseg.augment import CropSampler, make_dataset
    from chunkseg.model.io import save_model

    state_f = ckpt / "state.json"
    state = json.loads(state_f.read_text()) if state_f.exists() else \
        {"step": 0, "epoch": 0, "history": [], "args": vars(args)}
    keras.utils.set_random_seed(args.seed + state["epoch"])
    model, resumed = _model(args, ckpt)
    print(("resumed at step %d" % state["step"]) if resumed else "new training", flush=True)
    sampler = CropSampler(pairs, crop=args.crop, seed=args.seed, membrane_bias=0.6)
    while state["step"] < args.total_steps and not _past(args.until):
        ds = make_dataset(sampler, batch=args.batch, augment=True, noise="low",
                          n=args.steps_per_epoch * args.batch, start=state["step"] * args.batch,
                          augment_options={"intensity": INTENSITY})
        t1 = time.perf_counter()
        hist = model.fit(ds, epochs=1, verbose=0, shuffle=False)
        sec = time.perf_counter() - t1
        state["step"] += args.steps_per_epoch
        state["epoch"] += 1
        loss = float(hist.history["loss"][-1])
        vox = args.steps_per_epoch * args.batch * int(np.prod(args.crop))
        state["history"].append({"step": state["step"], "loss": round(loss, 5),
                                 "seconds": round(sec, 1), "voxels_per_s": round(vox / sec)})
        model.save(ckpt / ".last_train.tmp.keras")
        (ckpt / ".last_train.tmp.keras").replace(ckpt / "last_train.keras")
        state_f.write_text(json.dumps(state, indent=1))
        if state["epoch"] % args.keep_every == 0:
            save_model(model, ckpt / f"step_{state['step']:05d}.keras",
                       metadata=_metadata(args, used, state))
        print(f"step {state['step']}: loss {loss:.4f}, {sec:.0f} s "
              f"({vox / sec:.0f} voxels/s)", flush=True)
    save_model(model, ckpt / "last.keras", metadata=_metadata(args, used, state))
    print(f"stopped at step {state['step']} after {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
