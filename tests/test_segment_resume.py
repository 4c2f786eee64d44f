"""``chunkseg segment --resume``: a run whose flood phase failed for one block is
continued without redoing finished blocks, and gives the labels of a clean run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage

import chunkseg.engine.segment as engine_segment
from chunkseg.cli import main
from chunkseg.engine.blocks import write_volume
from chunkseg.errors import BlockFailedError, OutputExistsError, ResumeMismatchError
from chunkseg.io.store import create_image, mark_complete, open_volume, read_attrs
from chunkseg.pipeline.segment import run_segment

VS = (0.25, 0.125, 0.125)
BLOCK = (10, 24, 24)  # 2 x 2 x 2 blocks on a (20, 40, 40) volume (not dividing y, x)
OPTS = {"method": "flood", "seed_distance": 0.4, "min_size": 0.3, "block": BLOCK, "progress": False}
BAD = (0, 1, 0, 1)  # (t, bz, by, bx) of the flood block made to fail


@pytest.fixture(scope="module")
def prob(tmp_path_factory):
    from chunkseg.synth import synth_volume

    v = synth_volume((20, 40, 40), seed=3, voxel_size=VS, cell_diameter=2.5, noise=False,
                     blobs=False)
    rng = np.random.default_rng(1)
    p = ndimage.gaussian_filter(v.mask.astype(np.float32), (1.0, 1.5, 1.5))
    p = np.clip(p / p.max() + rng.normal(0, 0.08, p.shape), 0, 1).astype(np.float32)[None]
    path = tmp_path_factory.mktemp("prob") / "prob.zarr"
    create_image(path, shape=p.shape, dtype=p.dtype, voxel_size=VS,
                 attrs={"kind": "probability"})
    write_volume(da.from_array(p), path, progress=False)
    mark_complete(path)
    return path


@pytest.fixture(scope="module")
def clean(prob, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "labels.zarr"
    summary = run_segment(prob, out=out, **OPTS)
    return np.asarray(open_volume(out).data), summary, (out / "cells.csv").read_text()


def _failing_flood(monkeypatch):
    real = engine_segment._flood_task

    def flaky(read_prob, read_seeds, t, k, idx, *args):
        if (k, *idx) == BAD:
            raise RuntimeError(f"simulated crash in flood block {(k, *idx)}")
        return real(read_prob, read_seeds, t, k, idx, *args)

    monkeypatch.setattr(engine_segment, "_flood_task", flaky)


def test_resume_after_failed_flood_block(prob, clean, tmp_path, monkeypatch):
    labels, first, table = clean
    assert first["blocks"] == 8 and int(labels.max()) > 20
    assert first["writes"]["flood"] == {"written": 8, "skipped": 0}
    out = tmp_path / "labels.zarr"
    with monkeypatch.context() as m:
        _failing_flood(m)
        with pytest.raises(BlockFailedError, match=r"\(0, 1, 0, 1\)"):
            run_segment(prob, out=out, **OPTS)
    # nothing looks complete: no labels yet, the flood work store lacks one block
    assert not (out.exists() and read_attrs(out).get("complete"))
    assert not read_attrs(tmp_path / "labels.zarr.work" / "flood.zarr").get("complete")
    # without --resume / --overwrite the left-over work folder is refused
    with pytest.raises(OutputExistsError, match="labels.zarr.work"):
        run_segment(prob, out=out, **OPTS)
    # a resume with other parameters is refused (work stores' fingerprint)
    with pytest.raises(ResumeMismatchError, match="fingerprint"):
        run_segment(prob, out=out, resume=True, threshold=0.6, **OPTS)
    with pytest.raises(ResumeMismatchError, match="fingerprint"):
        run_segment(prob, out=out, resume=True, **{**OPTS, "block": (10, 20, 20)})

    summary = run_segment(prob, out=out, resume=True, **OPTS)
    assert summary["writes"]["seeds"] == {"written": 0, "skipped": 8}
    assert summary["writes"]["flood"] == {"written": 1, "skipped": 7}
    assert summary["writes"]["relabel"]["skipped"] == 0
    assert read_attrs(out)["complete"]
    assert np.array_equal(np.asarray(open_volume(out).data), labels)
    assert summary["n_cells"] == first["n_cells"]
    assert (out / "cells.csv").read_text() == table

    # resuming a complete output does nothing; other parameters are refused up front
    again = run_segment(prob, out=out, resume=True, **OPTS)
    assert again["resumed"] == "already complete"
    with pytest.raises(ResumeMismatchError, match="labels.zarr: cannot resume"):
        run_segment(prob, out=out, resume=True, threshold=0.6, **OPTS)


def test_resume_after_failed_seed_block(prob, clean, tmp_path, monkeypatch):
    labels = clean[0]
    out = tmp_path / "labels.zarr"
    real = engine_segment._seed_task

    def flaky(read, t, k, idx, *args):
        if (k, *idx) == BAD:
            raise RuntimeError(f"simulated crash in seed block {(k, *idx)}")
        return real(read, t, k, idx, *args)

    with monkeypatch.context() as m:
        m.setattr(engine_segment, "_seed_task", flaky)
        with pytest.raises(BlockFailedError, match=r"1 of 8 seed blocks failed.*\(0, 1, 0, 1\)"):
            run_segment(prob, out=out, **OPTS)
    assert not (out.exists() and read_attrs(out).get("complete"))
    summary = run_segment(prob, out=out, resume=True, **OPTS)
    assert summary["writes"]["seeds"] == {"written": 1, "skipped": 7}
    assert np.array_equal(np.asarray(open_volume(out).data), labels)


def test_cli_resume(prob, clean, tmp_path, capsys, monkeypatch):
    labels = clean[0]
    out = tmp_path / "cli.zarr"
    args = ["segment", str(prob), "--out", str(out), "--method", "flood", "--seed-distance", "0.4",
            "--min-size",
            "0.3", "--block", *map(str, BLOCK), "--scheduler", "sync", "--quiet"]
    with monkeypatch.context() as m:
        _failing_flood(m)
        assert main(args) != 0
    assert main(args) == 2  # work folder exists, no --resume
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["writes"]["flood"] == {"written": 1, "skipped": 7}
    assert np.array_equal(np.asarray(open_volume(out).data), labels)


@pytest.fixture(scope="module")
def series(prob, tmp_path_factory):
    """Three time points: the probability, mirrored in x, mirrored in y."""
    p = np.asarray(open_volume(prob).data[0])
    s = np.stack([p, p[:, :, ::-1], p[:, ::-1]])
    path = tmp_path_factory.mktemp("series") / "series.zarr"
    create_image(path, shape=s.shape, dtype=s.dtype, voxel_size=VS, attrs={"kind": "probability"})
    write_volume(da.from_array(s, chunks=(1, 20, 40, 40)), path, progress=False)
    mark_complete(path)
    return path


def test_a_crash_in_the_global_step_leaves_a_partial_cell_table_that_resume_rewrites(
        series, tmp_path, monkeypatch):
    clean = run_segment(series, out=tmp_path / "clean.zarr", **OPTS)
    table = (tmp_path / "clean.zarr" / "cells.csv").read_text()
    assert len(clean["n_cells"]) == 3 and clean["table_rows"] == sum(clean["n_cells"])
    out = tmp_path / "labels.zarr"
    real = engine_segment._save_npz

    def crash_at_second_plan(path, **arrays):
        if path.name == "cells_000001.npz":
            raise MemoryError("simulated crash in the global step of time point 1")
        real(path, **arrays)

    with monkeypatch.context() as m:
        m.setattr(engine_segment, "_save_npz", crash_at_second_plan)
        with pytest.raises(MemoryError):
            run_segment(series, out=out, **OPTS)
    partial = (tmp_path / "labels.zarr.work" / "cells.csv").read_text().splitlines()
    assert partial[0] == table.splitlines()[0]
    assert 1 < len(partial) and {row.split(",")[0] for row in partial[1:]} == {"0"}
    summary = run_segment(series, out=out, resume=True, **OPTS)
    assert summary["writes"]["flood"] == {"written": 0, "skipped": 3 * 8}
    assert summary["table_rows"] == clean["table_rows"]
    assert (out / "cells.csv").read_text() == table  # no row lost, none twice
    assert np.array_equal(np.asarray(open_volume(out).data),
                          np.asarray(open_volume(tmp_path / "clean.zarr").data))


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_sigkill_while_the_cell_table_grows_then_resume_is_identical(tmp_path):
    rng = np.random.default_rng(2)
    p = (rng.random((150, 8, 32, 32), dtype=np.float32) ** 4).astype(np.float32)
    prob = tmp_path / "prob.zarr"
    create_image(prob, shape=p.shape, dtype=p.dtype, attrs={"kind": "probability"})
    write_volume(da.from_array(p, chunks=(1, 8, 32, 32)), prob, progress=False)
    mark_complete(prob)

    def segment(out, *extra):
        return [sys.executable, "-m", "chunkseg", "segment", str(prob), "--out", str(out),
                "--quiet", *extra]

    subprocess.run(segment(tmp_path / "clean.zarr"), check=True, capture_output=True)
    out = tmp_path / "killed.zarr"
    growing = tmp_path / "killed.zarr.work" / "cells.csv"
    proc = subprocess.Popen(segment(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if growing.is_file() and growing.read_text().count("\n") > 1:  # rows past the header
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out.exists() and read_attrs(out).get("complete"))
    assert growing.is_file(), "kill came too late: the table was already moved"
    subprocess.run(segment(out, "--resume"), check=True, capture_output=True)
    clean = tmp_path / "clean.zarr"
    assert (out / "cells.csv").read_text() == (clean / "cells.csv").read_text()
    np.testing.assert_array_equal(np.asarray(open_volume(out).data),
                                  np.asarray(open_volume(clean).data))
