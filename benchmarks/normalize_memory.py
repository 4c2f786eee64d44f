"""Peak memory of ``chunkseg normalize`` versus volume size (bounded by chunks, not volume).

Generates uint16 OME-Zarr time series of increasing size block by block (never whole in
memory), runs ``run_normalize`` (percentile pass + uint8 write) on each in a fresh
subprocess and records that subprocess's own peak RSS.  A baseline subprocess that only
imports chunkseg and opens the store shows the fixed cost; an optional in-memory NumPy
reference (``np.percentile`` + ``scale_to_uint8`` on the whole array) shows what the
chunked path avoids, and checks that both give the same range.

    python benchmarks/normalize_memory.py --timepoints 1 4 --out bench_out/normalize_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

Z, Y, X = 100, 1024, 512  # one time point: 100 MiB of uint16


def _block(block_info=None) -> np.ndarray:
    """Deterministic skewed intensities of one block (seeded by its position)."""
    loc = block_info[None]["array-location"]
    shape = block_info[None]["chunk-shape"]
    rng = np.random.default_rng([start for start, _stop in loc])
    base = rng.integers(90, 400, size=shape, dtype=np.uint16)
    tail = rng.random(shape) < 0.002
    base[tail] = rng.integers(400, 12000, size=int(tail.sum()), dtype=np.uint16)
    return base


def make_volume(path: Path, t: int) -> None:
    """Write a (t, Z, Y, X) uint16 chunkseg store, shard by shard."""
    import dask.array as da

    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, default_chunks, mark_complete

    shape = (t, Z, Y, X)
    _, shards = default_chunks(shape)
    create_image(path, shape=shape, dtype=np.uint16, attrs={"kind": "raw"}, overwrite=True)
    data = da.map_blocks(_block, chunks=da.core.normalize_chunks(shards, shape),
                         dtype=np.uint16)
    write_volume(data, path, progress=False)
    mark_complete(path)


def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON line plus peak RSS and seconds."""
    # VmHWM (peak resident set of this address space) is reset by exec; ru_maxrss is not:
    # after fork + exec it still counts the parent's pages, which would hide the result.
    probe = ("\nimport json\nhwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]"
             "\nprint('RESULT', json.dumps({**locals().get('res', {}), "
             "'peak_mb': int(hwm[0].split()[1]) / 1024}))")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    res = json.loads(proc.stdout.rsplit("RESULT", 1)[1])
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timepoints", nargs="+", type=int, default=[1, 4],
                    help="sizes to run, in time points of 100 MiB each (default 1 4)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the in-memory NumPy reference run")
    ap.add_argument("--workdir", help="where to write the volumes (default: a temp dir)")
    ap.add_argument("--out", default="bench_out/normalize_memory.json")
    args = ap.parse_args(argv)
    import psutil

    work = Path(args.workdir or tempfile.mkdtemp(prefix="chunkseg_norm_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for t in args.timepoints:
        src, dst = work / f"raw_t{t}.ome.zarr", work / f"norm_t{t}.ome.zarr"
        make_volume(src, t)
        mb = t * Z * Y * X * 2 / 1e6
        base = _child(f"from chunkseg.io.store import open_volume\n"
                      f"v = open_volume({str(src)!r})\nres = {{}}")
        run = _child(
            "from chunkseg.pipeline.normalize import run_normalize\n"
            f"s = run_normalize({str(src)!r}, {str(dst)!r}, overwrite=True, progress=False)\n"
            "res = {'low': s['low'], 'high': s['high']}"
        )
        row = {"timepoints": t, "shape": [t, Z, Y, X], "volume_mb": round(mb, 1),
               "baseline_peak_mb": round(base["peak_mb"], 1),
               "normalize_peak_mb": round(run["peak_mb"], 1),
               "normalize_extra_mb": round(run["peak_mb"] - base["peak_mb"], 1),
               "normalize_seconds": run["seconds"], "low": run["low"], "high": run["high"]}
        if not args.no_reference and t == max(args.timepoints):
            ref = _child(
                "import numpy as np\nfrom chunkseg.io.store import open_array\n"
                "from chunkseg.ops.normalize import scale_to_uint8\n"
                f"x = open_array({str(src)!r})[...]\n"
                "lo, hi = np.percentile(x, (0, 99.99))\ny = scale_to_uint8(x, lo, hi)\n"
                "res = {'low': float(lo), 'high': float(hi)}"
            )
            row.update(reference_peak_mb=round(ref["peak_mb"], 1),
                       reference_seconds=ref["seconds"],
                       reference_range_equal=(ref["low"], ref["high"]) == (run["low"], run["high"]))
        rows.append(row)
    from chunkseg.io.store import default_chunks

    chunks, shards = default_chunks((1, Z, Y, X))
    result = {
        "benchmark": "normalize_memory", "rows": rows, "chunks": list(chunks),
        "shards": list(shards), "halo": 0, "scheduler": "threads",
        "workers": 1, "threads": os.cpu_count(), "percentiles": [0, 99.99],
        "hardware": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                     "python": platform.python_version()},
    }
    print(f"{'t':>3} {'volume MB':>10} {'baseline MB':>12} {'normalize peak MB':>18} "
          f"{'extra MB':>9} {'s':>7} {'numpy ref peak MB':>18}")
    for r in rows:
        print(f"{r['timepoints']:>3} {r['volume_mb']:>10.1f} {r['baseline_peak_mb']:>12.1f} "
              f"{r['normalize_peak_mb']:>18.1f} {r['normalize_extra_mb']:>9.1f} "
              f"{r['normalize_seconds']:>7.1f} {r.get('reference_peak_mb', float('nan')):>18.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
