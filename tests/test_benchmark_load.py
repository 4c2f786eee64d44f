"""benchmarks/load.py: a measurement that waited for the cores is flagged and repeated."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from load import LoadProbe, measure_quietly  # noqa: E402


def test_a_cpu_bound_measurement_that_only_waited_is_loaded():
    with LoadProbe(expected_cpu=1) as probe:
        time.sleep(0.3)  # wall time without CPU time: the cores were busy elsewhere
    s = probe.summary()
    assert s["loaded"] is True and s["probe_wall_s"] >= 0.3 and s["cpu_s"] < 0.1


def test_repeats_until_quiet_and_keeps_the_fastest():
    calls = []

    def sleepy():
        calls.append(1)
        time.sleep(0.05 * len(calls))
        return {"wall_s": 0.05 * len(calls)}

    res = measure_quietly(sleepy, tries=3, expected_cpu=1)
    assert len(calls) == 3 and res["tries"] == 3  # every try waited: all loaded
    assert res["loaded"] is True and res["wall_s"] == 0.05


def test_a_busy_cpu_bound_measurement_on_an_idle_machine_is_quiet(monkeypatch):
    import load

    monkeypatch.setattr(load.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    with LoadProbe(expected_cpu=1) as probe:
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
    # a quiet machine gives the loop nearly all of one core; a loaded one may not
    assert probe.loaded == (probe.cpu < 0.7 * probe.wall)
