"""chunkseg.engine.predict and ``chunkseg predict``: chunked == whole-volume, outputs, errors.

The engine is tested with a SciPy stand-in network (known receptive field, pooling-phase
dependence), the pipeline with a tiny random-weights U-Net (depth 2: receptive-field
radius 9, pooling factor 2) saved as a chunkseg model.
"""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkseg.engine.blocks import done_blocks
from chunkseg.engine.manifest import Manifest
from chunkseg.engine.predict import (
    ModelSpec,
    block_grid,
    clip_halo,
    get_model,
    mirror_region,
    predict_array,
    tile_stats,
)
from chunkseg.errors import (
    ClusterError,
    ModelError,
    OutputExistsError,
    ParameterError,
    ResumeMismatchError,
    ShapeError,
)
from chunkseg.io.store import create_image, mark_complete, open_array, open_volume, read_attrs
from predict_helpers import random_model

R, P = 3, 4
SHAPE = (2, 26, 30, 28)


def fake_net(x: np.ndarray) -> np.ndarray:
    """Box filter radius R, zero padding, plus a term depending on the pooling phase."""
    y = ndi.uniform_filter(x, size=(1, 2 * R + 1, 2 * R + 1, 2 * R + 1, 1), mode="constant")
    for axis in (1, 2, 3):
        idx = (np.arange(x.shape[axis]) % P) / P * 0.01
        y = y + idx.reshape([-1 if i == axis else 1 for i in range(5)])
    return y


# ----------------------------------------------------------------------------- engine


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(*(st.integers(1, 9),) * 3), width=st.tuples(*(st.integers(0, 20),) * 3),
       data=st.data())
def test_mirror_region_equals_numpy_symmetric_for_any_width(shape, width, data):
    a = np.arange(np.prod(shape)).reshape(shape)
    start = [data.draw(st.integers(-w, n + w - 1)) for n, w in zip(shape, width)]
    stop = [data.draw(st.integers(s + 1, n + w)) for s, n, w in zip(start, shape, width)]
    reads = []

    def read(region):
        reads.append(region)
        return a[region]

    got = mirror_region(read, shape, start, stop)
    ref = np.pad(a, [(w, w) for w in width], mode="symmetric")
    np.testing.assert_array_equal(
        got, ref[tuple(slice(s + w, e + w) for s, e, w in zip(start, stop, width))])
    assert len(reads) == 1  # one read of the bounding box


def test_block_grid():
    assert block_grid(37, 16, 10) == (26, 16, 15)  # last block (5) smaller than the halo
    assert block_grid(37, 37, 10) == (57,)
    assert block_grid(32, 16, 4) == (20, 20)


@pytest.mark.parametrize("block,halo", [((16, 20, 18), 3), ((7, 9, 30), 5), ((6, 8, 7), 4)])
def test_predict_array_odd_blocks_equal_whole_volume(block, halo):
    a = np.random.default_rng(1).integers(0, 256, (37, 45, 41)).astype(np.uint8)
    x = da.from_array(a, chunks=(8, 16, 16))
    kw = dict(halo=halo, pool=P, receptive=R, scale=1 / 255)
    whole = predict_array(x, fake_net, block=a.shape, tile=48, **kw).compute()
    chunked = predict_array(x, fake_net, block=block, tile=(12, 16, 16), **kw)
    assert chunked.chunks == tuple(
        tuple(min(b, n - s) for s in range(0, n, b)) for b, n in zip(block, a.shape))
    np.testing.assert_allclose(chunked.compute(), whole, atol=1e-6)
    # in-memory reference: mirror the border by the halo, filter, add the pooling phase
    pad = np.pad(a.astype(np.float32) / 255, halo, mode="symmetric")
    ref = ndi.uniform_filter(pad, 2 * R + 1, mode="constant")[(slice(halo, -halo),) * 3]
    ref += sum(((np.arange(n) % P) / P * 0.01).reshape([-1 if i == k else 1 for i in range(3)])
               for k, n in enumerate(a.shape))
    np.testing.assert_allclose(chunked.compute(), ref, atol=1e-6)


