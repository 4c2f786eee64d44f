"""Calibrate ``chunkseg plan``: the default model's throughput on this machine.

Measures, and writes to ``chunkseg/models/default_throughput.json``:

* ``network_voxels_per_s``: network-input voxels per second of one worker running the
  packaged default model with the tile and batch ``chunkseg predict`` picks for a
  251 x 1024 x 1024 time point (TensorFlow on all cores).  On a quiet machine the wall
  figure; on a loaded one (:mod:`benchmarks.load`) the CPU-time figure
  ``voxels x threads / CPU seconds`` (what the cores deliver when not shared), flagged
  ``estimated_from_cpu_time``.
* ``block_overhead_s``: wall time per block of the whole engine around the network
  (graph per time point, read with halo, write, completion manifest) with a trivial
  predictor, on a series of small time points (threaded scheduler).
* ``worker_runtime_bytes``: resident memory of a process with the backend and the
  model loaded, after a first small call.

Usage: ``python benchmarks/calibrate_plan.py [--calls 2]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "chunkseg" / "models" / "default_throughput.json"
FULL = (251, 1024, 1024)


def network(calls: int) -> dict:
    """Throughput of the default model on the tile/batch planned for a full time point."""
    from load import LoadProbe
    from chunkseg.engine.cluster import memory_budget
    from chunkseg.engine.plan import plan_tiles, resolve_halo
    from chunkseg.engine.predict import ModelSpec
    from chunkseg.model.info import model_info

    info = model_info("default")
    halo = resolve_halo(10, info.receptive)
    plan = plan_tiles(FULL, info, halo=halo, budget_bytes=memory_budget(None))
    threads = len(__import__("os").sched_getaffinity(0))
    spec = ModelSpec(info.path, threads=threads)
    x = np.random.default_rng(0).random((plan.batch, *plan.tile, 1), dtype=np.float32)
    import psutil

    spec(np.zeros((1, 16, 16, 16, 1), np.float32))  # load the backend and the model
    runtime = psutil.Process().memory_info().rss
    spec(x)  # build and warm up at the planned shape
    with LoadProbe(expected_cpu=threads) as probe:
        for _ in range(calls):
            spec(x)
    voxels = calls * x[..., 0].size
    wall_v, cpu_v = voxels / probe.wall, voxels * threads / max(probe.cpu, 1e-9)
    return {"tile": list(plan.tile), "batch": plan.batch, "threads": threads,
            "calls": calls, "wall_voxels_per_s": round(wall_v), "cpu_voxels_per_s": round(cpu_v),
            "network_voxels_per_s": round(cpu_v if probe.loaded else wall_v),
            "estimated_from_cpu_time": probe.loaded, "probe": probe.summary(),
            "worker_runtime_bytes": int(runtime)}


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def overhead(n_t: int = 40) -> dict:
    """Engine wall time per block around a trivial predictor (small time points)."""
    import dask
    import dask.array as da

    from load import LoadProbe
    from chunkseg.engine.blocks import Series, write_volume
    from chunkseg.engine.predict import predict_array
    from chunkseg.io.store import create_image, open_volume

    shape = (8, 32, 32)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.zarr"
        create_image(raw, shape=(n_t, *shape), dtype=np.uint16)
        write_volume(da.zeros((n_t, *shape), dtype=np.uint16, chunks=(1, *shape)), raw,
                     progress=False)
        vol = open_volume(raw, require_complete=False)

        def slab(a, b):
            return da.stack([predict_array(vol.data[t], _identity, block=shape, halo=10,
                                           tile=(28, 52, 52), pool=(2, 2, 2), receptive=10)
                             for t in range(a, b)])

        out = Path(tmp) / "out.zarr"
        create_image(out, shape=(n_t, *shape), dtype=np.float32)
        with dask.config.set(scheduler="threads"), LoadProbe() as probe:
            write_volume(Series((n_t, *shape), np.float32, slab), out, progress=False)
    return {"block_overhead_s": round(probe.wall / n_t, 4), "blocks": n_t,
            "block": list(shape), "probe": probe.summary()}


def main(argv: list[str] | None = None) -> int:
    from load import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2)
    args = parser.parse_args(argv)
    net = network(args.calls)
    ovh = overhead()
    result = {
        "model": "default",
        "measured": datetime.now(timezone.utc).isoformat(timespec="minutes"),
        "how": "benchmarks/calibrate_plan.py (its docstring says what each figure is)",
        "network_voxels_per_s": net["network_voxels_per_s"],
        "block_overhead_s": ovh["block_overhead_s"],
        "worker_runtime_bytes": net.pop("worker_runtime_bytes"),
        "network": net, "overhead": ovh, "machine": machine(),
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    t0 = time.perf_counter()
    code = main()
    print(f"calibrated in {time.perf_counter() - t0:.0f} s; {math.nan if code else 'ok'}")
    sys.exit(code)
