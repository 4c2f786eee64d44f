"""Prediction throughput: bare model vs ``chunkseg predict`` vs the paper's naive loop.

    python benchmarks/predict_throughput.py [--out bench_predict] [--size Z Y X] [--cluster]

All in one process and one run, so ratios are taken side by side on a shared machine:

* matmul peak: float32 ``numpy`` matmul GFLOP/s (best of 3);
* bare model: the network alone on in-memory tiles of exactly the tile/batch
  ``predict`` picks at 4x (voxels/s and GFLOP/s = voxels/s x the model's FLOPs per
  voxel), measured before and after the predict runs (mean; the pair shows the noise);
* ``chunkseg predict`` with its own defaults (block, memory budget; threads scheduler,
  model already loaded: steady state) at the size and at 4x the size: useful output
  voxels/s, its ratio to the bare model, the network voxels it spent per output voxel
  (halo + tile context: ``redundancy``) and the orchestration efficiency =
  (useful voxels/s x redundancy) / bare voxels/s; time and peak RSS (process +
  children) for the scaling row;
* the previous defaults (block 64 x 128 x 128, tile chosen for 1 GiB at 512 B/voxel,
  an eager ``model(x)`` per call instead of ``predict_on_batch``)
  on the 4x volume, with the bare model on *that* tile, so the change is measured
  side by side;
* the paper's naive loop on the 1x volume: in memory, 64 x 128 x 128 sub-volumes with a
  10-voxel overlap, one network call each, stitched by cropping half the overlap;
* ``--cluster``: the same predict on the default LocalCluster (includes worker start-up
  and loading TensorFlow/the model in the worker).

Writes ``predict_throughput.json`` and ``predict_throughput.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from common import (  # noqa: E402
    PeakRSS,
    bare_model,
    fmt,
    hardware,
    markdown_table,
    model_or_untrained,
    naive_loop,
)

def matmul_peak(n: int = 1024) -> float:
    """Best-of-3 float32 numpy matmul GFLOP/s."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        best = max(best, 3 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def make_input(path: Path, shape: tuple[int, int, int]) -> str:
    """A normalized (uint8, kind "normalized") smooth random volume, one time point."""
    import scipy.ndimage as ndi

    from chunkseg.io.store import create_image, mark_complete

    rng = np.random.default_rng(0)
    arr = create_image(path, shape=(1, *shape), dtype=np.uint8, overwrite=True,
                       attrs={"kind": "normalized", "normalization": {"low": 0, "high": 255}})
    for z0 in range(0, shape[0], 16):
        slab = ndi.gaussian_filter(rng.random((min(16, shape[0] - z0), *shape[1:])), 1.0)
        arr[0, z0:z0 + slab.shape[0]] = np.clip(slab * 510 - 127, 0, 255).astype(np.uint8)
    mark_complete(path)
    return str(path)


def spread_head(model: str, work: Path, x: np.ndarray) -> str:
    """A copy of a random-weights model whose output varies (logit std ~1 on ``x``).

    Untrained U-Nets give p = 0.5 +- 0.002 everywhere, which would make any deviation
    look small; random BatchNorm offsets and a rescaled 1x1x1 head make seams
    measurable (as ``tests/predict_helpers.py`` does for the tests).
    """
    from chunkseg.model import load_model, read_metadata, save_model

    import keras

    net, _ = load_model(model)
    rng = np.random.default_rng(0)
    for layer in net.layers:  # random BatchNorm offsets keep ReLUs alive
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, rng.normal(0, 0.5, beta.shape).astype(np.float32),
                               mean, var])
    p = np.clip(np.asarray(net(x[None, ..., None], training=False)), 1e-6, 1 - 1e-6)
    logit = np.log(p / (1 - p))
    head = net.get_layer("membrane")
    w, b = head.get_weights()
    k = 1.0 / max(float(logit.std()), 1e-12)
    head.set_weights([w * k, (b - logit.mean()) * k])
    return str(save_model(net, work / "spread.keras", metadata=read_metadata(model)))