@pytest.mark.parametrize("group", [2, 3, 7])
def test_grouped_timepoints_equal_each_time_point_alone(group):
    # 7 time points in groups that do not divide them; blocks that do not divide the
    # volume; tiles of two blocks per call
    a = np.random.default_rng(4).integers(0, 256, (7, 13, 22, 19)).astype(np.uint8)
    x = da.from_array(a, chunks=(1, 8, 16, 16))
    kw = dict(block=(13, 12, 10), halo=3, tile=(12, 16, 16), pool=P, receptive=R, batch=5,
              scale=1 / 255)
    net = Counting()
    grouped = predict_array(x, net, group=group, **kw)
    assert grouped.chunks[0] == tuple(min(group, 7 - s) for s in range(0, 7, group))
    got = grouped.compute(scheduler="sync")
    alone = np.stack([predict_array(x[t], fake_net, **kw).compute() for t in range(7)])
    np.testing.assert_array_equal(got, alone)
    assert net.tiles == 7 * tile_stats(a.shape[1:], **{k: kw[k] for k in (
        "block", "halo", "tile", "pool", "receptive")})["tiles"]


class Counting:
    """fake_net that records the tiles and voxels it was given."""

    def __init__(self):
        self.tiles = self.voxels = self.largest = 0

    def __call__(self, x):
        self.tiles += x.shape[0]
        self.voxels += x[..., 0].size
        self.largest = max(self.largest, x.shape[0])
        return fake_net(x)


def test_tile_stats_counts_what_is_predicted():
    x = da.zeros((37, 45, 41), chunks=(8, 16, 16), dtype=np.float32)
    kw = dict(block=(16, 20, 18), halo=5, tile=(12, 16, 16), pool=P, receptive=R)
    net = Counting()
    predict_array(x, net, batch=3, **kw).compute(scheduler="sync")
    stats = tile_stats(x.shape, **kw)
    assert {k: stats[k] for k in ("tiles", "tile_voxels")} == {"tiles": net.tiles,
                                                                "tile_voxels": net.voxels}
    net = Counting()  # a batch beyond one block's tiles: a call takes one block's tiles
    predict_array(x, net, batch=10_000, **kw).compute(scheduler="sync")
    assert 1 < net.largest == stats["block_tiles"] < stats["tiles"]


def test_predict_array_errors():
    x = da.zeros((20, 20, 20), chunks=10)
    with pytest.raises(ParameterError, match="halo .* is larger than the block"):
        predict_array(x, fake_net, block=5, halo=6, tile=16, pool=P)
    with pytest.raises(ParameterError, match=r"larger than the block \(8, 8, 8\) on an axis "
                       r"split .*volume \(16, 8, 8\)"):
        predict_array(da.zeros((16, 8, 8), chunks=8), fake_net, block=8, halo=9, tile=16, pool=P)
    with pytest.raises(ParameterError, match="multiple of the model's pooling factor"):
        predict_array(x, fake_net, block=10, halo=3, tile=(16, 18, 16), pool=P)
    with pytest.raises(ShapeError, match=r"3D \(z, y, x\) or 4D"):
        predict_array(da.zeros((2, 2, 20, 20, 20)), fake_net, block=10, halo=3, tile=16)
    with pytest.raises(ParameterError, match="group must be >= 1"):
        predict_array(da.zeros((2, 20, 20, 20)), fake_net, block=10, halo=3, tile=16, group=0)
    assert tile_stats((20, 20, 20), block=20, halo=3, tile=32, pool=P)["tiles"] == 1


def test_halo_beyond_a_whole_axis_block_is_clipped_to_the_volume():
    a = np.random.default_rng(2).random((6, 20, 20)).astype(np.float32)
    x = da.from_array(a, chunks=(6, 10, 10))
    kw = dict(tile=(16, 12, 12), pool=P, receptive=R)
    # z: one block covers the axis (halo 9 -> 6, all mirror); y, x: two blocks, halo 5
    got = predict_array(x, fake_net, block=(8, 10, 10), halo=(9, 5, 5), **kw)
    ref = predict_array(x, fake_net, block=(8, 10, 10), halo=(6, 5, 5), **kw)
    np.testing.assert_array_equal(got.compute(), ref.compute())
    assert clip_halo((9, 5, 12), (6, 10, 20), (6, 20, 20)) == (6, 5, 12)
    assert (tile_stats(a.shape, block=(8, 10, 10), halo=(99, 5, 5), **kw)
            == tile_stats(a.shape, block=(8, 10, 10), halo=(6, 5, 5), **kw))


