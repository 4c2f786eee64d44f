"""The measurements of ``benchmarks/run.py``, one function per table section.

Each section takes the shared :class:`Context` and returns a dict with ``rows``
(``(measure, value, note)`` for the table) plus raw numbers for ``results.json``;
it raises :class:`common.Skip` when its dependency is absent.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common import PeakRSS, Skip, bare_model, model_or_untrained, naive_loop

#: one synthetic time point at scale 1 (z, y, x); scale k multiplies y·x by k
BASE_SHAPE = (32, 128, 128)
#: the paper's full light-sheet volume, predicted end to end when a GPU is present
PAPER_SHAPE = (251, 1024, 1024)
#: beside every figure of the classical baseline: what it is and is not
ACME_LIKE = ("ACME-like, not ACME: filter scales in voxels (not the original's µm settings), "
             "chunkseg's own watershed")
#: the original ACME (C++) built on this 2-core machine: 64 x 256 x 256 in 88 s, 2 threads
ORIGINAL_ACME = {"shape": (64, 256, 256), "seconds": 88.0, "threads": 2, "voting_share": 0.88}


def original_acme_seconds(voxels: int) -> float:
    """Seconds the original ACME would take for ``voxels`` at its reference rate."""
    return voxels * ORIGINAL_ACME["seconds"] / math.prod(ORIGINAL_ACME["shape"])
#: the paper: 11 volumes in 56 min 37 s (U-Net, one Titan V), ACME 3.67 h
PAPER_UNET_S, PAPER_ACME_S, PAPER_VOLUMES = 56 * 60 + 37, 3.67 * 3600, 11


def _scaled(scale: int) -> tuple[int, int, int]:
    f = int(round(math.sqrt(scale)))
    return BASE_SHAPE[0], BASE_SHAPE[1] * f, BASE_SHAPE[2] * f


@dataclass
class Context:
    """Shared state: work folder, data sets made once, runs reused across sections."""

    work: Path
    quick: bool
    real: Path
    gpus: list[str] = field(default_factory=list)
    model_path: str | None = None
    trained: bool = True
    data: dict[Any, dict[str, str]] = field(default_factory=dict)
    runs: dict[Any, dict[str, Any]] = field(default_factory=dict)

    @property
    def scales(self) -> list[int]:
        return [1, 4] if self.quick else [1, 4, 16]

    def synth(self, scale: int) -> dict[str, str]:
        """Synthetic raw / labels / mask and the normalised raw at ``scale``."""
        if scale not in self.data:
            from chunkseg.pipeline.normalize import run_normalize
            from chunkseg.pipeline.synth import run_synth

            d = self.work / f"synth_{scale}x"
            outputs = ("raw", "labels", "mask") if scale == 1 else ("raw",)
            paths = run_synth(d, shape=_scaled(scale) if scale else PAPER_SHAPE, seed=scale,
                              outputs=outputs, progress=False)
            run_normalize(paths["raw"], d / "norm.ome.zarr", progress=False)
            self.data[scale] = {**paths, "norm": str(d / "norm.ome.zarr")}
        return self.data[scale]

    def model(self) -> str:
        """The default model, else an untrained one of the default configuration."""
        if self.model_path is None:
            self.model_path, self.trained = model_or_untrained(self.work)
        return self.model_path

    def predict(self, inp: str, key: Any, *, method: str = "unet",
                cluster: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """``run_predict`` with peak memory, cached by key: on the threads scheduler, or on
        a LocalCluster of the method's layout with ``cluster`` (workers, threads)."""
        if (method, key) not in self.runs:
            from chunkseg.engine.cluster import get_client
            from chunkseg.pipeline.predict import run_predict

            if method == "unet":
                kw.setdefault("model", self.model())
            out = self.work / f"pred_{method}_{key}.ome.zarr"
            layout = "filters" if method == "acme" else "model"
            with PeakRSS() as mem, get_client(
                    None if cluster is not None else "threads", layout=layout,
                    **(cluster or {})) as client:
                s = run_predict(inp, out=out, method=method, overwrite=True, progress=False,
                                client=client, **kw)
            s["peak_rss_mb"] = round(mem.peak_mb, 1)
            s["rss_increase_mb"] = round(mem.delta_mb, 1)
            self.runs[(method, key)] = s
        return self.runs[(method, key)]


