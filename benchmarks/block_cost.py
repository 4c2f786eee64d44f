"""What a tiny block costs in ``chunkseg predict``, and where the time goes.

    TF_NUM_INTRAOP_THREADS=1 python benchmarks/block_cost.py [--timepoints 150]

A series of 8 x 32 x 32 time points (one block each, as in ``series_scaling.py``) is
predicted with every default but the scheduler: dask's synchronous scheduler in one
process, the model loaded beforehand, so that CPU time is the cost of the work and a
profile sees every call.  Each measurement runs in a child process, because TensorFlow
chooses its kernels when it starts (``TF_ENABLE_ONEDNN_OPTS``):

* ``network``: the default model on the input one such block gives the network (halo 10
  clipped to 8 in z, padded to the pooling grid: 24 x 56 x 56), ``predict_on_batch`` with
  1 to 32 blocks per call: wall and CPU milliseconds per block;
* ``predict``: ``run_predict`` over the series under cProfile, one time point per task
  (``group`` 1) and the default grouping (:data:`chunkseg.engine.plan.GROUP_VOXELS`):
  wall and CPU seconds per block, split into the network calls (``run_model``), the
  read with halo (``mirror_region``), the writes (``_write_block``), the graph
  building of the write path (``_Plan.groups``) and the rest (dask scheduling, the
  manifests, progress log);
* ``cluster``: the same on the LocalCluster the command line opens (one worker, two dask
  threads, two backend threads), one time point per task against the default grouping,
  alternated: wall, client CPU and worker CPU seconds per block.

Both with TensorFlow's oneDNN kernels off (its default on this AVX2 CPU) and on (what
:func:`chunkseg.engine.backend.configure_backend` sets).  CPU seconds are the figures to
compare on a shared machine; the load is recorded beside them.

Writes ``benchmarks/results/block_cost.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BATCHES = (1, 4, 16)
#: profiled functions: (row name, file suffix, function name)
PARTS = (("network call", "engine/backend.py", "run_model"),
         ("read with halo", "engine/predict.py", "mirror_region"),
         ("write", "engine/blocks.py", "_write_block"),
         ("graph building", "engine/blocks.py", "groups"))


def _network(batches=BATCHES, rounds: int = 5) -> list[dict]:
    """ms per block of ``predict_on_batch`` on 24 x 56 x 56 inputs, ``b`` per call."""
    import numpy as np

    from chunkseg.engine.backend import run_model
    from chunkseg.engine.predict import get_model

    model = get_model(_default_path())[0]
    rows = []
    for b in batches:
        x = np.random.default_rng(0).random((b, 24, 56, 56, 1), dtype=np.float32)
        run_model(model, x)
        walls, cpus = [], []
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), time.process_time()
            run_model(model, x)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        rows.append({"batch": b, "wall_ms_per_block": 1e3 * sorted(walls)[rounds // 2] / b,
                     "cpu_ms_per_block": 1e3 * sorted(cpus)[rounds // 2] / b})
    return rows


def _default_path() -> str:
    from chunkseg.model.io import DEFAULT_MODEL

    return str(DEFAULT_MODEL)


def _profiled_run(raw: Path, out: Path, group_voxels: int | None) -> dict:
    """run_predict of ``raw`` under cProfile on the sync scheduler; seconds per part.

    ``group_voxels``: :data:`chunkseg.engine.plan.GROUP_VOXELS` for this run (None: the
    default).
    """
    import cProfile
    import pstats

    import dask

    import chunkseg.engine.plan as plan

    from chunkseg.pipeline.predict import run_predict

    default = plan.GROUP_VOXELS
    plan.GROUP_VOXELS = group_voxels or default
    prof = cProfile.Profile()
    with dask.config.set(scheduler="sync"):
        t0, c0 = time.perf_counter(), time.process_time()
        prof.enable()
        summary = run_predict(raw, out=out, progress=False)
        prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    plan.GROUP_VOXELS = default
    stats = pstats.Stats(prof).stats
    parts = {}
    for name, suffix, func in PARTS:
        parts[name] = sum(v[3] for (file, _line, fn), v in stats.items()
                          if fn == func and file.endswith(suffix))
    n = summary["blocks_written"]
    return {"group": summary["group"], "blocks": n, "wall_s": wall, "cpu_s": cpu,
            "wall_s_per_block": wall / n, "cpu_s_per_block": cpu / n,
            "parts_s_per_block": {k: v / n for k, v in parts.items()},
            "rest_s_per_block": (wall - sum(parts.values())) / n,
            "tile": summary["tile"], "halo": summary["halo"], "batch": summary["batch"]}


def _cluster_runs(raw: Path, tmp: Path, groupings: list[int | None], rounds: int) -> list:
    """``run_predict`` on the command line's LocalCluster (``layout="model"``: one worker,
    two dask threads, two backend threads), the groupings alternated round by round:
    wall, client CPU and worker CPU seconds per block."""
    import shutil

    import chunkseg.engine.plan as plan
    from chunkseg.engine.cluster import get_client
    from chunkseg.pipeline.predict import run_predict

    default = plan.GROUP_VOXELS
    rows = []
    with get_client(layout="model", quiet=True) as client:
        run_predict(raw, out=tmp / "warm-cluster.zarr", progress=False, timepoints="0:2",
                    client=client)
        for r in range(rounds):
            for g in (groupings if r % 2 == 0 else groupings[::-1]):
                plan.GROUP_VOXELS = g or default
                out = tmp / f"cluster-{g}-{r}.zarr"
                w0 = client.run(time.process_time)
                t0, c0 = time.perf_counter(), time.process_time()
                summary = run_predict(raw, out=out, progress=False, client=client)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                w1 = client.run(time.process_time)
                n = summary["blocks_written"]
                rows.append({"group": summary["group"], "round": r, "wall_s_per_block": wall / n,
                             "client_cpu_s_per_block": cpu / n,
                             "worker_cpu_s_per_block": sum(w1[k] - w0[k] for k in w1) / n,
                             "load": os.getloadavg()[0]})
                shutil.rmtree(out)
    plan.GROUP_VOXELS = default
    return rows


def child(timepoints: int) -> dict:
    """Everything measured in this process (its TensorFlow kernels fixed at start)."""
    from series_scaling import make_inputs

    from chunkseg.engine.predict import get_model

    get_model(_default_path())  # configures the backend (threads, kernels) and loads
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    with tempfile.TemporaryDirectory(prefix="block-cost-") as tmp:
        inputs = make_inputs(Path(tmp), timepoints)
        _profiled_run(inputs["raw"], Path(tmp) / "warm.zarr", None)  # first traces
        runs = [_profiled_run(inputs["raw"], Path(tmp) / f"g{g}.zarr", g)
                for g in (1, None)]
        cluster = _cluster_runs(inputs["raw"], Path(tmp), [1, None] if onednn else [1],
                                rounds=4 if onednn else 2)
    return {"network": _network(), "predict": runs, "cluster": cluster,
            "load_average": list(os.getloadavg())}


def run(timepoints: int) -> dict:
    """One child per oneDNN setting; their results side by side."""
    from load import LoadProbe, machine

    out = {"timepoints": timepoints, "threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
           "machine": machine(), "runs": {}}
    for onednn in ("0", "1"):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "2"}
        with LoadProbe() as probe:
            res = subprocess.run([sys.executable, __file__, "--child", str(timepoints)],
                                 env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-3000:])
        out["runs"][onednn] = {**json.loads(res.stdout.strip().splitlines()[-1]),
                               **probe.summary()}
        print(json.dumps(out["runs"][onednn]), flush=True)
    return out


def table(result: dict) -> str:
    """Markdown tables of a :func:`run` result."""
    lines = [f"Series of {result['timepoints']} time points 8 x 32 x 32, sync scheduler, "
             f"TF intra-op threads {result['threads']}; load average before / after each "
             "child in the last rows.", "",
             "| oneDNN | blocks per call | wall ms / block | CPU ms / block |",
             "| --- | --- | --- | --- |"]
    for k, r in result["runs"].items():
        for n in r["network"]:
            lines.append(f"| {'on' if k == '1' else 'off'} | {n['batch']} | "
                         f"{n['wall_ms_per_block']:.1f} | {n['cpu_ms_per_block']:.1f} |")
    names = [p[0] for p in PARTS]
    lines += ["", "| oneDNN | time points per task | wall s / block | CPU s / block | "
              + " | ".join(names) + " | rest | load |",
              "| --- " * (6 + len(names)) + "|"]
    for k, r in result["runs"].items():
        for p in r["predict"]:
            lines.append(
                f"| {'on' if k == '1' else 'off'} | {p['group']} | {p['wall_s_per_block']:.4f} "
                f"| {p['cpu_s_per_block']:.4f} | "
                + " | ".join(f"{p['parts_s_per_block'][n]:.4f}" for n in names)
                + f" | {p['rest_s_per_block']:.4f} | {r['load_before']:.1f} / "
                f"{r['load_after']:.1f} |")
    lines += ["", "LocalCluster as the command line opens it (1 worker, 2 dask threads, 2 TF "
              "threads), medians over the rounds (runs alternated):", "",
              "| oneDNN | time points per task | wall s / block | client CPU s / block | "
              "worker CPU s / block | runs | load |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, r in result["runs"].items():
        for g in sorted({c["group"] for c in r["cluster"]}):
            rows = [c for c in r["cluster"] if c["group"] == g]
            med = {key: statistics.median(c[key] for c in rows) for key in (
                "wall_s_per_block", "client_cpu_s_per_block", "worker_cpu_s_per_block", "load")}
            lines.append(f"| {'on' if k == '1' else 'off'} | {g} | {med['wall_s_per_block']:.4f} "
                         f"| {med['client_cpu_s_per_block']:.4f} | "
                         f"{med['worker_cpu_s_per_block']:.4f} | {len(rows)} | "
                         f"{med['load']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timepoints", type=int, default=150)
    args = parser.parse_args()
    result = run(args.timepoints)
    from common import write_results

    RESULTS.mkdir(exist_ok=True)
    write_results(RESULTS / "block_cost", table(result), result)


if __name__ == "__main__":
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
