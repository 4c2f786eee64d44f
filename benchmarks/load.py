"""Load detection for benchmark figures: load average and CPU versus wall time.

A timing taken while other processes compete for the cores is not a property of the
code.  :class:`LoadProbe` records, around one measurement, the 1-minute load average
before and after and the CPU seconds this process and its children used, and calls the
measurement *loaded* when

* the load average before it exceeds :data:`LOAD_FRACTION` of the cores (others were
  already running), or
* ``expected_cpu`` was given (a CPU-bound measurement on that many threads) and the
  CPU time used is below :data:`CPU_FRACTION` of ``wall x expected_cpu`` (the
  measurement waited for cores).

:func:`measure_quietly` repeats a loaded measurement (up to ``tries``) and keeps the
fastest, flagged ``loaded`` if no try was quiet: such a figure is an upper bound of
the time, to be re-measured on an idle machine, never a published fact.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any

from common import hardware  # benchmarks/ is on sys.path (as in run.py)

__all__ = ["CPU_FRACTION", "LOAD_FRACTION", "LoadProbe", "machine", "measure_quietly"]

#: load average (1 min) per core above which a machine counts as busy before a run
LOAD_FRACTION = 0.5
#: share of the expected CPU time a CPU-bound measurement must get to count as quiet
CPU_FRACTION = 0.7


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine() -> dict[str, Any]:
    """Hardware plus the load average now and the number of usable cores."""
    return {**hardware(), "usable_cores": _cores(), "load_average": list(os.getloadavg())}


class LoadProbe:
    """``with LoadProbe(expected_cpu=2) as p: ...`` then ``p.summary()``.

    Parameters
    ----------
    expected_cpu : float, optional
        Threads a CPU-bound measurement keeps busy; enables the CPU-share test.
        CPU of children counts only once they have been waited for (``subprocess.run``).
    """

    def __init__(self, expected_cpu: float | None = None) -> None:
        self.expected_cpu = expected_cpu

    def __enter__(self) -> LoadProbe:
        self.load_before = os.getloadavg()[0]
        self._cpu0, self._t0 = _cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = _cpu_seconds() - self._cpu0
        self.load_after = os.getloadavg()[0]

    @property
    def loaded(self) -> bool:
        """Whether the measurement shared the machine (see the module docstring)."""
        busy = self.load_before > LOAD_FRACTION * _cores()
        if self.expected_cpu:
            busy = busy or self.cpu < CPU_FRACTION * self.wall * self.expected_cpu
        return bool(busy)

    def summary(self) -> dict[str, Any]:
        """``load_before``, ``load_after``, ``cpu_s``, ``probe_wall_s``, ``loaded``."""
        return {"load_before": round(self.load_before, 2), "load_after": round(self.load_after, 2),
                "cpu_s": round(self.cpu, 3), "probe_wall_s": round(self.wall, 3),
                "cores": _cores(), "loaded": self.loaded}


def measure_quietly(fn: Callable[[], dict[str, Any]], *, tries: int = 3,
                    expected_cpu: float | None = None,
                    key: str = "wall_s") -> dict[str, Any]:
    """Run ``fn`` until one run is quiet (at most ``tries``); keep the best run.

    Returns the quiet run, else the one with the smallest ``key``, with its probe
    summary merged in and ``tries`` (runs made); ``loaded`` says whether it is a
    figure to re-measure.
    """
    runs = []
    for _ in range(tries):
        with LoadProbe(expected_cpu) as probe:
            row = fn()
        runs.append({**row, **probe.summary()})
        if not probe.loaded:
            break
    quiet = [r for r in runs if not r["loaded"]]
    best = quiet[0] if quiet else min(runs, key=lambda r: r.get(key, r["probe_wall_s"]))
    return {**best, "tries": len(runs)}
