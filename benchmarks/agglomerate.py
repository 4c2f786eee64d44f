"""Cells from membranes: the agglomerative default against the seeded flood, measured.

Usage::

    python benchmarks/agglomerate.py [--work DIR] [--out benchmarks/results/agglomerate]

Quality (cell F1@0.5, adapted Rand error, VOI split / merge; truth 0 left out)
    Per source — ``synth`` (``chunkseg synth`` volume, exact truth), ``ovule`` (hand-drawn
    labels, PlantSeg test data) and ``organoid`` t1-t5 (labels made by the authors'
    network, not by hand) — and per probability: ``model`` (the packaged default model
    through ``run_predict``, normalization as ``predict`` does it) and ``oracle`` (the
    truth's membranes, blurred, plus noise: the best probability available, an upper
    bound for the segmenter alone, NOT a prediction).  Methods: ``flood`` (the previous
    default, blockwise), ``agglo`` (the new default, blockwise, block B), ``agglo whole``
    (the in-memory reference of the same method; ``identical`` says whether the
    blockwise labels equal it voxel for voxel), the other linkages in memory, and
    ``agglo previous defaults`` (in memory, the defaults before
    ``benchmarks/segment_defaults.py`` re-chose them).
Speed and memory
    ``run_segment`` of both methods on a synthetic model probability at 1x and 4x volume:
    voxels/s, peak RSS above the start, graph nodes / edges per voxel, the share of the
    global step; and the global step alone on random graphs of growing size (seconds,
    bytes per edge).
Writes ``<out>.json`` and ``<out>.md`` (tables); prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from chunkseg.engine.agglomerate import agglomerate_array, segment_method
from chunkseg.io.store import open_volume
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.ops.instance_metrics import contingency, instance_scores
from chunkseg.ops.rag import EDGE_BINS, Q, AggloParams, cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakRSS  # noqa: E402
from segment import _store as write_store  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()
MODEL = REPO / "chunkseg" / "models" / "default.keras"
KEYS = ("f1", "adapted_rand_error", "vi_split", "vi_merge", "n_pred", "n_truth")
BLOCK = (24, 96, 96)
#: the agglo defaults before benchmarks/segment_defaults.py re-chose them (main at 297cf09)
PREVIOUS = {"threshold": 0.4, "fragment_radius": 0.5, "fragment_sigma": 0.15,
            "membrane_reach": 0.5, "min_size": 1.0, "criterion": "mean"}


def _store(path: Path, arr: np.ndarray, voxel_size, kind: str) -> Path:
    """A probability / raw store, written once (reused from an earlier run)."""
    return path if (path / "zarr.json").is_file() else write_store(path, arr, voxel_size, kind)


def oracle(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Truth membranes blurred plus noise: the best probability available (an oracle)."""
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(membrane_mask(labels).astype(np.float32), (0.7, 1.5, 1.5))
    return np.clip(p / p.max() + rng.normal(0, 0.1, p.shape), 0, 1).astype(np.float32)


def _predict(raw: Path | str, out: Path) -> Path:
    from chunkseg.pipeline.predict import run_predict

    if not (out / "zarr.json").is_file():
        run_predict(raw, model=str(MODEL), out=out, halo="auto",
                    overwrite=True, progress=False)
    return out


def sources(work: Path) -> list[dict]:
    """``name, truth, voxel size, {probability kind: store}`` of every source."""
    import tifffile

    from chunkseg.synth import synth_volume

    out = []
    v = synth_volume((48, 192, 192), seed=11)
    vs = v.params.voxel_size
    raw = _store(work / "synth_raw.zarr", v.raw, vs, "raw")
    out.append({"name": "synth", "truth": v.labels, "vs": vs,
                "prob": {"model": _predict(raw, work / "synth.prob.zarr")}})
    if REAL.is_dir():
        items = [("ovule", REAL / "ovule_raw.tif", REAL / "ovule_labels.tif")]
        items += [(f"organoid_t{t}", REAL / "organoid" / f"organoid_t{t}_raw.tif",
                   REAL / "organoid" / f"organoid_t{t}_labels.tif") for t in range(1, 6)]
        for name, raw_t, lab_t in items:
            truth = tifffile.imread(lab_t).astype(np.uint32)
            out.append({"name": name, "truth": truth, "vs": open_volume(raw_t).voxel_size,
                        "prob": {"model": _predict(raw_t, work / f"{name}.prob.zarr")}})
    else:
        print(f"real sources skipped: {REAL} is absent")
    for s in out:
        s["prob"]["oracle"] = _store(work / f"{s['name']}.oracle.zarr", oracle(s["truth"]),
                                     s["vs"], "probability")
    return out


def _scores(truth: np.ndarray, labels: np.ndarray) -> dict:
    s = instance_scores(contingency(truth, labels))
    return {k: s[k] for k in KEYS}


