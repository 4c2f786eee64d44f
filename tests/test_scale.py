"""Long series: crash and resume at 1000 time points, cluster size does not change results.

The write path keeps one completion manifest per time point and submits time points in
a sliding window; a run killed with SIGKILL resumes from the manifests, skipping
finished blocks, and ends byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from chunkseg.engine.blocks import Series, done_blocks, write_volume
from chunkseg.engine.manifest import PROGRESS_LOG, Manifest
from chunkseg.engine.submit import compute_windowed, run_windowed
from chunkseg.io.store import create_image, mark_complete, open_array

pytestmark = pytest.mark.timeout(600)

N_T, SHAPE = 1000, (4, 8, 8)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    data = np.random.default_rng(5).integers(0, 4000, (N_T, *SHAPE), dtype=np.uint16)
    path = tmp_path_factory.mktemp("series") / "raw.ome.zarr"
    create_image(path, shape=data.shape, dtype=data.dtype, chunks=SHAPE)
    write_volume(da.from_array(data, chunks=(1, *SHAPE)), path, progress=False)
    mark_complete(path)
    return path


def _normalize(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chunkseg", "normalize", str(src), "--out", str(out),
            "--range", "100", "3000", *extra]


def test_sigkill_of_a_1000_timepoint_run_then_resume_is_identical(series, tmp_path):
    clean = tmp_path / "clean.zarr"
    subprocess.run(_normalize(series, clean), check=True, capture_output=True)
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_normalize(series, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    manifest = Manifest(out)
    while proc.poll() is None and time.monotonic() < deadline:
        if len(manifest.timepoints()) >= 200:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = done_blocks(out)
    assert 200 <= len(finished) < N_T, f"kill came too late: {len(finished)} blocks done"
    res = subprocess.run(_normalize(series, out, "--resume"), check=True, capture_output=True,
                         text=True)
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["blocks_skipped"] >= len(finished)
    assert summary["blocks_written"] == N_T - summary["blocks_skipped"]
    np.testing.assert_array_equal(open_array(out)[:], open_array(clean)[:])
    logged = [json.loads(line) for line in (out / PROGRESS_LOG).read_text().splitlines()]
    assert {entry["t"] for entry in logged} >= set(range(N_T)) - {t for t, *_ in finished}


def test_manifest_skips_a_truncated_last_line(tmp_path):
    m = Manifest(tmp_path)
    m.record((3, 0, 1, 2))
    m.record((3, 1, 0, 0))
    with open(m.path(3), "a") as fh:
        fh.write("3.2.")  # a process killed mid-line
    assert m.read(3) == {(3, 0, 1, 2), (3, 1, 0, 0)}
    assert m.timepoints() == [3] and done_blocks(tmp_path) == m.read(3)


@pytest.mark.parametrize("fragment", ["3.2.", "3.0.1.1"])  # the second reads as an index
def test_a_record_after_a_truncated_line_is_kept_and_the_fragment_stays_unread(tmp_path,
                                                                             fragment):
    m = Manifest(tmp_path)
    m.record((3, 0, 0, 0))
    with open(m.path(3), "a") as fh:
        fh.write(fragment)  # killed mid-line, e.g. while writing "3.0.1.12"
    m.record((3, 1, 1, 1))  # the resumed run appends
    m.record((3, 1, 1, 2))
    assert m.read(3) == {(3, 0, 0, 0), (3, 1, 1, 1), (3, 1, 1, 2)}


def test_window_bounds_the_graphs_built_ahead(tmp_path):
    built: list[int] = []
    finished: list[int] = []

    def slab(a: int, b: int) -> da.Array:
        built.append(a)
        # never more than one window of time points built ahead of the finished ones
        assert a - len(finished) <= 4
        return da.full((b - a, 3, 3, 3), a, dtype=np.uint8, chunks=(1, 3, 3, 3))

    out = tmp_path / "w.zarr"
    create_image(out, shape=(40, 3, 3, 3), dtype=np.uint8, chunks=(3, 3, 3))
    real_record = Manifest.record

    def record(self, idx):
        finished.append(idx[0])
        real_record(self, idx)

    Manifest.record = record
    try:
        rep = write_volume(Series((40, 3, 3, 3), np.uint8, slab), out, progress=False, window=4)
    finally:
        Manifest.record = real_record
    assert built == list(range(40)) and rep.written == 40
    np.testing.assert_array_equal(open_array(out)[:, 0, 0, 0], np.arange(40))


def test_a_series_of_several_time_points_per_slab_writes_and_resumes_each_block(tmp_path):
    data = np.random.default_rng(6).random((10, 5, 7, 6)).astype(np.float32)
    slabs: list[tuple[int, int]] = []

    def slab(a: int, b: int) -> da.Array:  # one chunk along t: a task per block of b - a
        slabs.append((a, b))
        return da.from_array(data[a:b], chunks=(b - a, 3, 4, 6))

    def run(out: Path, **kw):
        slabs.clear()
        return write_volume(Series(data.shape, np.float32, slab, step=4), out, progress=False,
                            **kw)

    out = tmp_path / "s.zarr"
    create_image(out, shape=data.shape, dtype=np.float32, chunks=(3, 4, 6), shards=(3, 4, 6))
    rep = run(out)
    assert slabs == [(0, 4), (4, 8), (8, 10)] and rep.written == 10 * 4
    np.testing.assert_array_equal(open_array(out)[:], data)
    log = [json.loads(line)["t"] for line in (out / PROGRESS_LOG).read_text().splitlines()]
    assert sorted(log) == list(range(10))
    # resume after a crash that left time points 4-7 partly written: slab (4, 8) again,
    # only its missing blocks rewritten; (0, 4) is built once for the block grid, (8, 10)
    # not at all
    (out / ".chunkseg" / "done" / "t000005.log").unlink()
    Manifest(out).path(6).write_text("6.0.0.0\n")
    arr = open_array(out, mode="r+")
    arr[5], arr[6, 3:], arr[6, :3, 4:] = 0, 0, 0  # all but the one block recorded
    rep = run(out, resume=True)
    assert slabs == [(0, 4), (4, 8)] and rep.written == 4 + 3 and rep.skipped == 40 - 7
    np.testing.assert_array_equal(open_array(out)[:], data)
    assert done_blocks(out) == {(t, z, y, 0) for t in range(10) for z in range(2)
                                for y in range(2)}


def test_compute_windowed_keeps_order_and_raises():
    import dask

    assert compute_windowed((dask.delayed(abs)(-i) for i in range(7)), window=2) == list(range(7))
    with pytest.raises(ZeroDivisionError):
        compute_windowed([dask.delayed(lambda: 1 / 0)()])
    seen = []
    failed, error = run_windowed([[("a", dask.delayed(int)("x"))], [("b", dask.delayed(int)(2))]],
                                 lambda tag, r: seen.append((tag, r)), retries=1)
    assert failed == ["a"] and "ValueError" in error and seen == [("b", 2)]


@pytest.mark.cluster
def test_a_series_leaves_no_per_timepoint_state_in_client_or_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    from chunkseg.engine.cluster import get_client

    class KeyNames(distributed.diagnostics.plugin.SchedulerPlugin):
        def update_graph(self, scheduler, **kwargs) -> None:  # noqa: ARG002
            names.update(str(k) for k in scheduler.tasks)

    def slab(a: int, b: int) -> da.Array:  # a few layers per time point, as a real command
        x = da.full((b - a, 4, 6, 6), a, dtype=np.int32, chunks=(1, 4, 3, 3))
        return (x + 1).map_blocks(np.negative).rechunk((1, 4, 6, 6))

    names = set()
    with get_client(workers=1, threads_per_worker=2, quiet=True) as client:
        scheduler = client.cluster.scheduler
        spans = scheduler.extensions["spans"]
        scheduler.add_plugin(KeyNames())
        for n_t in (3, 60):
            out = tmp_path / f"s{n_t}.zarr"
            create_image(out, shape=(n_t, 4, 6, 6), dtype=np.int32, chunks=(4, 6, 6))
            write_volume(Series((n_t, 4, 6, 6), np.int32, slab), out, client=client,
                         progress=False, desc="predict")
            np.testing.assert_array_equal(open_array(out)[:, 0, 0, 0], -1 - np.arange(n_t))
            groups = {tg.name for span in spans.spans.values() for tg in span.groups}
            # per command, not per time point: nothing the scheduler keeps grows with n_t
            assert groups == {"predict"}, groups
            # releases reach the scheduler asynchronously: give them a moment
            deadline = time.monotonic() + 10
            while (scheduler.tasks or client.futures) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not scheduler.tasks and not client.futures and not scheduler.computations
        assert scheduler.transition_log.maxlen == 100
    assert {"predict-t0000-0.0.0-", "predict-t0059-rechunk_merge-0,0,0,0-"} <= {
        name[: -8] for name in names}


@pytest.mark.slow
def test_four_workers_equal_one_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    from chunkseg.pipeline.normalize import run_normalize
    from chunkseg.pipeline.segment import run_segment

    raw = tmp_path / "raw.zarr"
    data = np.random.default_rng(6).integers(0, 4000, (24, *SHAPE), dtype=np.uint16)
    create_image(raw, shape=data.shape, dtype=data.dtype, chunks=SHAPE)[:] = data
    mark_complete(raw)
    outs = {}
    for n in (1, 4):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            norm = tmp_path / f"n{n}.zarr"
            run_normalize(raw, norm, client=client, progress=False)
            prob = tmp_path / f"p{n}.zarr"
            create_image(prob, shape=(6, 20, 24, 22), dtype=np.float32,
                         attrs={"kind": "probability"})
            rng = np.random.default_rng(2)
            p = rng.random((6, 20, 24, 22), dtype=np.float32) ** 3
            write_volume(da.from_array(p, chunks=(1, 7, 9, 8)), prob, client=client,
                         progress=False)
            mark_complete(prob)
            seg = tmp_path / f"s{n}.zarr"
            run_segment(prob, out=seg, block=(7, 9, 8), client=client, progress=False)
            outs[n] = (open_array(norm)[:], open_array(prob)[:], open_array(seg)[:],
                       (seg / "cells.csv").read_text())
    for a, b in zip(outs[1], outs[4]):
        if isinstance(a, str):
            assert a == b
        else:
            np.testing.assert_array_equal(a, b)