def seams(model: str, work: Path, trained: bool, shape=(50, 70, 70),
          block=(32, 40, 40)) -> list[dict]:
    """Largest deviation of chunked prediction from the whole-volume pass, and where."""
    from chunkseg.io.store import open_array
    from chunkseg.pipeline.predict import run_predict

    inp = make_input(work / "in_seams.ome.zarr", shape)
    if not trained:
        model = spread_head(model, work, open_array(inp)[0, :32, :64, :64] / np.float32(255))
    kw = dict(model=model, overwrite=True, progress=False)
    found = []
    for halo in ("auto", 10):
        ref = run_predict(inp, out=work / "seam_ref.zarr", halo=halo, block=shape, tile=512,
                          **kw)
        s = run_predict(inp, out=work / "seam_chunked.zarr", halo=halo, block=block, **kw)
        a, b = open_array(work / "seam_chunked.zarr")[0], open_array(work / "seam_ref.zarr")[0]
        d = np.abs(a.astype(np.float64) - b)
        at = np.unravel_index(int(np.argmax(d)), d.shape)
        to_face = [int(min([abs(i - k) for k in range(bl, n, bl)] or [n]))
                   for i, bl, n in zip(at, block, shape)]
        found.append({"halo": s["halo"], "receptive_field": s["receptive_field"],
                      "max_abs_deviation": float(d.max()), "at_zyx": [int(i) for i in at],
                      "distance_to_nearest_block_face": to_face,
                      "mean_abs_deviation": float(d.mean()),
                      "voxels_over_1e-3": int((d > 1e-3).sum()),
                      "output_std": float(b.std()), "shape": shape, "block": block,
                      "tiles_chunked": s["tiles"], "tile_ref": ref["tile"]})
    return found


def run_predict_measured(inp: str, out: Path, model: str, *, cluster: bool = False,
                         **kw) -> dict[str, Any]:
    """``run_predict`` with peak memory: threads scheduler, or a LocalCluster (``cluster``)."""
    from chunkseg.engine.cluster import get_client
    from chunkseg.pipeline.predict import run_predict

    with PeakRSS() as mem, get_client(None if cluster else "threads", layout="model") as client:
        s = run_predict(inp, model=model, out=out, overwrite=True, progress=False,
                        client=client, **kw)
    s["peak_rss_mb"] = round(mem.peak_mb, 1)
    s["rss_increase_mb"] = round(mem.delta_mb, 1)
    return s


#: what ``run_predict`` used before the memory model was measured (issue 5's first
#: benchmark): block 64 x 128 x 128, a 1 GiB budget at an estimated 512 B per voxel,
#: an eager ``model(x)`` per network call
PREVIOUS = {"block": (64, 128, 128), "memory_gib": 1.0, "bytes_per_voxel": 512.0,
            "call": "eager"}


