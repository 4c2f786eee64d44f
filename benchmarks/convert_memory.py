"""Peak memory and throughput of ``chunkseg convert`` on a stack generated on the fly.

Writes a uint16 TIFF of ``--mb`` megabytes page by page (never held in memory),
converts it in a fresh subprocess, records that subprocess's peak RSS, and checks
the OME-Zarr output plane by plane against the generator.  A second subprocess that
only imports chunkseg and opens the TIFF gives the baseline RSS, so the table shows
what conversion itself costs.

    python benchmarks/convert_memory.py --mb 400 --out bench_out/convert_memory.json
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

Y = X = 1024


def plane(z: int) -> np.ndarray:
    """Deterministic plane ``z`` of the synthetic stack."""
    rng = np.random.default_rng(z)
    return rng.integers(90, 4000, size=(Y, X), dtype=np.uint16)


def write_stack(path: Path, n_planes: int) -> None:
    import tifffile

    tifffile.imwrite(path, (plane(z) for z in range(n_planes)), shape=(n_planes, Y, X),
                     dtype=np.uint16)


def _child_peak_mb(code: str) -> tuple[float, float]:
    """Run ``code`` in a fresh interpreter; return its own peak RSS (MB) and seconds."""
    t0 = time.perf_counter()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
    probe = ("\nimport re; print('PEAK_KB', re.search(r'VmHWM:\\s+(\\d+)', "
             "open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code + probe], check=True, capture_output=True,
                         text=True).stdout
    peak_kb = int(out.rsplit("PEAK_KB", 1)[1])
    return peak_kb / 1024, time.perf_counter() - t0


def measure(mb: int, workdir: Path) -> dict:
    """Convert a ``mb``-megabyte stack; return sizes, peak RSS and MB/s."""
    n_planes = max(1, int(mb * 1e6 // (Y * X * 2)))
    tif = workdir / "stack.tif"
    out = workdir / "stack.ome.zarr"
    write_stack(tif, n_planes)
    size_mb = tif.stat().st_size / 1e6
    base_code = (
        "import chunkseg.pipeline.convert as c, dask.array, zarr; "
        f"c.open_inputs([{str(tif)!r}])"
    )
    base_mb, _ = _child_peak_mb(base_code)
    conv_code = (
        "from chunkseg.engine.memory import reuse_buffers; reuse_buffers(); "
        "from chunkseg.pipeline.convert import run_convert; "
        f"run_convert({str(tif)!r}, {str(out)!r}, overwrite=True, progress=False)"
    )
    peak_mb, seconds = _child_peak_mb(conv_code)
    import zarr

    arr = zarr.open_array(str(out / "0"))
    for z in range(n_planes):
        if not np.array_equal(arr[0, z], plane(z)):
            raise AssertionError(f"plane {z} differs after conversion")
    return {
        "stack_MB": round(size_mb, 1),
        "shape": [1, n_planes, Y, X],
        "chunks": list(arr.chunks),
        "shards": list(arr.shards),
        "baseline_rss_MB": round(base_mb, 1),
        "peak_rss_MB": round(peak_mb, 1),
        "conversion_rss_MB": round(peak_mb - base_mb, 1),
        "rss_over_stack": round((peak_mb - base_mb) / size_mb, 3),
        "seconds": round(seconds, 2),
        "MB_per_s": round(size_mb / seconds, 1),
        "read_back_equal": True,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, nargs="+", default=[400], help="stack size(s) in MB")
    ap.add_argument("--out", default="bench_out/convert_memory.json")
    args = ap.parse_args(argv)
    rows = []
    for mb in sorted(args.mb):  # increasing, so the running-max RSS stays meaningful
        with tempfile.TemporaryDirectory(dir=os.environ.get("CHUNKSEG_BENCH_TMP")) as d:
            rows.append(measure(mb, Path(d)))
    cols = ["stack_MB", "baseline_rss_MB", "peak_rss_MB", "conversion_rss_MB", "rss_over_stack",
            "seconds", "MB_per_s"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "convert_memory", "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
