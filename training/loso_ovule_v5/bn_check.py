"""Check: do the snapshot-to-snapshot swings come from BatchNorm's running statistics?

With batch 1 and momentum 0.9, BN's moving mean / variance average only the last ~10
training crops (each from one volume of one source).  This recomputes them for a model as
the plain average over ``--crops`` un-augmented training crops (the same volumes, crop and
membrane bias as the training; another seed), leaving every learned weight as it is, and
saves the result.  Training data only; the held-out ovule is never read here.

    TF_ENABLE_ONEDNN_OPTS=1 python training/loso_ovule_v5/bn_check.py \
        training/loso_ovule_v5/snapshots/e024.keras --out /tmp/e024_bn.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import train_default_model as recipe  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--crops", type=int, default=200)
    ap.add_argument("--work", default="out/loso_ovule_v3")
    args = ap.parse_args(argv)
    import keras

    from chunkseg.model.io import load_model, save_model
    from chunkseg.model.training_data import CropSampler

    targs = recipe._parse(["--work", args.work, "--hold-out", "ovule", "--mask", "aniso-ignore",
                           "--broad", "--weight", "organoid", "0.5", "--balance", "repeat"])
    pairs, _, shares, _ = recipe._pairs(targs, Path(args.work))
    sampler = CropSampler(pairs, crop=targs.crop, seed=7, membrane_bias=0.6, ignore_value=2)
    model, meta = load_model(args.model)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for k in range(args.crops):
        for layer in bns:
            layer.momentum = k / (k + 1)  # running plain average over the crops
        x = sampler.sample(k).raw[None, ..., None].astype(np.float32)
        model(x, training=True)
    for layer in bns:
        layer.momentum = 0.9
    save_model(model, args.out, metadata={**meta, "bn_statistics": f"recomputed over "
                                          f"{args.crops} un-augmented training crops"})
    print(f"{args.model}: BN statistics over {args.crops} crops (shares {shares}) -> {args.out}")


if __name__ == "__main__":
    main()
