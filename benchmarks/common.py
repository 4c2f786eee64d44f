"""Helpers of the benchmarks: peak-memory sampling, hardware, skips, the table, and the
measurements both ``run.py`` and ``predict_throughput.py`` take (model, bare network, naive loop)."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the paper's sub-volume (its training crop) and overlap, for the naive loop
PAPER_SUBVOLUME, PAPER_OVERLAP = (64, 128, 128), 10


class Skip(Exception):
    """A section cannot run here (its dependency is absent); the message says why."""


class PeakRSS:
    """Sample the resident memory of this process and its children (dask workers).

    ``with PeakRSS() as m: ...`` then ``m.peak_mb`` (highest total seen) and
    ``m.delta_mb`` (peak minus the total at entry).
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.start_mb = self.peak_mb = 0.0
        self.seconds = 0.0

    @staticmethod
    def _total_mb() -> float:
        import psutil

        me = psutil.Process()
        total = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._total_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.peak_mb = self._total_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._total_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_id() -> str:
    """CPU family and model numbers and the flags that change the network's speed (the
    model name of a virtual machine is often only the vendor's)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return "?"
    have = fields.get("flags", "").split()
    flags = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in have]
    return (f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, "
            f"{' '.join(flags) or 'no AVX-512'}")


def matmul_gflops(n: int = 2048, calls: int = 10) -> float:
    """This machine's speed now: median GFLOP/s of ``n x n`` float32 matmuls (all cores).

    Recorded beside timings taken hours apart on a shared machine, whose speed varies
    with its neighbours' load while its own load average stays the same.
    """
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return round(2 * n**3 / float(np.median(times)) / 1e9, 1)


def hardware(gpus: list[str] | None = None) -> dict[str, Any]:
    """The machine the numbers come from."""
    import dask
    import numpy
    import psutil

    from chunkseg.engine.cluster import cpu_cores

    cores = cpu_cores()
    out = {
        "cpu": _cpu_model(), "cpu_id": _cpu_id(), "cores": cores,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": numpy.__version__, "dask": dask.__version__, "gpus": gpus or [],
    }
    try:
        import importlib.metadata as md

        out["tensorflow"] = md.version("tensorflow-cpu") if _has("tensorflow-cpu") else md.version("tensorflow")
        out["keras"] = md.version("keras")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return out


def _has(dist: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def fmt(v: Any, digits: int = 3) -> str:
    """A number for the table (3 significant digits, thousands separated)."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, int) or (isinstance(v, float) and abs(v) >= 1000):
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def markdown_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Rows of (section, measure, value, note) as a Markdown table."""
    lines = ["| section | measure | value | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def model_or_untrained(work: Path, name: str = "default") -> tuple[str, bool]:
    """The requested model and True, else (``default`` missing) an untrained default-config one
    saved in ``work`` and False (its speed is meaningful, its quality is not)."""
    from chunkseg.errors import ModelError
    from chunkseg.model import UNetConfig, build_unet, resolve_model, save_model

    try:
        return str(resolve_model(name)), True
    except ModelError:
        if name != "default":
            raise
        cfg = UNetConfig()
        path = save_model(build_unet(cfg), work / "untrained.keras",
                          metadata={"config": cfg.to_dict()})
        return str(path), False


def bare_model(model_path: str, tile, batch: int, seconds: float) -> float:
    """Voxels/s of the network alone on in-memory tiles (same call path as predict)."""
    from chunkseg.engine.predict import ModelSpec

    spec = ModelSpec(model_path)
    x = np.random.default_rng(0).random((batch, *tile, 1), dtype=np.float32)
    spec(x)  # load, build, warm up
    calls, t = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t < seconds:
        spec(x)
        calls += 1
    return batch * math.prod(tile) * calls / (time.perf_counter() - t)


def naive_loop(model_path: str, volume: str, pool) -> dict[str, Any]:
    """The paper's prediction script on a uint8 store: the whole volume in memory, overlapping
    sub-volumes, one network call each (same call path as predict), stitched by cropping half
    the overlap."""
    from chunkseg.engine.predict import ModelSpec
    from chunkseg.io.store import open_array

    spec = ModelSpec(model_path)
    t = time.perf_counter()
    vol = open_array(volume)[0].astype(np.float32) / 255.0
    sub = [min(s, math.ceil(n / p) * p) for s, n, p in zip(PAPER_SUBVOLUME, vol.shape, pool)]
    ol = PAPER_OVERLAP
    starts = []
    for n, s in zip(vol.shape, sub):
        st = list(range(0, max(n - s, 0) + 1, max(s - 2 * ol, 1)))
        if st[-1] + s < n:
            st.append(n - s)
        starts.append(st)
    out = np.zeros(vol.shape, np.float32)
    calls = 0
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                piece = vol[z:z + sub[0], y:y + sub[1], x:x + sub[2]]
                pad = [(0, s - p) for s, p in zip(sub, piece.shape)]
                p = spec(np.pad(piece, pad, mode="symmetric")[None, ..., None])[0, ..., 0]
                lo = [0 if o == 0 else ol // 2 for o in (z, y, x)]
                region = tuple(slice(o + a, o + n) for o, a, n in zip((z, y, x), lo, piece.shape))
                out[region] = p[tuple(slice(a, n) for a, n in zip(lo, piece.shape))]
                calls += 1
    secs = time.perf_counter() - t
    return {"voxels_per_s": vol.size / secs, "seconds": secs, "calls": calls,
            "subvolume": sub, "overlap": ol}


def labelled_runs(out: str | Path) -> dict:
    """The report in ``<out>.json`` whose ``runs`` keep each ``--label``'s results side by
    side (``{"runs": {}}`` where there is none yet)."""
    path = Path(out).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def git_commit(tree: str | Path) -> str:
    """The short commit of the checkout at ``tree`` (``"?"`` outside git)."""
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "?"


def write_results(out: str | Path, md: str, payload: dict) -> None:
    """Print ``md``; write ``<out>.md`` and ``<out>.json`` (the payload and the load average)."""
    print(md)
    Path(out).with_suffix(".json").write_text(json.dumps(
        {**payload, "load_average": os.getloadavg()}, indent=1, default=str))
    Path(out).with_suffix(".md").write_text(md + "\n")
