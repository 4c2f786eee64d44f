"""Helpers of ``benchmarks/run.py``: peak-memory sampling, hardware, skips, the table."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import Any


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


def hardware(gpus: list[str] | None = None) -> dict[str, Any]:
    """The machine the numbers come from."""
    import dask
    import numpy
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {
        "cpu": _cpu_model(), "cores": cores, "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
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
