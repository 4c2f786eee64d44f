"""``chunkseg predict`` on a real dask cluster: a ``dask scheduler`` and two ``dask worker``
processes on loopback; the output equals the default LocalCluster run.

Each worker loads the model once (per-worker cache) with TensorFlow sized to its one
thread; the model travels as a path, never pickled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chunkseg.io.store import create_image, mark_complete, open_array
from predict_helpers import random_model

SHAPE = (2, 20, 24, 22)
TIMEOUT = 90


def _dask_cmd(name: str) -> list[str]:
    exe = Path(sys.executable).with_name("dask")
    if exe.exists():
        return [str(exe), name]
    return [sys.executable, "-m", f"distributed.cli.dask_{name}"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Address of a loopback cluster: 1 scheduler + 2 single-thread workers (cleaned up)."""
    tmp = tmp_path_factory.mktemp("cluster")
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    log = open(tmp / "cluster.log", "w")
    procs = [subprocess.Popen(
        [*_dask_cmd("scheduler"), "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(sched_file)], stdout=log, stderr=subprocess.STDOUT, env=env)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while not sched_file.exists() and time.monotonic() < deadline:
            if procs[0].poll() is not None:
                pytest.fail(f"dask scheduler exited: {(tmp / 'cluster.log').read_text()}")
            time.sleep(0.2)
        if not sched_file.exists():
            pytest.fail("dask scheduler did not start within the timeout")
        time.sleep(0.3)  # the file is written before it is complete on slow disks
        address = json.loads(sched_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen(
                [*_dask_cmd("worker"), address, "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--memory-limit", "2GB", "--local-directory", str(tmp)],
                stdout=log, stderr=subprocess.STDOUT, env=env))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=TIMEOUT)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    model = random_model(tmp / "tiny.keras", seed=1)
    raw = tmp / "raw.ome.zarr"
    data = np.random.default_rng(5).integers(0, 4000, SHAPE).astype(np.uint16)
    arr = create_image(raw, shape=SHAPE, dtype=np.uint16, attrs={"kind": "raw"})
    arr[:] = data
    mark_complete(raw)
    return raw, model


def test_predict_on_scheduler_and_two_workers_equals_local_cluster(cluster, inputs, tmp_path):
    from chunkseg.pipeline.predict import run_predict

    raw, model = inputs
    kw = dict(model=model, halo="auto", block=(12, 12, 12), tile=32, progress=False)
    from chunkseg.engine.cluster import get_client

    with get_client(cluster) as client:
        remote = run_predict(raw, out=tmp_path / "remote.zarr", client=client, **kw)
    assert remote["workers"] == 2 and remote["threads"] == 2
    assert remote["blocks_written"] == remote["blocks"] == 2 * 2 * 2 * 2
    with get_client(None, workers=1, threads_per_worker=2, layout="model") as client:
        local = run_predict(raw, out=tmp_path / "local.zarr", client=client, **kw)
    assert local["workers"] == 1 and local["dashboard"]
    a = open_array(tmp_path / "remote.zarr")[:]
    b = open_array(tmp_path / "local.zarr")[:]
    assert a.shape == SHAPE and a.std() > 0.05
    # 1 vs 2 TensorFlow threads sum in another order: ~1e-6 apart, the seam bound is 1e-5
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_warm_loads_the_model_on_every_worker(cluster, inputs, tmp_path):
    """``UNetScorer.warm`` starts the model load on each worker before any block."""
    from chunkseg.engine.cluster import get_client
    from chunkseg.engine.plan import UNetScorer, plan_tiles
    from chunkseg.model.info import model_info

    model = random_model(tmp_path / "other.keras", seed=2)  # no worker has loaded it yet
    info = model_info(model)
    plan = plan_tiles(SHAPE[1:], info, halo=(2, 2, 2), block=(12, 12, 12))
    key = str(Path(model).resolve())

    def loaded() -> bool:
        from chunkseg.engine import predict

        return key in predict._MODELS

    with get_client(cluster) as client:
        assert set(client.run(loaded).values()) == {False}
        futures = UNetScorer(info, plan, plan.halo).warm(client)
        assert len(futures) == 2
        client.gather(futures)
        assert set(client.run(loaded).values()) == {True}
    assert UNetScorer(info, plan, plan.halo).warm(None) == []