# ----------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    rng = np.random.default_rng(3)
    smooth = ndi.gaussian_filter(rng.random(SHAPE), (0, 1.5, 1.5, 1.5))
    data = (smooth * 4000).astype(np.uint16)
    path = tmp_path_factory.mktemp("raw") / "raw.ome.zarr"
    arr = create_image(path, shape=SHAPE, dtype=np.uint16, voxel_size=(2.0, 0.5, 0.5),
                       attrs={"kind": "raw"})
    arr[:] = data
    mark_complete(path)
    return path


def predict(raw, out, model, **kw):
    kw.setdefault("progress", False)
    return run_predict(raw, model=model, out=out, **kw)


from chunkseg.model.info import model_info  # noqa: E402
from chunkseg.ops.slices import parse_timepoints  # noqa: E402
from chunkseg.pipeline.plan import plan_run  # noqa: E402
from chunkseg.pipeline.predict import mask_path_for, run_predict  # noqa: E402


def test_seamless_halo_auto_equals_whole_volume_pass(raw, tiny_model, tmp_path):
    whole = predict(raw, tmp_path / "whole.zarr", tiny_model, halo="auto", block=SHAPE[1:],
                    tile=64, timepoints="1:2")
    assert whole["tiles"] == 1 and whole["seam_free"]
    ref = open_array(tmp_path / "whole.zarr")[:]
    assert ref.std() > 0.05  # the output varies, so 1e-5 is a strict bound
    # several blocks per axis, none dividing the shape, last blocks (6) smaller than the
    # halo (9); two tiles per block axis
    s = predict(raw, tmp_path / "auto.zarr", tiny_model, halo="auto", block=(10, 12, 11),
                tile=28, timepoints="1:2")
    assert s["halo"] == [9, 9, 9] and s["blocks"] == 27 and s["tiles"] > 27 * 4
    got = open_array(tmp_path / "auto.zarr")[:]
    assert np.abs(got - ref).max() <= 1e-5
    # the check has teeth: a halo below the receptive field leaves seams
    predict(raw, tmp_path / "short.zarr", tiny_model, halo=3, block=(10, 12, 11), tile=28,
            timepoints="1:2")
    assert np.abs(open_array(tmp_path / "short.zarr")[:] - ref).max() > 1e-5


def test_outputs_dtype_threshold_attrs(raw, tiny_model, tmp_path):
    out = tmp_path / "p8.ome.zarr"
    s = predict(raw, out, tiny_model, halo="auto", block=(13, 16, 16), dtype="uint8",
                threshold=0.5)
    assert set(s) >= {"voxels", "seconds", "voxels_per_s", "halo", "tiles", "workers", "mask"}
    assert s["voxels"] == int(np.prod(SHAPE))
    vol = open_volume(out)
    assert vol.shape == SHAPE and vol.dtype == np.uint8 and vol.voxel_size == (2.0, 0.5, 0.5)
    attrs = read_attrs(out)
    assert attrs["kind"] == "probability" and attrs["complete"]
    assert attrs["normalization"]["source"] == "computed"
    p8 = vol.data.compute()
    mask = open_volume(mask_path_for(out)).data.compute()
    assert s["mask"] == str(mask_path_for(out)) == str(tmp_path / "p8_mask.ome.zarr")
    np.testing.assert_array_equal(mask, (p8.astype(np.float32) / 255 >= 0.5).astype(np.uint8))
    assert 0 < mask.mean() < 1
    f32 = predict(raw, tmp_path / "p32.zarr", tiny_model, halo="auto", block=(13, 16, 16))
    p32 = open_array(tmp_path / "p32.zarr")[:]
    assert f32["tiles"] == s["tiles"]
    assert np.abs(p8 / 255.0 - p32).max() <= 0.5 / 255 + 1e-6
    predict(raw, tmp_path / "p16.zarr", tiny_model, halo="auto", block=(13, 16, 16),
            dtype="float16")
    np.testing.assert_allclose(open_array(tmp_path / "p16.zarr")[:], p32, atol=1e-3)


def test_stored_range_and_tiff_input(raw, tiny_model, tmp_path):
    import tifffile

    data = open_array(raw)[0]
    src = tmp_path / "norm.ome.zarr"
    arr = create_image(src, shape=(1, *data.shape), dtype=np.uint16,
                       attrs={"kind": "raw", "normalization": {"low": 100, "high": 3000}})
    arr[:] = data[None]
    mark_complete(src)
    s = predict(src, tmp_path / "a.zarr", tiny_model, block=16)
    assert s["normalization"]["source"] == "input" and s["normalization"]["high"] == 3000
    tif = tmp_path / "raw.tif"
    tifffile.imwrite(tif, data)
    s2 = predict(tif, tmp_path / "b.zarr", tiny_model, block=16)
    assert open_volume(tmp_path / "b.zarr").shape == (1, *data.shape)
    assert s2["normalization"]["source"] == "computed"


