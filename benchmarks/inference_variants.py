"""Where the default model's inference time goes on this CPU, and what changes it.

    python benchmarks/inference_variants.py [--tile 54 152 152] [--rounds 5] [--big]

Each TensorFlow setting that is fixed when TensorFlow starts runs in its own child
process: the kernels (``TF_ENABLE_ONEDNN_OPTS`` 0: Eigen, TensorFlow's default on CPUs
without AVX512-VNNI / BF16 / AMX such as this AVX2 EPYC; 1: oneDNN, what chunkseg's
prediction sets) and the intra-op threads (1 and 2).  Inside a child, the call paths
are timed alternately, call by call, with the order flipped each round (so a change of
machine load hits all of them), median per call:

* ``predict_on_batch``: what ``chunkseg predict`` calls (:func:`chunkseg.engine.backend.run_model`);
* ``tf.function``: ``model(x, training=False)`` in a cached ``tf.function``;
* ``BN folded``: the same U-Net rebuilt without BatchNorm, its scale and shift folded
  into the convolution weights and bias (:func:`chunkseg.model.folding.fold_batchnorm`,
  what ``chunkseg predict`` runs in float32);
* ``XLA``: ``tf.function(jit_compile=True)`` (Eigen, one thread only);
* ``bfloat16``: the ``mixed_bfloat16`` copy ``--precision bfloat16`` predicts with (one
  thread only).

Per op: one traced call (TensorFlow v1 session on the frozen graph, ``FULL_TRACE``
step statistics), time per op type and per convolution (with its FLOPs, so GFLOP/s per
layer).  ``--big``: also the default 150 x 280 x 280 tile, Eigen against oneDNN, with
the peak memory of one call.  Every variant's probability is compared with
``predict_on_batch`` under Eigen (max |difference|).

Writes ``benchmarks/results/inference_variants.{json,md}``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _variants(model, meta, x, extras: list[str]) -> dict:
    import tensorflow as tf

    from chunkseg.engine.backend import run_model
    from chunkseg.model.folding import fold_batchnorm
    from chunkseg.model.precision import with_precision

    def fn(m, jit=False):
        f = tf.function(lambda t: m(t, training=False), jit_compile=jit, reduce_retracing=True)
        return lambda: f(tf.constant(x)).numpy()

    fold = fold_batchnorm(model, meta)[0]
    out = {"predict_on_batch": lambda: run_model(model, x), "tf.function": fn(model),
           "BN folded": fn(fold)}
    if "XLA" in extras:
        out["XLA"] = fn(model, jit=True)
        out["XLA + BN folded"] = fn(fold, jit=True)
    if "bfloat16" in extras:
        bf16 = with_precision(model, meta, "bfloat16")
        out["bfloat16"] = lambda: run_model(bf16, x)
    return out


def _paired(variants: dict, rounds: int) -> dict:
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for r in range(rounds):
        for k in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            variants[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: {"wall_s": statistics.median(wall[k]), "cpu_s": statistics.median(cpu[k])}
            for k in variants}


def _level_scale(model, pools) -> dict[str, float]:
    """Voxels of each layer's output per input voxel (from its level)."""
    scales = [1.0]
    for p in pools:
        scales.append(scales[-1] / float(np.prod(p)))
    out = {}
    for layer in model.layers:
        name = layer.name
        level = (len(pools) if name.startswith("bottom") else
                 int(name[3]) if name[:3] in ("enc", "dec") else
                 int(name[2]) if name.startswith("up") else 0)
        out[name] = scales[level]
    return out


