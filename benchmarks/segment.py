"""Seeded-flood benchmark: F1 / Rand / VI on synthetic and real data, and the merge's share.

(``benchmarks/agglomerate.py`` compares the flood with the agglomerative default.)

Usage::

    python benchmarks/segment.py [--shape 64 256 256] [--block 32 128 128] [--out segment.json]

Sections
--------
synth
    A ``chunkseg.synth`` volume; the probability is the default model's prediction when
    ``chunkseg/models/default.keras`` exists, and always also the crude stand-in
    (truth membrane mask blurred by a Gaussian plus noise).  ``run_segment`` with the
    given block, then with a second block shape (labels must be identical), then
    :func:`instance_report` against the truth.  Timings per phase and the merge share.
ovule
    ``../shared/data/real/ovule_*``: the raw membrane image scaled to [0, 1], the ACME
    baseline's probability, the default model's probability (when present), and the
    blurred truth membranes (an upper bound for the segmenter alone).
Prints a table and writes JSON (shapes, blocks, halos, seconds, scores, hardware).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
from scipy import ndimage

from chunkseg.engine.blocks import write_volume
from chunkseg.engine.segment import segment_array
from chunkseg.io.store import create_image, mark_complete, open_volume
from chunkseg.ops.watershed import SegmentParams
from chunkseg.engine.instances import instance_report
from chunkseg.pipeline.segment import run_segment

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real").resolve()
MODEL = REPO / "chunkseg" / "models" / "default.keras"
KEYS = ("f1", "ap", "precision", "recall", "adapted_rand_error", "vi_split", "vi_merge",
        "n_truth", "n_pred")


def _store(path: Path, arr: np.ndarray, voxel_size, kind: str) -> Path:
    arr = arr[None] if arr.ndim == 3 else arr
    create_image(path, shape=arr.shape, dtype=arr.dtype, voxel_size=voxel_size,
                 attrs={"kind": kind}, overwrite=True)
    write_volume(da.from_array(arr), path, progress=False)
    mark_complete(path)
    return path


def _crude(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(mask.astype(np.float32), (0.7, 1.5, 1.5))
    return np.clip(p / p.max() + rng.normal(0, 0.1, p.shape), 0, 1).astype(np.float32)


def _segment(prob: Path, truth: Path, tmp: Path, name: str, block, **kw) -> dict:
    out = tmp / f"{name}.cells.zarr"
    s = run_segment(prob, out=out, block=block, method="flood", overwrite=True, progress=False,
                    **kw)
    r = instance_report(out, truth)
    return {"input": name, **{k: r[k] for k in KEYS}, "n_cells": s["n_cells"][0],
            "seconds": s["seconds"], "total_seconds": s["total_seconds"],
            "merge_seconds": s["merge_seconds"], "merge_share": s["merge_share"],
            "merge_share_with_relabel": s["merge_share_with_relabel"],
            "halo": s["halo"], "block": s["block"], "blocks": s["blocks"], "out": str(out)}


def _method_rows(prob: Path, truth: Path, tmp: Path, name: str, block, method: str) -> list:
    """Default threshold; ACME's probability is low on membranes (median ~0.2 on synth
    membranes, ~0.02 elsewhere), so it also runs at threshold 0.1."""
    rows = [_segment(prob, truth, tmp, name, block)]
    if method == "acme":
        rows.append(_segment(prob, truth, tmp, f"{name} T=0.1", block, threshold=0.1))
    return rows


def _predict(raw: Path, tmp: Path, name: str, method: str) -> Path | None:
    from chunkseg.pipeline.predict import run_predict

    out = tmp / f"{name}.prob.zarr"
    try:
        if method == "unet":
            if not MODEL.is_file():
                return None
            run_predict(raw, model=str(MODEL), out=out, halo="auto",
                        overwrite=True, progress=False)
        else:
            run_predict(raw, out=out, method="acme", overwrite=True,
                        progress=False)
    except Exception as exc:  # noqa: BLE001 - report, do not stop the benchmark
        print(f"  {name}: {method} prediction failed: {exc!r}")
        return None
    return out


def synth_section(shape, block, block2, tmp: Path, methods=("unet", "acme")) -> list[dict]:
    from chunkseg.synth import synth_volume

    v = synth_volume(tuple(shape), seed=11)
    vs = v.params.voxel_size
    truth = _store(tmp / "synth_truth.zarr", v.labels, vs, "labels")
    raw = _store(tmp / "synth_raw.zarr", v.raw, vs, "raw")
    rows = []
    p = _crude(v.mask)
    crude = _store(tmp / "synth_crude.zarr", p, vs, "probability")
    row = _segment(crude, truth, tmp, "synth crude", block)
    other = _segment(crude, truth, tmp, "synth crude (block 2)", block2)
    a = open_volume(row["out"]).data.compute()
    b = open_volume(other["out"]).data.compute()
    row["identical_for_block2"] = bool(np.array_equal(a, b))
    start = time.perf_counter()  # one whole-volume pass in memory, for comparison
    whole, _ = segment_array(p, SegmentParams(voxel_size=vs))
    row["whole_volume_seconds"] = round(time.perf_counter() - start, 3)
    row["identical_to_whole"] = bool(np.array_equal(a[0], whole))
    row["block2"] = other["block"]
    rows.append(row)
    for method in methods:
        prob = _predict(raw, tmp, f"synth_{method}", method)
        if prob is not None:
            rows += _method_rows(prob, truth, tmp, f"synth {method}", block, method)
    return rows


def ovule_section(block, tmp: Path, methods=("unet", "acme")) -> list[dict]:
    import tifffile

    from chunkseg.ops.boundaries import membrane_mask

    if not REAL.is_dir():
        print(f"ovule: skipped, {REAL} is absent")
        return []
    raw_t = REAL / "ovule_raw.tif"
    labels = tifffile.imread(REAL / "ovule_labels.tif")
    vol = open_volume(raw_t)
    vs = vol.voxel_size
    truth = _store(tmp / "ovule_truth.zarr", labels.astype(np.uint32), vs, "labels")
    raw = vol.data.compute()[0].astype(np.float32)
    lo, hi = np.percentile(raw, (1, 99.5))
    rows = []
    scaled = _store(tmp / "ovule_rawprob.zarr", np.clip((raw - lo) / (hi - lo), 0, 1), vs,
                    "probability")
    rows.append(_segment(scaled, truth, tmp, "ovule raw as p", block))
    for method in methods:
        prob = _predict(raw_t, tmp, f"ovule_{method}", method)
        if prob is not None:
            rows += _method_rows(prob, truth, tmp, f"ovule {method}", block, method)
    crude = _store(tmp / "ovule_crude.zarr", _crude(membrane_mask(labels)), vs, "probability")
    rows.append(_segment(crude, truth, tmp, "ovule truth membranes blurred", block))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[64, 256, 256])
    ap.add_argument("--block", nargs=3, type=int, default=[32, 128, 128])
    ap.add_argument("--block2", nargs=3, type=int, default=[27, 100, 77])
    ap.add_argument("--out", default="segment_benchmark.json")
    ap.add_argument("--skip-synth", action="store_true")
    ap.add_argument("--skip-ovule", action="store_true")
    ap.add_argument("--methods", default="unet,acme",
                    help="predictors to run besides the crude stand-in (unet, acme)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="chunkseg-segbench-"))
    t0 = time.perf_counter()
    try:
        methods = tuple(m for m in args.methods.split(",") if m)
        rows = [] if args.skip_synth else synth_section(args.shape, args.block, args.block2,
                                                        tmp, methods)
        rows += [] if args.skip_ovule else ovule_section(args.block, tmp, methods)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'input':32s} {'F1@.5':>6s} {'AP@.5':>6s} {'ARE':>6s} {'VIsplit':>7s} "
          f"{'VImerge':>7s} {'cells':>5s} {'truth':>5s} {'total s':>7s} {'merge%':>6s}")
    for r in rows:
        print(f"{r['input']:32s} {r['f1']:6.3f} {r['ap']:6.3f} {r['adapted_rand_error']:6.3f} "
              f"{r['vi_split']:7.3f} {r['vi_merge']:7.3f} {r['n_cells']:5d} {r['n_truth']:5d} "
              f"{r['total_seconds']:7.2f} {100 * r['merge_share']:6.1f}")
    report = {"rows": rows, "shape": args.shape, "block": args.block, "block2": args.block2,
              "seconds": time.perf_counter() - t0,
              "hardware": {"machine": platform.machine(), "cpus": os.cpu_count(),
                           "python": platform.python_version()}}
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
