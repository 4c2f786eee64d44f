"""Recompute a model's BatchNorm statistics over crops of a recipe's TRAINING data.

The training crop sampler of ``examples/train_default_model.py`` (same ``--work``,
``--hold-out``, ``--mask``, ``--broad``, ``--weight``, ``--balance``, ``--crop``, ``--seed``
arguments; held-out sources are never read), ``N`` un-augmented crops of it
(:func:`chunkseg.model.batchnorm.sampler_batches`), and
:func:`chunkseg.model.batchnorm.recompute_batchnorm`; the learned weights stay as they are.
The same as ``--bn-recompute N`` does for the last snapshot of a run, for a snapshot of a
run that was stopped before its end, or for an older model::

    python examples/recompute_bn.py training/loso_ovule_v7/snapshots/e120.keras \\
        --out training/loso_ovule_v7/snapshots/e120_bn200.keras --crops 200 -- \\
        --work out/loso_ovule_v3 --hold-out ovule --mask aniso-ignore --broad \\
        --weight organoid 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_default_model as recipe  # noqa: E402


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--crops", type=int, default=200)
    args = ap.parse_args(argv[:split])
    targs = recipe._parse(argv[split + 1:])
    pairs, pair_weights, shares, _ = recipe._pairs(targs, Path(targs.work))
    sampler = recipe._bn_sampler(targs, pairs, pair_weights)
    from chunkseg.model.batchnorm import recompute_batchnorm, sampler_batches
    from chunkseg.model.io import load_model, save_model

    model, meta = load_model(args.model)
    recompute_batchnorm(model, sampler_batches(sampler, args.crops))
    save_model(model, args.out, metadata={
        **meta, "bn_statistics": f"recomputed over {args.crops} un-augmented training crops "
                                 f"(chunkseg.model.batchnorm.recompute_batchnorm; crop shares "
                                 f"{shares})"})
    print(f"{args.model}: BatchNorm statistics over {args.crops} training crops (shares "
          f"{shares}) -> {args.out}")


if __name__ == "__main__":
    main()