def per_op(model, meta, shape) -> dict:
    """One FULL_TRACE call: ms per op type and per convolution node, with GFLOP/s."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    f = tf.function(lambda t: model(t, training=False))
    frozen = convert_variables_to_constants_v2(
        f.get_concrete_function(tf.TensorSpec((1, None, None, None, 1), tf.float32)))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(frozen.graph.as_graph_def(), name="")
    x = np.random.default_rng(0).random((1, *shape, 1), dtype=np.float32)
    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "1"))
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                      inter_op_parallelism_threads=1)
    by_op, by_layer = collections.Counter(), collections.Counter()
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        feed = {frozen.inputs[0].name: x}
        sess.run(frozen.outputs[0].name, feed)
        for _ in range(2):
            meta_run = tf.compat.v1.RunMetadata()
            sess.run(frozen.outputs[0].name, feed, run_metadata=meta_run, options=tf.compat.v1.
                     RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE))
            for dev in meta_run.step_stats.dev_stats:
                for ns in dev.node_stats:
                    label = ns.timeline_label
                    op = label.split(" = ")[1].split("(")[0] if " = " in label else ns.node_name
                    ms = (ns.op_end_rel_micros - ns.op_start_rel_micros) / 2e3
                    by_op[op] += ms
                    parts = ns.node_name.split("/")
                    if "Conv3D" in op and len(parts) > 1:
                        by_layer[parts[1].rsplit("_", 1)[0]] += ms
    scale = _level_scale(model, meta["config"]["pools"])
    vox = float(np.prod(shape))
    flops = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv3D":
            k, cin = np.prod(layer.kernel.shape[:3]), layer.kernel.shape[3]
            flops[layer.name] = 2 * k * cin * layer.filters * vox * scale[layer.name]
    layers = {}
    for name, ms in by_layer.items():  # a fused node is named after its ReLU or BN
        conv = re.sub(r"_(relu|bn)(\d)$", r"_conv\2", name)
        gf = flops[conv] / (ms / 1e3) / 1e9 if conv in flops and ms else None
        layers[conv] = {"ms": ms, "gflop_per_s": gf}
    return {"shape": list(shape), "ms_by_op": dict(by_op.most_common()), "layers": layers,
            "total_ms": sum(by_op.values())}


def child(shape, rounds: int, big: bool, extras: list[str]) -> dict:
    """Timings of every call path in this process's TensorFlow setting."""
    from chunkseg.engine.backend import configure_backend, run_model
    from chunkseg.model.io import DEFAULT_MODEL, load_model

    configure_backend()  # threads and kernels from this child's environment
    model, meta = load_model(DEFAULT_MODEL)  # as saved: with its BatchNorms
    x = np.random.default_rng(0).random((1, *shape, 1), dtype=np.float32)
    variants = _variants(model, meta, x, extras)
    outputs = {k: np.asarray(v(), dtype=np.float32) for k, v in variants.items()}
    res = {"shape": list(shape), "paired": _paired(variants, rounds),
           "outputs_file": None, "per_op": per_op(model, meta, shape)}
    tmp = Path(tempfile.mkdtemp(prefix="variants-"))
    np.savez(tmp / "out.npz", **{k.replace(" ", "_").replace(".", "_"): v
                                 for k, v in outputs.items()})
    res["outputs_file"] = str(tmp / "out.npz")
    if big:
        xb = np.random.default_rng(1).random((1, 150, 280, 280, 1), dtype=np.float32)
        run_model(model, x)
        before = _vmhwm_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        run_model(model, xb)
        first = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        run_model(model, xb)
        res["big"] = {"tile": [150, 280, 280], "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0, "first_call_s": first,
                      "peak_rss_mb": _vmhwm_mb(), "rss_before_mb": before}
    res["load_average"] = list(os.getloadavg())
    return res


#: (kernels, TF_ENABLE_ONEDNN_OPTS, intra-op threads, extra call paths); XLA and bfloat16
#: only where they are measured (both are several times slower on this AVX2 CPU)
SETTINGS = (("Eigen", "0", "1", ["XLA", "bfloat16"]), ("oneDNN", "1", "1", ["bfloat16"]),
            ("Eigen", "0", "2", []), ("oneDNN", "1", "2", []))