def _tf():
    from chunkseg.engine.backend import quiet_import_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_import_stderr():
        import tensorflow as tf

    return tf


def sec_machine(ctx: Context) -> dict[str, Any]:
    """Measured float32 matmul peak (TensorFlow, the library the U-Net runs on)."""
    tf = _tf()
    ctx.gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    n = 4096 if ctx.gpus else 1024
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.linalg.matmul(a, b).numpy()
    best = 0.0
    for _ in range(3):
        reps = 5
        t = time.perf_counter()
        for _ in range(reps):
            c = tf.linalg.matmul(a, b)
        c.numpy()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    ctx.runs["matmul_gflops"] = best
    dev = ctx.gpus[0] if ctx.gpus else "CPU"
    return {"matmul_gflops": round(best, 1), "n": n, "device": dev,
            "rows": [("matmul peak GFLOP/s (float32)", best, f"{n}×{n}, {dev}")]}


def sec_io(ctx: Context) -> dict[str, Any]:
    """TIFF → OME-Zarr and normalize throughput with peak RSS."""
    import tifffile

    from chunkseg.pipeline.convert import run_convert
    from chunkseg.pipeline.normalize import run_normalize

    shape = (64, 512, 512) if ctx.quick else (128, 1024, 1024)
    tif = ctx.work / "io.tif"
    rng = np.random.default_rng(0)
    with tifffile.TiffWriter(tif) as tw:
        for _ in range(shape[0]):
            tw.write(rng.integers(100, 4000, size=shape[1:], dtype=np.uint16), contiguous=True)
    mb = math.prod(shape) * 2 / 1e6
    with PeakRSS() as m1:
        run_convert(str(tif), ctx.work / "io_raw.ome.zarr", voxel_size=(0.4, 0.1, 0.1),
                    progress=False)
    with PeakRSS() as m2:
        run_normalize(ctx.work / "io_raw.ome.zarr", ctx.work / "io_norm.ome.zarr", progress=False)
    res = {"shape": shape, "mb": mb, "convert_s": m1.seconds, "normalize_s": m2.seconds,
           "convert_peak_rss_mb": m1.peak_mb, "normalize_peak_rss_mb": m2.peak_mb}
    note = f"{'×'.join(map(str, shape))} uint16, {mb:.0f} MB"
    res["rows"] = [
        ("convert MB/s", mb / m1.seconds, note),
        ("convert peak RSS MB (+increase)", m1.peak_mb, f"+{m1.delta_mb:.0f} MB over the process"),
        ("normalize MB/s", mb / m2.seconds, "exact percentiles + uint8 write"),
        ("normalize peak RSS MB (+increase)", m2.peak_mb, f"+{m2.delta_mb:.0f} MB"),
    ]
    return res


def _plan(ctx: Context, shape) -> tuple[Any, tuple, int]:
    from chunkseg.engine.cluster import memory_budget
    from chunkseg.engine.plan import plan_tiles
    from chunkseg.model.info import model_info

    info = model_info(ctx.model())
    # what run_predict plans with the threads scheduler (its default memory budget)
    plan = plan_tiles(shape, info, halo=(10, 10, 10), budget_bytes=memory_budget())
    return info, plan.tile, plan.batch


