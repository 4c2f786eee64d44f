"""``chunkseg plan``: a run planned without data equals what predict then does."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from chunkseg.engine.memory import TRIM_THRESHOLD
from chunkseg.errors import ParameterError
from chunkseg.model.info import model_info
from chunkseg.io.store import create_image, mark_complete
from chunkseg.pipeline.plan import format_plan, load_calibration, plan_run

#: a 10 TB uint16 series of full 251 x 1024 x 1024 light-sheet stacks
TEN_TB = (19_000, 251, 1024, 1024)


def test_plans_a_10_tb_series_without_data_in_bounded_memory():
    tracemalloc.start()
    plan = plan_run(shape=TEN_TB, dtype="uint16", workers=8, target_hours=24, memory_gib=1.0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20  # nothing per block or per time point is held
    assert plan["bytes"] == math.prod(TEN_TB) * 2 > 10 * 10**12
    per_t = math.prod(math.ceil(s / b) for s, b in zip(TEN_TB[1:], plan["block"]))
    assert plan["blocks"] == TEN_TB[0] * per_t and plan["tasks"] == 2 * plan["blocks"]
    assert plan["group"] == 1 and plan["graphs"] == TEN_TB[0]
    assert plan["network_voxels"] >= math.prod(TEN_TB)  # the halo costs voxels
    one = plan_run(shape=TEN_TB, workers=1, memory_gib=1.0)
    assert one["expected_hours"] == pytest.approx(8 * plan["expected_hours"], rel=1e-3)
    hours_1 = one["expected_hours"]
    assert plan["workers_for_target"] == math.ceil(hours_1 / 24)
    assert "19,000" in format_plan(plan) and "needs" in format_plan(plan)


def test_plan_of_a_real_input_matches_the_predict_run(tiny_model, tmp_path):
    from chunkseg.pipeline.predict import run_predict

    path = tmp_path / "raw.ome.zarr"
    data = np.random.default_rng(0).integers(0, 4000, (2, 20, 40, 36), dtype=np.uint16)
    create_image(path, shape=data.shape, dtype=data.dtype,
                 attrs={"normalization": {"low": 0.0, "high": 4000.0}})[:] = data
    mark_complete(path)
    kw = dict(model=tiny_model, halo="auto", block=(16, 24, 24), memory_gib=0.05)
    plan = plan_run(path, **kw)
    run = run_predict(path, out=tmp_path / "p.zarr", progress=False, **kw)
    assert plan["shape"] == [2, 20, 40, 36] and plan["dtype"] == "uint16"
    for key in ("block", "tile", "batch", "group", "halo", "blocks", "tiles"):
        assert plan[key] == run[key], key
    assert plan["network_voxels"] == run["tile_voxels"]


def test_plan_errors_and_cli(capsys):
    from chunkseg.cli import main

    with pytest.raises(ParameterError, match="either an input path or --shape"):
        plan_run()
    with pytest.raises(ParameterError, match="4 positive ints"):
        plan_run(shape=(0, 5, 5, 5))
    with pytest.raises(ParameterError, match="workers must be >= 1"):
        plan_run(shape=(1, 8, 8, 8), workers=0)
    assert main(["plan", "--shape", "2", "16", "16", "16", "--json"]) == 0
    assert '"blocks": 2' in capsys.readouterr().out
    # tiny time points: several per predict task
    tiny = plan_run(shape=(1000, 8, 32, 32))
    assert tiny["group"] > 1 and tiny["graphs"] == math.ceil(1000 / tiny["group"])
    assert tiny["tasks"] == 1000 + tiny["graphs"]
    assert f"one graph per {tiny['group']} time points" in format_plan(tiny)
    # one 8 x 32 x 32 block is one tile: a network call takes that one tile, whatever
    # the series length or the group
    assert tiny["batch"] == 1
    info = model_info("default")
    call = math.prod(tiny["tile"]) * info.bytes_per_voxel / 2**30
    assert tiny["memory_per_worker"]["network_call_gib"] == round(call, 2) < 0.05
    # the parts add up, the allocator's kept free memory included
    mem = tiny["memory_per_worker"]
    assert mem["allocator_gib"] == round(TRIM_THRESHOLD / 2**30, 2)
    assert abs(mem["total_gib"] - sum(v for k, v in mem.items() if k != "total_gib")) <= 0.02
    assert f"kept free {mem['allocator_gib']}" in format_plan(tiny)
    assert main(["plan"]) == 2
    assert "neither" in capsys.readouterr().err


def test_calibration_says_when_and_how():
    cal = load_calibration()
    assert cal["network_voxels_per_s"] > 0 and cal["block_overhead_s"] > 0
    assert cal["measured"] and "calibrate_plan.py" in cal["how"] and cal["machine"]["cores"]