def quality_rows(src: dict, kind: str, work: Path) -> list[dict]:
    from chunkseg.pipeline.segment import run_segment

    prob = src["prob"][kind]
    p = open_volume(prob).data.compute()[0]
    base = {"source": src["name"], "probability": kind}
    rows = []
    for method in ("flood", "agglo"):
        out = work / f"{src['name']}.{kind}.{method}.zarr"
        s = run_segment(prob, out=out, method=method, block=BLOCK, overwrite=True,
                        progress=False)
        lab = open_volume(out).data.compute()[0]
        rows.append({**base, "method": method, **_scores(src["truth"], lab),
                     "seconds": s["total_seconds"],
                     "edges_per_mvoxel": 1e6 * s["graph"]["edges"] / lab.size})
        if method == "agglo":
            _, params = segment_method("agglo", voxel_size=src["vs"])
            for linkage in ("mutex", "average", "single"):
                t0 = time.perf_counter()
                whole, _ = agglomerate_array(p, AggloParams(params.fragments, params.threshold,
                                                            params.min_size, linkage,
                                                            params.criterion))
                row = {**base, "method": f"agglo whole {linkage}",
                       **_scores(src["truth"], whole),
                       "seconds": time.perf_counter() - t0}
                if linkage == params.linkage:
                    row["identical"] = bool(np.array_equal(whole, lab))
                rows.append(row)
            _, before = segment_method("agglo", voxel_size=src["vs"], **PREVIOUS)
            rows.append({**base, "method": "agglo previous defaults",
                         **_scores(src["truth"], agglomerate_array(p, before)[0])})
    return rows


def speed_rows(work: Path, scales=(1, 4)) -> list[dict]:
    """Both methods on a synthetic model probability at growing volume (one run each)."""
    from chunkseg.pipeline.segment import run_segment

    prob = open_volume(work / "synth.prob.zarr").data.compute()[0]
    rows = []
    for scale in scales:
        reps = (1, 2, 2) if scale == 4 else (1,) * 3
        p = np.tile(prob, reps)  # 4x: two copies along y and x
        path = _store(work / f"speed{scale}.zarr", p, (0.4, 0.1, 0.1), "probability")
        for method in ("flood", "agglo"):
            with PeakRSS() as mem:
                s = run_segment(path, out=work / f"speed{scale}.{method}.zarr", method=method,
                                block=(48, 192, 192), overwrite=True, progress=False)
            n = p.size
            rows.append({"scale": scale, "shape": list(p.shape), "method": method,
                         "voxels_per_s": n / s["total_seconds"], "seconds": s["total_seconds"],
                         "peak_rss_mb": mem.delta_mb, "cells": s["n_cells"][0],
                         "nodes_per_mvoxel": 1e6 * s["graph"]["nodes"] / n,
                         "edges_per_mvoxel": 1e6 * s["graph"]["edges"] / n,
                         "global_share": s["global_share"], "merge_share": s["merge_share"]})
    return rows


def global_rows(sizes=(10_000, 100_000, 1_000_000, 4_000_000)) -> list[dict]:
    """The global step alone on random sparse graphs (about 6 neighbours per node)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    rows = []
    for k in sizes:
        n = k // 3
        a = rng.integers(0, n, k)
        b = (a + rng.integers(1, 50, k)) % n
        idx = np.unique(np.sort(np.stack([a, b], 1), 1), axis=0)
        idx = idx[idx[:, 0] != idx[:, 1]]
        edges = np.zeros((len(idx), 4 + EDGE_BINS), np.uint64)
        edges[:, 2] = rng.integers(1, 200, len(idx))
        edges[:, 3] = (rng.random(len(idx)) * 2 * Q * edges[:, 2]).astype(np.uint64)
        for linkage in ("mutex", "single", "average"):
            if linkage == "average" and k > 10_000:
                continue  # networkx-based: minutes per million edges
            t0 = time.perf_counter()
            cluster(n, idx, edges, threshold=0.5, linkage=linkage)
            secs = time.perf_counter() - t0
            tracemalloc.start()  # a second run: tracing slows Python allocations down
            cluster(n, idx, edges, threshold=0.5, linkage=linkage)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"edges": len(idx), "nodes": n, "linkage": linkage, "seconds": secs,
                         "edges_per_s": len(idx) / secs,
                         "python_bytes_per_edge": peak / len(idx),
                         "table_bytes_per_edge": edges.itemsize * edges.shape[1]})
    return rows


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="agglomerate-work",
                    help="folder for the predictions and outputs (reused when present)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "agglomerate"))
    ap.add_argument("--sections", default="quality,speed,global",
                    help="sections to run; the others are kept from an existing <out>.json")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    wanted = set(args.sections.split(","))
    out = Path(args.out).with_suffix(".json")
    report = json.loads(out.read_text()) if out.is_file() else {}
    t0 = time.perf_counter()
    if "quality" in wanted:
        report["quality"] = []
        for src in sources(work):
            for kind in ("model", "oracle"):
                report["quality"] += quality_rows(src, kind, work)
                print(_table(report["quality"][-5:], ["source", "probability", "method", *KEYS]),
                      flush=True)
    if "speed" in wanted:
        report["speed"] = speed_rows(work)
    if "global" in wanted:
        report["global_step"] = global_rows()
    report.setdefault("load_average", {})[args.sections] = os.getloadavg()
    md = "\n\n".join([
        _table(report.get("quality", []), ["source", "probability", "method", *KEYS,
                                           "identical", "seconds", "edges_per_mvoxel"]),
        _table(report.get("speed", []), ["scale", "shape", "method", "voxels_per_s",
                                         "peak_rss_mb", "cells", "nodes_per_mvoxel",
                                         "edges_per_mvoxel", "global_share"]),
        _table(report.get("global_step", []), ["edges", "nodes", "linkage", "seconds",
                                               "edges_per_s", "python_bytes_per_edge",
                                               "table_bytes_per_edge"])])
    print(md)
    report.update({"block": BLOCK, "hardware": {"machine": platform.machine(),
                                                "cpus": os.cpu_count(),
                                                "python": platform.python_version()}})
    report.setdefault("seconds", {})[args.sections] = time.perf_counter() - t0
    out.write_text(json.dumps(report, indent=2, default=str))
    Path(args.out).with_suffix(".md").write_text(md + "\n")
    print(f"wrote {args.out}.json / .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