def sec_unet_bare(ctx: Context) -> dict[str, Any]:
    """The network alone on in-memory tiles (the tile/batch ``predict`` picks at 4×)."""
    info, tile, batch = _plan(ctx, _scaled(4))  # the ratio predict / bare is taken at 4×
    vps = bare_model(ctx.model(), tile, batch, 2.0 if ctx.quick else 10.0)
    gflops = vps * info.flops_per_voxel / 1e9
    peak = ctx.runs.get("matmul_gflops")
    ctx.runs["bare_vps"] = vps
    note = f"tile {'×'.join(map(str, tile))}, batch {batch}, {info.flops_per_voxel/1e3:.1f} kFLOP/voxel"
    rows = [("bare U-Net voxels/s", vps, note), ("bare U-Net GFLOP/s", gflops,
            f"{100 * gflops / peak:.0f}% of the matmul peak" if peak else "")]
    return {"voxels_per_s": vps, "gflops": gflops, "tile": tile, "batch": batch,
            "flops_per_voxel": info.flops_per_voxel, "trained_model": ctx.trained, "rows": rows}


def sec_predict(ctx: Context) -> dict[str, Any]:
    """``chunkseg predict`` end to end (normalised input → float32 store) at 1× and 4×."""
    rows, res = [], {}
    for scale in (1, 4):
        d = ctx.synth(scale)
        s = ctx.predict(d["norm"], scale)
        res[f"{scale}x"] = s
        rows.append((f"predict voxels/s ({scale}×)", s["voxels_per_s"],
                     f"{'×'.join(map(str, _scaled(scale)))}, tile {s['tile']}, halo {s['halo']}, "
                     f"{s['workers']} worker(s)"))
    bare = ctx.runs.get("bare_vps")
    s4 = res["4x"]
    if bare:
        rows.append(("predict / bare U-Net", s4["voxels_per_s"] / bare, "useful output per "
                     "network voxel, incl. halo, I/O, blending (4×)"))
    full = math.prod(PAPER_SHAPE) / s4["voxels_per_s"]
    rows.append(("predict time per 251×1024×1024 volume (extrapolated)", f"{full / 60:.1f} min",
                 f"paper: {PAPER_UNET_S / PAPER_VOLUMES / 60:.1f} min on a Titan V"))
    if not ctx.trained:
        rows.append(("model", "untrained", "no packaged default model: speed only"))
    res["rows"] = rows
    return res


def sec_naive(ctx: Context) -> dict[str, Any]:
    """The paper's loop: overlapping sub-volumes in memory, one call each, on the 4× volume."""
    from chunkseg.model.info import model_info

    d = ctx.synth(4)
    res = naive_loop(ctx.model(), d["norm"], model_info(ctx.model()).pool)
    vps = res["voxels_per_s"]
    ctx.runs["naive_vps"] = vps
    rows = [("naive loop voxels/s (4×)", vps, f"{res['calls']} sub-volumes "
             f"{'×'.join(map(str, res['subvolume']))}, overlap {res['overlap']}, one network "
             "call each, in memory")]
    pred = ctx.runs.get(("unet", 4))
    if pred:
        rows.append(("predict / naive loop", pred["voxels_per_s"] / vps, "same volume"))
    return {**res, "rows": rows}


def sec_acme(ctx: Context) -> dict[str, Any]:
    """The ACME-style baseline on the same engine (threads), 1× volume."""
    d = ctx.synth(1)
    s = ctx.predict(d["norm"], 1, method="acme")
    rows = [("ACME-like voxels/s (1×)", s["voxels_per_s"],
             f"halo {s['halo']}, z resampled ×{0.4 / 0.1:.0f} to isotropic, {s['acme']['field']} "
             f"voting; {ACME_LIKE}")]
    ref = ORIGINAL_ACME
    rows.append(("original ACME voxels/s (reference, not re-run)",
                 math.prod(ref["shape"]) / ref["seconds"],
                 "C++ ACME, measured once on an earlier machine of this project: "
                 f"{'×'.join(map(str, ref['shape']))} in "
                 f"{ref['seconds']:.0f} s with {ref['threads']} threads, tensor voting "
                 f"{ref['voting_share']:.0%} of it"))
    u = ctx.runs.get(("unet", 1))
    if u:
        rows.append(("speed U-Net / ACME-like (1×)", u["voxels_per_s"] / s["voxels_per_s"],
                     f"paper: {PAPER_ACME_S / PAPER_UNET_S:.2f} (GPU U-Net vs C++ ACME); "
                     f"{ACME_LIKE}"))
    rows.append(("ACME-like time per 251×1024×1024 volume (extrapolated)",
                 f"{math.prod(PAPER_SHAPE) / s['voxels_per_s'] / 60:.1f} min",
                 f"paper: {PAPER_ACME_S / PAPER_VOLUMES / 60:.0f} min; {ACME_LIKE}"))
    return {**s, "rows": rows}


