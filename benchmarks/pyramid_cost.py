"""What the multiscale pyramid costs: time, bytes and peak memory of convert and normalize.

Generates a uint16 stack (default one 251 x 1024 x 1024 time point: smooth membrane-like
texture, background and shot noise, so it compresses like microscopy rather than like
white noise), then runs ``convert`` and ``normalize`` each twice in fresh processes,
with the pyramid and with ``--no-pyramid``, on the default threaded scheduler.  Reports
per command the wall time of both runs, the pyramid's own seconds (recorded by the
command), the bytes of the pyramid levels against level 0 and the peak RSS (``VmHWM``)
of both runs.

    python benchmarks/pyramid_cost.py --shape 251 1024 1024 --out benchmarks/results/pyramid_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def plane(z: int, shape: tuple[int, int]) -> np.ndarray:
    """Deterministic plane ``z``: bright cell walls on a dim background, with shot noise."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    walls = (np.abs(np.sin(y / 23.0 + z / 40.0) * np.sin(x / 29.0 - z / 55.0)) < 0.12)
    signal = 200 + 1800 * walls + 300 * np.exp(-((y - shape[0] / 2) ** 2 + (x - shape[1] / 2)
                                                ** 2) / (0.3 * shape[0] * shape[1]))
    return np.random.default_rng(z).poisson(signal).astype(np.uint16)


def _run(args: list[str]) -> tuple[float, float]:
    """Run a chunkseg command in a fresh interpreter; return wall seconds and peak RSS (MB)."""
    code = ("import sys, re; from chunkseg.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_KB', re.search(r'VmHWM:\\s+(\\d+)', "
            "open('/proc/self/status').read()).group(1)); sys.exit(rc)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                         text=True).stdout
    return time.perf_counter() - t0, int(out.rsplit("PEAK_KB", 1)[1]) / 1024


def _bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(command: list[str], out: Path) -> dict:
    """``command`` into ``out`` with and without the pyramid."""
    plain, plain_mb = _run([*command, "--out", str(out), "--no-pyramid"])
    shutil.rmtree(out)
    full, full_mb = _run([*command, "--out", str(out)])
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    level0 = _bytes(out / "0")
    levels = sum(_bytes(p) for p in out.iterdir() if p.is_dir() and p.name.isdigit()
                 and p.name != "0")
    pyramid_s = attrs["chunkseg"]["pyramid_seconds"]
    return {
        "command": command[0], "levels": len(attrs["ome"]["multiscales"][0]["datasets"]),
        "seconds_no_pyramid": round(plain, 2), "seconds_with_pyramid": round(full, 2),
        "pyramid_seconds": pyramid_s, "pyramid_time_share": round(pyramid_s / full, 3),
        "level0_MB": round(level0 / 1e6, 1), "pyramid_MB": round(levels / 1e6, 1),
        "pyramid_bytes_share": round(levels / level0, 3),
        "peak_rss_MB_no_pyramid": round(plain_mb, 1),
        "peak_rss_MB_with_pyramid": round(full_mb, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[251, 1024, 1024], metavar=("Z", "Y", "X"))
    ap.add_argument("--out", default="bench_out/pyramid_cost.json")
    args = ap.parse_args(argv)
    import tifffile

    z, y, x = args.shape
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CHUNKSEG_BENCH_TMP")) as d:
        tif, raw, norm = Path(d) / "stack.tif", Path(d) / "raw.ome.zarr", Path(d) / "norm.ome.zarr"
        tifffile.imwrite(tif, (plane(k, (y, x)) for k in range(z)), shape=(z, y, x),
                         dtype=np.uint16, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                         metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"})
        rows.append(measure(["convert", str(tif)], raw))
        rows.append(measure(["normalize", str(raw)], norm))
        load = os.getloadavg()
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "benchmark": "pyramid_cost", "shape": [1, z, y, x], "dtype": "uint16",
        "voxel_size": [1.0, 0.2, 0.2], "scheduler": "threads",
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_after": [round(v, 2) for v in load], "python": sys.version.split()[0],
        "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