def run(shape, rounds: int, big: bool, xla_bf16: bool = True) -> dict:
    from load import LoadProbe, machine

    out = {"tile": list(shape), "rounds": rounds, "machine": machine(), "children": []}
    for kernels, onednn, threads, extras in SETTINGS:
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_NUM_INTRAOP_THREADS": threads,
               "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        with LoadProbe() as probe:
            res = subprocess.run([sys.executable, __file__, "--child", json.dumps(
                [list(shape), rounds, big and threads == "2", extras if xla_bf16 else []])],
                env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-3000:])
        row = {"kernels": kernels, "threads": int(threads),
               **json.loads(res.stdout.strip().splitlines()[-1]), **probe.summary()}
        out["children"].append(row)
        print(json.dumps({k: row[k] for k in ("kernels", "threads", "paired")}), flush=True)
    ref = np.load(out["children"][0]["outputs_file"])["predict_on_batch"]
    for row in out["children"]:
        outs = np.load(row.pop("outputs_file"))
        row["max_abs_diff_to_eigen"] = {k: float(np.abs(outs[k] - ref).max()) for k in outs}
    return out


def table(result: dict) -> str:
    base = result["children"][0]["paired"]["predict_on_batch"]
    vox = float(np.prod(result["tile"]))
    lines = [f"Tile {result['tile']} (batch 1), default model, median of {result['rounds']} "
             "paired calls; speed-up = Eigen / 1 thread / predict_on_batch CPU time ÷ the "
             "row's.", "",
             "| kernels | threads | call path | ms / call | CPU ms / call | k voxels / CPU s "
             "| speed-up (CPU) | max abs Δp vs Eigen | load |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in result["children"]:
        for k, v in row["paired"].items():
            key = k.replace(" ", "_").replace(".", "_")
            lines.append(
                f"| {row['kernels']} | {row['threads']} | {k} | {1e3 * v['wall_s']:.0f} | "
                f"{1e3 * v['cpu_s']:.0f} | {vox / v['cpu_s'] / 1e3:.0f} | "
                f"{base['cpu_s'] / v['cpu_s']:.2f} | "
                f"{row['max_abs_diff_to_eigen'].get(key, float('nan')):.1e} | "
                f"{row['load_before']:.1f} / {row['load_after']:.1f} |")
    lines += ["", "Per op (one traced call, ms; the convolutions with their GFLOP/s):", ""]
    for row in result["children"][:2]:
        op = row["per_op"]
        lines.append(f"- {row['kernels']}, {row['threads']} thread(s), total "
                     f"{op['total_ms']:.0f} ms: " + ", ".join(
                         f"{k} {v:.0f}" for k, v in list(op["ms_by_op"].items())[:6]))
        lines.append("  - " + ", ".join(
            f"{k} {v['ms']:.1f} ms" + (f" ({v['gflop_per_s']:.1f} GFLOP/s)"
                                       if v["gflop_per_s"] else "")
            for k, v in sorted(op["layers"].items(), key=lambda kv: -kv[1]["ms"])))
    for row in result["children"]:
        if "big" in row:
            b = row["big"]
            lines.append(f"- tile 150 x 280 x 280, {row['kernels']}, {row['threads']} threads: "
                         f"{b['wall_s']:.1f} s per call ({150 * 280 * 280 / b['wall_s'] / 1e6:.2f}"
                         f" M voxels/s wall), {b['cpu_s']:.1f} CPU s, peak RSS "
                         f"{b['peak_rss_mb']:.0f} MB (before the call {b['rss_before_mb']:.0f})")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        shape, rounds, big, extras = json.loads(sys.argv[2])
        print(json.dumps(child(tuple(shape), rounds, big, extras)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, nargs=3, default=(54, 152, 152))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", action="store_true")
    parser.add_argument("--no-xla-bf16", action="store_true",
                        help="skip the XLA and bfloat16 call paths (slow on AVX2)")
    args = parser.parse_args()
    result = run(tuple(args.tile), args.rounds, args.big, not args.no_xla_bf16)
    from common import write_results

    RESULTS.mkdir(exist_ok=True)
    write_results(RESULTS / "inference_variants", table(result), result)


if __name__ == "__main__":
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