def sec_scaling(ctx: Context) -> dict[str, Any]:
    """Time and peak memory of predict (and ACME at 1×, 4×; 1× with --quick) against size."""
    series: dict[str, list[dict[str, Any]]] = {"U-Net predict": [], "ACME-like": []}
    rows = []
    for scale in ctx.scales:
        d = ctx.synth(scale)
        for method, name in (("unet", "U-Net predict"), ("acme", "ACME-like")):
            if method == "acme" and scale > (1 if ctx.quick else 4):
                continue  # ACME is the slow one: 1× only under --quick
            s = ctx.predict(d["norm"], scale, method=method)
            series[name].append({"scale": scale, "voxels": s["voxels"],
                                 "seconds": s["predict_seconds"],
                                 "voxels_per_s": s["voxels_per_s"], "peak_rss_mb": s["peak_rss_mb"]})
            rows.append((f"{name} {scale}×: s / peak RSS MB", f"{s['predict_seconds']:.1f} s / "
                         f"{s['peak_rss_mb']:.0f} MB", f"{s['voxels']:,} voxels, "
                         f"{s['voxels_per_s']:,.0f} voxels/s"))
    return {"series": series, "rows": rows}


def sec_workers(ctx: Context) -> dict[str, Any]:
    """LocalCluster with 1 and 2 worker processes (U-Net; ACME too without --quick)."""
    from chunkseg.engine.cluster import cpu_cores

    scale = 1 if ctx.quick else 4
    d = ctx.synth(scale)
    rows, res = [], {}
    for method in ("unet",) if ctx.quick else ("unet", "acme"):
        for w in (1, 2):
            s = ctx.predict(d["norm"], f"{scale}x_w{w}", method=method,
                            cluster=dict(workers=w,
                                         threads_per_worker=max(1, cpu_cores() // w)))
            res[f"{method}_w{w}"] = s
            rows.append((f"{method} LocalCluster {w} worker(s) voxels/s", s["voxels_per_s"],
                         f"{scale}×, {s['threads']} threads in all, peak RSS "
                         f"{s['peak_rss_mb']:.0f} MB (incl. worker start-up)"))
    res["rows"] = rows
    return res


def sec_gpu_full(ctx: Context) -> dict[str, Any]:
    """On a GPU: one full 251 × 1024 × 1024 volume, predicted end to end."""
    if not ctx.gpus:
        raise Skip("no GPU on this machine (the full 251×1024×1024 volume runs only on one)")
    d = ctx.synth(0)
    s = ctx.predict(d["norm"], "paper", cluster=dict(workers=1))
    return {**s, "rows": [("full 251×1024×1024 volume end to end", f"{s['seconds']:.0f} s",
                           f"paper: {PAPER_UNET_S / PAPER_VOLUMES:.0f} s per volume (Titan V); "
                           f"{s['voxels_per_s']:,.0f} voxels/s")]}


from quality import sec_quality_real, sec_quality_synth  # noqa: E402
from real_volumes import sec_default_real  # noqa: E402

SECTIONS = [
    ("machine", sec_machine),
    ("io", sec_io),
    ("unet_bare", sec_unet_bare),
    ("predict", sec_predict),
    ("naive_loop", sec_naive),
    ("acme", sec_acme),
    ("quality_synth", sec_quality_synth),
    ("quality_real", sec_quality_real),
    ("default_model_real", sec_default_real),
    ("scaling", sec_scaling),
    ("workers", sec_workers),
    ("gpu_full", sec_gpu_full),
]