def test_resume_recomputes_only_missing_blocks(raw, tiny_model, tmp_path):
    out = tmp_path / "r.zarr"
    kw = dict(halo="auto", block=(13, 16, 16))
    first = predict(raw, out, tiny_model, **kw)
    assert first["blocks_written"] == first["blocks"] == 2 * 2 * 2 * 2
    full = open_array(out)[:]
    manifest = Manifest(out).path(1)
    lines = manifest.read_text().splitlines()
    manifest.write_text("".join(f"{v}\n" for v in lines if v != "1.1.0.1"))
    arr = open_array(out, mode="r+")
    arr[1, 13:, :16, 16:] = 0
    with pytest.raises(OutputExistsError, match="exists"):
        predict(raw, out, tiny_model, **kw)
    again = predict(raw, out, tiny_model, resume=True, **kw)
    assert again["blocks_written"] == 1 and again["blocks_skipped"] == 15
    np.testing.assert_array_equal(open_array(out)[:], full)
    assert len(done_blocks(out)) == 16


def test_every_default_on_volumes_thinner_than_the_halo(tiny_model, tmp_path):
    # 8 slices, default halo 10: z is one block, its halo all mirror, clipped to 8
    data = np.random.default_rng(4).integers(100, 4000, (2, 8, 32, 32)).astype(np.uint16)
    path = tmp_path / "thin.ome.zarr"
    create_image(path, shape=data.shape, dtype=np.uint16, attrs={"kind": "raw"})[:] = data
    mark_complete(path)
    summary = predict(path, tmp_path / "p.zarr", tiny_model)
    assert summary["halo"] == [8, 10, 10] and summary["block"] == [8, 32, 32]
    predict(path, tmp_path / "ref.zarr", tiny_model, halo=(8, 10, 10))
    np.testing.assert_array_equal(open_array(tmp_path / "p.zarr")[:],
                                  open_array(tmp_path / "ref.zarr")[:])


