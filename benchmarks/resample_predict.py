"""Cost of predicting at the model's voxel size: the per-block resampling path against the plain one.

One synthetic volume, the packaged default model, the threaded scheduler, ``halo`` = the
receptive field.  Three runs, alternated ``--rounds`` times (medians reported):

- ``plain``: :func:`chunkseg.engine.predict.predict_array` (no resampling);
- ``resampled, f = 1``: :func:`chunkseg.engine.resample_predict.predict_array_resampled`
  with factor 1 on every axis: the same network voxels, plus the two trilinear
  resamplings and a halo two voxels wider: the overhead of the path itself;
- ``resampled, f = (1, 1.3, 1.3)``: a model at 1.3x coarser lateral voxels: fewer network
  voxels (the model grid is smaller), plus the resamplings.

Usage::

    TF_NUM_INTRAOP_THREADS=2 python benchmarks/resample_predict.py [--shape Z Y X] [--rounds 2]

Writes ``benchmarks/results/resample_predict.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs=3, type=int, default=(48, 192, 192))
    p.add_argument("--block", nargs=3, type=int, default=(48, 128, 128))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "resample_predict"))
    args = p.parse_args(argv)
    import dask.array as da

    from chunkseg.engine.predict import ModelSpec, predict_array
    from chunkseg.engine.resample_predict import predict_array_resampled
    from chunkseg.model.info import model_info
    from chunkseg.synth import synth_volume

    info = model_info("default")
    spec = ModelSpec(info.path)
    v = synth_volume(tuple(args.shape), seed=0).raw
    vol = (np.clip((v - v.min()) / (np.percentile(v, 99.99) - v.min()), 0, 1) * 255)
    x = da.from_array(vol.astype(np.uint8), chunks=tuple(args.block))
    halo, tile = info.receptive, (48, 128, 128)
    common = dict(tile=tile, pool=info.pool, receptive=info.receptive, scale=1 / 255)
    runs = {
        "plain": lambda: predict_array(x, spec, block=args.block, halo=halo, **common),
        "resampled, f = 1": lambda: predict_array_resampled(
            x, spec, factor=(1.0, 1.0, 1.0), block=args.block, context=halo, **common),
        "resampled, f = (1, 1.3, 1.3)": lambda: predict_array_resampled(
            x, spec, factor=(1.0, 1.3, 1.3), block=args.block, context=halo, **common),
    }
    spec(np.zeros((1, *tile, 1), np.float32))  # load the model outside the timings
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, build in runs.items():
            t0 = time.perf_counter()
            build().compute(scheduler="threads", num_workers=2)
            seconds[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    voxels = math.prod(args.shape)
    rows = ["| run | seconds (median) | output voxels/s | time / plain |", "| --- | --- | --- | --- |"]
    rows += [f"| {k} | {med[k]:.1f} | {voxels / med[k]:.0f} | {med[k] / med['plain']:.2f} |"
             for k in runs]
    note = (f"\nvolume {tuple(args.shape)}, blocks {tuple(args.block)}, halo {tuple(halo)} model "
            f"voxels, tile {tile}, default model; 1-min load {[round(v, 1) for v in loads]} on "
            f"{os.cpu_count()} cores (a shared machine); {args.rounds} alternating rounds.\n")
    print("\n".join(rows) + note)
    result = {"shape": list(args.shape), "block": list(args.block), "halo": list(halo),
              "tile": list(tile), "seconds": seconds, "median": med, "load_1min": loads,
              "hardware": hardware()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text("\n".join(rows) + note)
    return result


if __name__ == "__main__":
    main()
