"""``chunkseg segment --resume``: a run whose flood phase failed for one block is
continued without redoing finished blocks, and gives the labels of a clean run."""

from __future__ import annotations

import json

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