def test_tiny_time_points_grouped_per_task_equal_ungrouped(tiny_model, tmp_path, monkeypatch):
    import chunkseg.engine.plan as plan

    # 7 thin time points (one block each, shapes the pooling factor does not divide):
    # grouped 3 per task (3 + 3 + 1), against one per task
    data = np.random.default_rng(5).integers(100, 4000, (7, 7, 30, 26)).astype(np.uint16)
    path = tmp_path / "tiny.ome.zarr"
    create_image(path, shape=data.shape, dtype=np.uint16, attrs={"kind": "raw"})[:] = data
    mark_complete(path)
    per_block = plan_run(path, model=tiny_model)["network_voxels"] // 7
    monkeypatch.setattr(plan, "GROUP_VOXELS", 3 * per_block)
    grouped = predict(path, tmp_path / "g.zarr", tiny_model)
    monkeypatch.setattr(plan, "GROUP_VOXELS", 1)
    alone = predict(path, tmp_path / "a.zarr", tiny_model)
    assert (grouped["group"], alone["group"]) == (3, 1)
    assert grouped["blocks_written"] == alone["blocks_written"] == 7
    np.testing.assert_array_equal(open_array(tmp_path / "g.zarr")[:],
                                  open_array(tmp_path / "a.zarr")[:])
    assert len(done_blocks(tmp_path / "g.zarr")) == 7
    log = (tmp_path / "g.zarr" / "progress.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["t"] for line in log) == list(range(7))


def test_timepoints():
    assert parse_timepoints(None, 5) == (0, 5)
    assert parse_timepoints("1:3", 5) == (1, 3)
    assert parse_timepoints("2", 5) == (2, 3)
    assert parse_timepoints(":2", 5) == (0, 2)
    assert parse_timepoints((3, 5), 5) == (3, 5)
    for bad in ["3:1", "0:9", "a:b", "1:2:3", (-1, 2)]:
        with pytest.raises(ParameterError, match="timepoints"):
            parse_timepoints(bad, 5)


def test_model_cache_loads_once_and_spec_pickles_small(tiny_model):
    m1 = get_model(tiny_model)
    m2 = get_model(str(tiny_model))
    assert m1 is m2
    spec = ModelSpec(str(tiny_model), threads=1)
    assert len(pickle.dumps(spec)) < 500  # the task carries a path, never the network
    y = spec(np.zeros((1, 8, 8, 8, 1), np.float32))
    assert y.shape == (1, 8, 8, 8, 1)


def test_bad_input_errors(raw, tiny_model, tmp_path):
    out = tmp_path / "o.zarr"
    with pytest.raises(ParameterError, match="halo .* is larger than the block"):
        predict(raw, out, tiny_model, halo=12, block=(10, 10, 10))
    with pytest.raises(ParameterError, match="multiple of the model's pooling factor"):
        predict(raw, out, tiny_model, tile=(16, 17, 16))
    limit = model_info(tiny_model).max_call_voxels
    with pytest.raises(ParameterError, match=f"voxels per network call; model .* takes at most "
                       f"{limit:,}"):
        predict(raw, out, tiny_model, tile=(20, 20, 20), batch=limit // 20**3 + 1)
    assert not out.exists()
    with pytest.raises(ModelError, match="does not exist"):
        predict(raw, out, tmp_path / "missing.keras")
    not_zip = tmp_path / "junk.keras"
    not_zip.write_text("not a model")
    with pytest.raises(ModelError, match="not a Keras .keras archive"):
        predict(raw, out, not_zip)
    plain = tmp_path / "plain.keras"
    shutil.copy(tiny_model, plain)
    with zipfile.ZipFile(tiny_model) as zin, zipfile.ZipFile(plain, "w") as zout:
        for item in zin.namelist():
            if item != "chunkseg.json":
                zout.writestr(item, zin.read(item))
    with pytest.raises(ModelError, match="no chunkseg metadata"):
        predict(raw, out, plain)
    import tifffile

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((16, 16), np.uint16))
    with pytest.raises(ShapeError, match="expected a 3D .* or 4D"):
        predict(flat, out, tiny_model)
    for kw, msg in [({"dtype": "int16"}, "dtype must be"), ({"blend": "max"}, "blend must be"),
                    ({"threshold": 2.0}, "threshold must be"), ({"halo": "big"}, "halo must be"),
                    ({"timepoints": "5:9"}, "timepoints")]:
        with pytest.raises(ParameterError, match=msg):
            predict(raw, out, tiny_model, **kw)
    assert not out.exists()


def test_unreachable_scheduler_fails_fast(raw, tiny_model, tmp_path, capsys):
    import socket

    from chunkseg.cli import main
    from chunkseg.engine.cluster import get_client

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ClusterError, match="could not reach the dask scheduler"):
        with get_client(f"tcp://127.0.0.1:{port}", timeout=2):
            pass
    assert time.perf_counter() - start < 30
    code = main(["predict", str(raw), "--model", str(tiny_model), "--out",
                 str(tmp_path / "o.zarr"), "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert code == 2 and "could not reach the dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()


def test_cli_predict(raw, tiny_model, tmp_path, capsys):
    from chunkseg.cli import main

    out = tmp_path / "cli.zarr"
    code = main(["predict", str(raw), "--model", str(tiny_model), "--out", str(out),
                 "--halo", "auto", "--block", "13", "16", "16", "--timepoints", "0:1",
                 "--scheduler", "threads", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["timepoints"] == [0, 1] and summary["halo"] == [9, 9, 9]
    assert open_volume(out).shape == (1, *SHAPE[1:])
    code = main(["predict", str(raw), "--model", str(tiny_model), "--out", str(out),
                 "--scheduler", "threads"])
    assert code == 2
    assert "chunkseg predict: error:" in capsys.readouterr().err


def test_demo_end_to_end(tiny_model, tmp_path):
    from chunkseg.workflows.demo import run_demo

    s = run_demo(tmp_path / "demo", model=tiny_model, shape=(12, 40, 40), timepoints=1,
                 progress=False)
    for key in ("raw", "probability", "mask", "truth", "report"):
        assert Path(s[key]).exists(), key
    assert all(Path(p).is_file() and p.endswith(".png") for p in s["pngs"])
    assert 0.0 <= s["iou"] <= 1.0 and s["voxels_per_s"] > 0 and s["halo"] == [9, 9, 9]
    assert open_volume(s["mask"]).dtype == np.uint8


def test_demo_fails_clearly_without_model(tmp_path):
    from chunkseg.workflows.demo import run_demo

    with pytest.raises(ModelError, match="does not exist"):
        run_demo(tmp_path / "demo", model=tmp_path / "nope.keras")
    assert not (tmp_path / "demo").exists()


def _normalized(path, data):
    """A uint8 8-bit-normalised store (predict reads it as is: no range in the fingerprint)."""
    arr = create_image(path, shape=data.shape, dtype=np.uint8, voxel_size=(2.0, 0.5, 0.5),
                       attrs={"kind": "normalized"}, overwrite=True)
    arr[:] = data
    mark_complete(path)
    return path


def test_resume_refuses_an_input_rewritten_with_the_same_shape(tiny_model, tmp_path):
    rng = np.random.default_rng(5)
    shape = (1, 12, 16, 16)
    inp = _normalized(tmp_path / "in.ome.zarr", rng.integers(0, 255, shape, dtype=np.uint8))
    out = tmp_path / "p.ome.zarr"
    kw = dict(halo=2, block=(12, 16, 16))
    predict(inp, out, tiny_model, **kw)
    assert predict(inp, out, tiny_model, resume=True, **kw)["blocks_skipped"] == 1
    time.sleep(0.05)  # file times have a coarse clock; a real rewrite comes later anyway
    _normalized(inp, rng.integers(0, 255, shape, dtype=np.uint8))  # same path, shape, dtype
    with pytest.raises(ResumeMismatchError, match="fingerprint"):
        predict(inp, out, tiny_model, resume=True, **kw)


@pytest.mark.cluster
def test_acme_method_runs_on_the_given_client(raw, tmp_path):
    distributed = pytest.importorskip("distributed")

    with distributed.Client(n_workers=1, threads_per_worker=1, processes=False,
                            dashboard_address=":0") as client:
        s = run_predict(raw, out=tmp_path / "acme.ome.zarr", method="acme", client=client,
                        timepoints="0:1", progress=False)
        assert s["dashboard"] == client.dashboard_link
        assert (s["workers"], s["threads"]) == (1, 1)


@pytest.mark.subprocess
def test_command_line_hides_tensorflow_start_up_log(raw, tiny_model, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    out = tmp_path / "p.ome.zarr"
    done = subprocess.run(
        [sys.executable, "-m", "chunkseg", "predict", str(raw), "--model", str(tiny_model),
         "--out", str(out), "--timepoints", "0:1", "--scheduler", "threads", "--quiet"],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["out"] == str(out)
    for banner in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "port.cc"):
        assert banner not in done.stderr, done.stderr


def test_intensity_range_scales_only_the_voxels_a_block_reads(tmp_path, monkeypatch):
    import zarr

    import chunkseg.engine.predict as engine
    from chunkseg.engine.predict import scale_array

    a = np.random.default_rng(6).integers(0, 4000, (37, 45, 41)).astype(np.uint16)
    store = zarr.create_array(tmp_path / "raw.zarr", shape=a.shape, dtype=a.dtype,
                              chunks=(8, 8, 8), shards=(16, 16, 16))
    store[:] = a
    x = da.from_zarr(store, chunks=store.shards)  # as open_volume: dask chunks = shards
    kw = dict(block=(16, 20, 18), halo=3, tile=(12, 16, 16), pool=P, receptive=R,
              scale=1 / 255)
    ref = predict_array(scale_array(x, (100.0, 3000.0)), fake_net, **kw).compute()
    scaled = []
    real = engine.scale_to_uint8
    monkeypatch.setattr(engine, "scale_to_uint8",
                        lambda v, lo, hi: scaled.append(v.size) or real(v, lo, hi))
    got = predict_array(x, fake_net, intensity_range=(100.0, 3000.0), **kw).compute(
        scheduler="sync")
    np.testing.assert_array_equal(got, ref)
    # each block scales its haloed region (mirrored at the border: at most that), not the
    # whole 16^3 shards the region touches
    blocks = [block_grid(n, b, 0) for n, b in zip(a.shape, kw["block"])]
    haloed = sum(int(np.prod([b + 2 * 3 for b in size]))
                 for size in itertools.product(*blocks))
    assert len(scaled) == np.prod([len(b) for b in blocks]) and sum(scaled) <= haloed
