"""Crashes and lost workers: SIGKILL part-way, resume; kill a dask worker mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from chunkseg.engine.blocks import done_blocks, write_volume
from chunkseg.errors import IncompleteStoreError
from chunkseg.io.store import create_image, mark_complete, open_array, open_volume

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    data = rng.integers(100, 4000, size=(2, 24, 32, 32), dtype=np.uint16)
    path = tmp_path_factory.mktemp("faults") / "raw.ome.zarr"
    create_image(path, shape=data.shape, dtype=data.dtype, chunks=(8, 16, 16),
                 attrs={"kind": "raw", "normalization": {"low": 100.0, "high": 4000.0}})
    write_volume(da.from_array(data, chunks=(1, 8, 16, 16)), path, progress=False)
    mark_complete(path)
    return path


ARGS = ["--block", "8", "8", "8", "--halo", "4", "--scheduler", "sync", "--quiet"]
N_BLOCKS = 2 * 3 * 4 * 4


def _predict_cmd(raw: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chunkseg", "predict", str(raw), "--out", str(out),
            "--model", str(model), *ARGS, *extra]


def _bits(path: Path) -> np.ndarray:
    return open_array(path)[:].view(np.uint32)


@pytest.mark.subprocess
def test_sigkill_then_resume_is_identical_and_redoes_nothing(raw, tiny_model, tmp_path):
    clean = tmp_path / "clean.zarr"
    subprocess.run(_predict_cmd(raw, clean, tiny_model), check=True, capture_output=True)

    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_predict_cmd(raw, out, tiny_model), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(done_blocks(out)) < 8 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = done_blocks(out)
    assert 8 <= len(finished) < N_BLOCKS, f"kill came too late: {len(finished)} blocks done"
    with pytest.raises(IncompleteStoreError):
        open_volume(out)

    res = subprocess.run(_predict_cmd(raw, out, tiny_model, "--resume"), check=True,
                         capture_output=True, text=True)
    import json

    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["blocks_skipped"] >= len(finished)
    assert summary["blocks_written"] == N_BLOCKS - summary["blocks_skipped"]
    np.testing.assert_array_equal(_bits(out), _bits(clean))  # byte-identical voxels
    assert open_volume(out).attrs["complete"] is True


def test_resume_refuses_other_parameters(raw, tiny_model, tmp_path, capsys):
    from chunkseg.cli import main

    out = tmp_path / "p.zarr"
    assert main(["predict", str(raw), "--out", str(out), "--model", str(tiny_model), *ARGS]) == 0
    capsys.readouterr()
    code = main(["predict", str(raw), "--out", str(out), "--model", str(tiny_model),
                 "--block", "8", "8", "8", "--halo", "3", "--scheduler", "sync", "--quiet",
                 "--resume"])
    assert code == 2 and "differ from the first run" in capsys.readouterr().err


@pytest.mark.cluster
def test_killed_worker_run_still_finishes_identically(raw, tiny_model, tmp_path):
    distributed = pytest.importorskip("distributed")
    from chunkseg.pipeline.predict import run_predict

    kw = dict(model=tiny_model, block=(8, 8, 8), halo=4, progress=False)
    reference = tmp_path / "ref.zarr"
    env = {"TF_NUM_INTRAOP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True,
                                  dashboard_address=None, env=env) as cluster, \
            distributed.Client(cluster) as client:
        # the clean run on the same workers (TensorFlow's sums depend on its thread count)
        run_predict(raw, out=reference, client=client, **kw)
        out = tmp_path / "lost.zarr"
        killed: dict[str, int] = {}

        def assassin():
            while len(done_blocks(out)) < 6:
                time.sleep(0.02)
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            os.kill(pids[victim], signal.SIGKILL)
            killed[victim] = pids[victim]

        th = threading.Thread(target=assassin, daemon=True)
        th.start()
        summary = run_predict(raw, out=out, client=client, **kw)
        th.join(timeout=5)
    assert killed, "no worker was killed during the run"
    assert summary["blocks_written"] == N_BLOCKS
    np.testing.assert_array_equal(_bits(out), _bits(reference))