@contextlib.contextmanager
def previous_call():
    """Inside: every network call of predict is the previous eager ``model(x)``."""
    import keras

    import chunkseg.engine.predict as engine

    def eager(model, x):
        return np.array(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)

    current, engine.run_model = engine.run_model, eager
    try:
        yield
    finally:
        engine.run_model = current


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_predict")
    ap.add_argument("--size", nargs=3, type=int, default=(128, 256, 256), metavar=("Z", "Y", "X"),
                    help="small volume; the large one is 4x (y and x doubled)")
    ap.add_argument("--block", nargs=3, type=int, default=None, metavar=("Z", "Y", "X"),
                    help="predict block (default: predict's own default)")
    ap.add_argument("--memory", type=float, default=None, metavar="GIB",
                    help="predict's --memory (default: predict's own default)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--halo", default="10")
    ap.add_argument("--bare-seconds", type=float, default=4.0)
    ap.add_argument("--cluster", action="store_true", help="also run on a LocalCluster")
    ap.add_argument("--no-seams", action="store_true", help="skip the seam measurement")
    ap.add_argument("--no-previous", action="store_true",
                    help="skip the run with the previous defaults")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    halo = args.halo if args.halo == "auto" else int(args.halo)

    from chunkseg.engine.backend import configure_backend
    from chunkseg.engine.cluster import cpu_cores
    from chunkseg.engine.plan import resolve_halo
    from chunkseg.model.info import model_info

    cores = cpu_cores()
    configure_backend(cores)
    peak = matmul_peak()
    model, trained = model_or_untrained(out, args.model)
    info = model_info(model)
    small = tuple(args.size)
    large = (small[0], small[1] * 2, small[2] * 2)
    inputs = {k: make_input(out / f"in_{k}.ome.zarr", s) for k, s in (("1x", small), ("4x", large))}

    from chunkseg.engine.predict import ModelSpec
    from chunkseg.ops.tiling import choose_tile

    ModelSpec(model)(np.zeros((1, *info.pool, 1), np.float32))  # load once, outside timings
    hv = resolve_halo(halo, info.receptive)
    ctx = [min(h, r) for h, r in zip(hv, info.receptive)]
    prev_tile = choose_tile(tuple(min(b, s) for b, s in zip(PREVIOUS["block"], small)), halo=hv,
                            pool=info.pool, context=ctx,
                            bytes_per_voxel=PREVIOUS["bytes_per_voxel"],
                            budget_bytes=PREVIOUS["memory_gib"] * 2**30)
    kw = dict(halo=halo, block=args.block, memory_gib=args.memory)
    runs = {"1x": run_predict_measured(inputs["1x"], out / "pred_1x.ome.zarr", model, **kw)}
    bare_t: dict[str, list[float]] = {}

    def bare_on(name, t, b=1):  # bracket the predict runs: bare before and after
        bare_t.setdefault(name, []).append(bare_model(model, t, b, args.bare_seconds))

    big_plan = _plan_tile(inputs["4x"], info, **kw)
    tile = big_plan.tile
    bare_on("default", tile, big_plan.batch)
    runs["4x"] = run_predict_measured(inputs["4x"], out / "pred_4x.ome.zarr", model, **kw)
    prev = None
    if not args.no_previous:
        with previous_call():
            bare_on("previous", prev_tile)
            prev = run_predict_measured(inputs["4x"], out / "pred_prev_4x.ome.zarr", model,
                                        halo=halo, block=PREVIOUS["block"],
                                        tile=prev_tile, batch=1,
                                        memory_gib=PREVIOUS["memory_gib"])
            bare_on("previous", prev_tile)
    bare_on("default", tile, big_plan.batch)
    big = runs["4x"]
    if list(big["tile"]) != list(tile):
        raise RuntimeError(f"predict used tile {big['tile']}, the bare model ran on {tile}")
    bare = float(np.mean(bare_t["default"]))
    bare_prev = float(np.mean(bare_t["previous"])) if prev else None
    naive = naive_loop(model, inputs["1x"], info.pool)
    cluster = None
    if args.cluster:
        cluster = run_predict_measured(inputs["4x"], out / "pred_cluster.ome.zarr", model,
                                       halo=halo, block=args.block, memory_gib=args.memory,
                                       cluster=True)
    fpv = info.flops_per_voxel
    seam = [] if args.no_seams else seams(model, out, trained)

    def orch(s, ref):  # network voxels/s inside predict / bare network voxels/s
        return s["voxels_per_s"] * s["redundancy"] / ref

    rows = [
        ("machine", "matmul peak GFLOP/s", fmt(peak), f"numpy float32 1024², {cores} cores"),
        ("model", "FLOPs per voxel", fmt(fpv), f"{'trained default' if trained else 'untrained'} "
         f"{info.config.to_dict()}; receptive field {list(info.receptive)}, pool {list(info.pool)}"),
        ("bare", "voxels/s", fmt(bare), f"tile {list(tile)} batch {big_plan.batch} (the tile "
         "predict picks), in memory, mean of before/after"),
        ("bare", "GFLOP/s", fmt(bare * fpv / 1e9), f"{100 * bare * fpv / 1e9 / peak:.0f}% of peak"),
    ]
    measured = [(k, s, bare) for k, s in runs.items()]
    if prev:
        rows.append(("bare (previous tile)", "voxels/s", fmt(bare_prev),
                     f"tile {list(prev_tile)} batch 1, eager call, mean of before/after"))
        measured.append(("4x previous defaults", prev, bare_prev))
    for k, s, ref in measured:
        shape = large if k.startswith("4x") else small
        rows += [
            (f"predict {k}", "useful voxels/s", fmt(s["voxels_per_s"]),
             f"{'×'.join(map(str, shape))}, halo {s['halo']}, block {s['block']}, "
             f"tile {s['tile']}, {s['tiles']} tiles, memory {s.get('memory_gib', '-')} GiB"),
            (f"predict {k}", "ratio to bare", fmt(s["voxels_per_s"] / ref),
             f"redundancy {s['redundancy']} network voxels per output voxel; ideal "
             f"{1 / s['redundancy']:.2f}"),
            (f"predict {k}", "orchestration efficiency", fmt(orch(s, ref)),
             "network voxels/s in predict ÷ bare (I/O, dask, blending, halo copies)"),
            (f"predict {k}", "time s / peak RSS MB", f"{s['predict_seconds']:.1f} / "
             f"{s['peak_rss_mb']:.0f}", f"+{s['rss_increase_mb']:.0f} MB over the process"),
            (f"predict {k}", "GFLOP/s", fmt(s["voxels_per_s"] * s["redundancy"] * fpv / 1e9),
             "network FLOPs actually executed"),
        ]
    if prev:
        rows.append(("predict 4x", "default ÷ previous defaults",
                     fmt(big["voxels_per_s"] / prev["voxels_per_s"]), "same volume, "
                     "useful voxels/s"))
    rows += [("naive loop", "voxels/s", fmt(naive["voxels_per_s"]),
              f"1x volume, {naive['calls']} sub-volumes {naive['subvolume']}, overlap "
              f"{naive['overlap']}"),
             ("naive loop", "predict 1x ÷ naive",
              fmt(runs["1x"]["voxels_per_s"] / naive["voxels_per_s"]),
              "same volume; naive: not seam-free, whole volume in memory")]
    if cluster:
        rows.append(("LocalCluster 4x", "useful voxels/s", fmt(cluster["voxels_per_s"]),
                     f"{cluster['workers']} worker(s), {cluster['threads']} threads; "
                     f"incl. worker TF import + model load"))
    for m in seam:
        rows.append(("seams", f"max abs(chunked − whole) halo {m['halo']}",
                     f"{m['max_abs_deviation']:.2e}",
                     f"at (z,y,x) {tuple(m['at_zyx'])}, {m['distance_to_nearest_block_face']} "
                     f"voxels from the nearest block face; mean {m['mean_abs_deviation']:.1e}, "
                     f"{m['voxels_over_1e-3']} voxels > 1e-3; output std {m['output_std']:.3f}; "
                     f"RF {m['receptive_field'][0]}"))
    for name, v in bare_t.items():
        rows.append((f"bare ({name} tile)", "before / after voxels/s",
                     " / ".join(f"{x:,.0f}" for x in v), "machine noise bracket"))
    rows.append(("machine", "load average (1, 5, 15 min)",
                 " / ".join(f"{x:.1f}" for x in os.getloadavg()), "at the end of the run"))
    table = markdown_table(rows)
    result = {"hardware": hardware(), "load_average": os.getloadavg(), "matmul_gflops": peak,
              "model": {"path": model, "trained": trained, "config": info.config.to_dict(),
                        "flops_per_voxel": fpv, "receptive_field": info.receptive,
                        "pool": info.pool, "bytes_per_voxel": info.bytes_per_voxel},
              "bare_voxels_per_s": bare, "bare_runs": bare_t, "bare_previous": bare_prev,
              "seams": seam, "predict": runs, "previous": prev, "previous_settings": PREVIOUS,
              "naive": naive, "cluster": cluster, "sizes": {"1x": small, "4x": large},
              "rows": rows}
    (out / "predict_throughput.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "predict_throughput.md").write_text(table + "\n")
    print(table)
    return 0


def _plan_tile(inp: str, info, *, halo, block, memory_gib):
    """The block / tile / batch ``run_predict`` will choose for ``inp`` (its own planner)."""
    from chunkseg.io.store import open_volume
    from chunkseg.engine.cluster import memory_budget
    from chunkseg.engine.plan import plan_tiles, resolve_halo

    return plan_tiles(tuple(open_volume(inp).shape[1:]), info,
                      halo=resolve_halo(halo, info.receptive), block=block,
                      budget_bytes=memory_budget(memory_gib))


if __name__ == "__main__":
    sys.exit(main())
