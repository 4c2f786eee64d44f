"""Blockwise segmentation: chunking independence, pipeline outputs, CLI, bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import ndimage

from chunkseg.cli import main
from chunkseg.engine.segment import Reader, final_labels, segment_array, segment_volume
from chunkseg.errors import DTypeError, InputError, OutputExistsError, ParameterError
from chunkseg.io.store import open_volume, read_attrs
from chunkseg.ops.watershed import SegmentParams, flood_halo
from chunkseg.pipeline.segment import CELL_TABLE, run_segment
from conftest import SEG_VS, store_volume

VS = SEG_VS


@pytest.fixture(scope="module")
def synth(seg_synth):
    return seg_synth


PARAMS = SegmentParams(voxel_size=VS, seed_distance=0.4, min_size=0.3)


def _same_partition(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return pairs.shape[1] == np.unique(a).size == np.unique(b).size


def _blockwise(p, block, tmp_path, name):
    cells = {}
    res = segment_volume(Reader(p[None]), (1, *p.shape), PARAMS, work=tmp_path / name,
                         block=block, on_cells=cells.__setitem__)
    return final_labels(res["flood"], res["maps"], res["stats"]).to_dask().compute()[0], res, cells


def test_chunking_independence(synth, tmp_path):
    v, p = synth
    whole, cells = segment_array(p, PARAMS)
    assert whole.max() > 60
    halo = flood_halo(PARAMS)
    results = {}
    for block in [(11, 23, 19), (17, 29, 37)]:
        got, res, got_cells = _blockwise(p, block, tmp_path, "x".join(map(str, block)))
        results[block] = got
        assert res["blocks"] >= 12 and res["seed_unions"] > 20
        assert all(h >= 1 for h in halo)
        # many cells cross block borders
        crossing = sum(
            any(lo // b != hi // b for lo, hi, b in zip(cells.lo[i], cells.hi[i], block))
            for i in range(cells.ids.size))
        assert crossing > 0.5 * cells.ids.size
        # identical ids, not only the same partition
        np.testing.assert_array_equal(got, whole)
        np.testing.assert_array_equal(got_cells[0].count, cells.count)
        np.testing.assert_array_equal(got_cells[0].lo, cells.lo)
    a, b = results.values()
    assert _same_partition(a, b)


def test_run_segment_outputs(synth, tmp_path):
    import zarr
    from ome_zarr_models.v05.image_label import ImageLabel

    v, p = synth
    prob = store_volume(tmp_path / "p.zarr", np.stack([p, p[:, ::-1].copy()]), chunks=(16, 32, 32))
    s = run_segment(prob, out=tmp_path / "c.zarr", method="flood", seed_distance=0.4,
                    min_size=0.3, block=(13, 40, 27), timepoints="0:2", progress=False)
    assert s["dtype"] == "uint32" and s["shape"] == [2, 30, 64, 64]
    assert 0 < s["merge_share"] < 1 and s["n_cells"][0] == s["n_cells"][1]
    vol = open_volume(tmp_path / "c.zarr")
    lab = vol.data.compute()
    whole, _ = segment_array(p, PARAMS)
    np.testing.assert_array_equal(lab[0], whole)
    assert _same_partition(lab[1], whole[:, ::-1])
    attrs = read_attrs(tmp_path / "c.zarr")
    assert attrs["kind"] == "labels" and attrs["complete"]
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert ImageLabel.from_zarr(group).attributes.ome.image_label is not None
    with open(tmp_path / "c.zarr" / CELL_TABLE) as fh:
        rows = list(csv.DictReader(fh))
    first = [r for r in rows if r["t"] == "0"]
    assert len(first) == whole.max()
    voxvol = float(np.prod(VS))
    total = sum(float(r["volume_um3"]) for r in first)
    assert total == pytest.approx((whole > 0).sum() * voxvol, rel=1e-5)
    r = first[4]
    idx = int(r["id"])
    com = ndimage.center_of_mass(whole == idx)
    assert float(r["centroid_y_um"]) == pytest.approx(com[1] * VS[1], rel=1e-5)
    zz, yy, xx = np.nonzero(whole == idx)
    assert [int(r[k]) for k in ("bbox_z0", "bbox_y1", "bbox_x1")] == [
        zz.min(), yy.max() + 1, xx.max() + 1]
    assert not (tmp_path / "c.zarr.work").exists()
    with pytest.raises(OutputExistsError):
        run_segment(prob, out=tmp_path / "c.zarr", progress=False)


def test_uint8_and_mask_inputs(synth, tmp_path):
    v, p = synth
    q = np.round(p * 255).astype(np.uint8)
    prob = store_volume(tmp_path / "p8.zarr", q)
    s = run_segment(prob, out=tmp_path / "c8.zarr", method="flood", seed_distance=0.4,
                    min_size=0.3, progress=False)
    ref, _ = segment_array(q, PARAMS)
    np.testing.assert_array_equal(open_volume(tmp_path / "c8.zarr").data.compute()[0], ref)
    import zarr

    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=q.shape, dtype=q.dtype,
                              chunks=(8, 32, 32))
    plain[:] = q  # a plain 3D Zarr array (no OME metadata: voxel size 1 µm)
    run_segment(tmp_path / "plain.zarr", out=tmp_path / "cp.zarr", method="flood",
                seed_distance=2.0, min_size=2.0, block=(16, 40, 40), progress=False)
    ref, _ = segment_array(q, SegmentParams(seed_distance=2.0, min_size=2.0))
    np.testing.assert_array_equal(open_volume(tmp_path / "cp.zarr").data.compute()[0], ref)
    mask = store_volume(tmp_path / "m.zarr", v.mask, kind="mask")
    s = run_segment(mask, out=tmp_path / "cm.zarr", method="flood", seed_distance=0.4,
                    progress=False)
    assert s["n_cells"][0] > 50


@pytest.mark.parametrize("kw,err", [({"threshold": 0}, ParameterError),
                                    ({"threshold": 1.2}, ParameterError),
                                    ({"min_size": -1}, ParameterError),
                                    ({"seed_distance": 0, "method": "flood"}, ParameterError),
                                    ({"method": "watershed"}, ParameterError),
                                    ({"timepoints": "3:5"}, ParameterError)])
def test_bad_parameters(synth, tmp_path, kw, err):
    prob = store_volume(tmp_path / "p.zarr", synth[1][:8, :16, :16].copy())
    with pytest.raises(err):
        run_segment(prob, out=tmp_path / "c.zarr", progress=False, **kw)
    assert not (tmp_path / "c.zarr").exists()


def test_bad_probability(tmp_path):
    p = np.full((4, 8, 8), 0.2, np.float32)
    p[1, 2, 3] = 1.7
    with pytest.raises(InputError, match=r"p\.zarr.*\[0, 1\].*1\.7"):
        run_segment(store_volume(tmp_path / "p.zarr", p), out=tmp_path / "c.zarr", progress=False)
    p[1, 2, 3] = np.nan
    with pytest.raises(InputError):
        run_segment(store_volume(tmp_path / "n.zarr", p), out=tmp_path / "c.zarr", progress=False)
    with pytest.raises(DTypeError, match="int16"):
        run_segment(store_volume(tmp_path / "i.zarr", np.zeros((4, 8, 8), np.int16)),
                    out=tmp_path / "c.zarr", progress=False)
    # the range is checked on the time points segmented, not on the others
    two = np.full((2, 4, 8, 8), 0.2, np.float32)
    two[:, :, 3] = 0.9  # a wall: a constant probability is refused
    two[1, 0, 0, 0] = 3.0
    series = store_volume(tmp_path / "t.zarr", two)
    with pytest.raises(InputError, match=r"t\.zarr.*\[0, 1\].*3\.0"):
        run_segment(series, out=tmp_path / "c.zarr", progress=False)
    summary = run_segment(series, out=tmp_path / "c0.zarr", timepoints="0:1", progress=False)
    assert summary["timepoints"] == [0, 1]


def test_cli(synth, tmp_path, capsys):
    prob = store_volume(tmp_path / "p.zarr", synth[1][:, :32, :32].copy())
    assert main(["segment", str(prob), "--out", str(tmp_path / "c.zarr"), "--method", "flood",
                 "--seed-distance", "0.4", "--block", "16", "20", "20", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_cells"][0] > 5 and out["block"] == [16, 20, 20]
    assert main(["segment", str(prob), "--out", str(tmp_path / "d.zarr"),
                 "--threshold", "1.5"]) == 2
    assert "threshold must lie in (0, 1)" in capsys.readouterr().err
    assert main(["segment", str(prob), "--out", str(tmp_path / "d.zarr"),
                 "--min-size", "-2"]) == 2


def test_partial_stats_and_contacts_combine_exactly():
    from chunkseg.ops.segstats import sum_pair_counts, block_stats, combine_stats, contacts

    rng = np.random.default_rng(3)
    lab = rng.integers(0, 5, (9, 11, 13)).astype(np.uint64) * np.uint64(1 << 33)
    whole = block_stats(lab)
    for i, cell in enumerate(whole.ids):  # against the voxels of each label
        zyx = np.stack(np.nonzero(lab == cell), 1)
        assert whole.count[i] == len(zyx) and whole.first[i] == np.flatnonzero(lab == cell)[0]
        np.testing.assert_array_equal(whole.sums[i], zyx.sum(0).astype(np.float64))
        np.testing.assert_array_equal(whole.lo[i], zyx.min(0))
        np.testing.assert_array_equal(whole.hi[i], zyx.max(0))
    brute = {}
    for axis in range(3):
        a = np.moveaxis(lab, axis, 0)
        for x, y in zip(a[:-1].ravel(), a[1:].ravel()):
            if x and y and x != y:
                key = (min(x, y), max(x, y))
                brute[key] = brute.get(key, 0) + 1
    got = contacts(lab, lab.shape)
    assert {(int(r[0]), int(r[1])): int(r[2]) for r in got} == brute
    parts, pairs = [], []
    for z0 in range(0, 9, 4):
        for x0 in range(0, 13, 5):
            own = lab[z0:z0 + 4, :, x0:x0 + 5]
            parts.append(block_stats(own, offset=(z0, 0, x0), shape=lab.shape))
            pairs.append(contacts(lab[z0:z0 + 5, :, x0:x0 + 6], own.shape))
    comb = combine_stats(parts)
    for name in ("ids", "count", "sums", "lo", "hi", "first"):
        np.testing.assert_array_equal(getattr(comb, name), getattr(whole, name))
    np.testing.assert_array_equal(sum_pair_counts(pairs), got)


def test_tiff_probability_input(synth, tmp_path):
    import tifffile

    p = synth[1][:, :40, :40].copy()
    tifffile.imwrite(tmp_path / "p.tif", p)
    prm = SegmentParams(seed_distance=2.0, min_size=2.0)  # TIFF without metadata: 1 µm voxels
    run_segment(tmp_path / "p.tif", out=tmp_path / "c.zarr", method="flood", seed_distance=2.0,
                min_size=2.0, block=(16, 24, 24), progress=False)
    np.testing.assert_array_equal(open_volume(tmp_path / "c.zarr").data.compute()[0],
                                  segment_array(p, prm)[0])


def test_relabel_maps_runs_like_a_lookup():
    from chunkseg.ops.segstats import relabel

    rng = np.random.default_rng(8)
    lab = np.repeat(rng.integers(0, 9, 90), rng.integers(1, 7, 90))[:200].reshape(2, 10, 10)
    lab = lab.astype(np.uint64) * np.uint64(1 << 33)
    keys = np.unique(lab)[1::2]  # half the ids are mapped, the others keep their value
    values = np.arange(keys.size, dtype=np.uint32) + 7
    table = dict(zip(keys.tolist(), values.tolist()))
    got = relabel(lab, keys, values)
    assert got.dtype == np.uint32
    want = np.array([table.get(v, v) for v in lab.ravel().tolist()], np.uint64)
    np.testing.assert_array_equal(got.ravel(), want.astype(np.uint32))


@pytest.mark.parametrize("block, want", [((64, 256, 256), (16, 64, 64)),
                                         ((11, 23, 19), (11, 23, 19)),
                                         ((48, 192, 100), (16, 64, 50))])
def test_work_store_chunks_divide_the_block(block, want):
    from chunkseg.engine.segment import _work_chunks

    assert _work_chunks(block) == want


def test_label_runs_round_trip_and_clip():
    from chunkseg.ops.segstats import clip_runs, label_runs, paint_runs

    rng = np.random.default_rng(4)
    lab = ((rng.random((6, 9, 13)) < 0.2) * rng.integers(1, 4, (6, 9, 13))).astype(np.uint64)
    lab[1:4, 2:7, :] = 7  # runs that touch both row ends
    starts, lengths, values = label_runs(lab)
    assert values.dtype == lab.dtype and np.all(values > 0)
    assert int(lengths.sum()) == np.count_nonzero(lab)
    np.testing.assert_array_equal(paint_runs(np.zeros_like(lab), starts, lengths, values), lab)
    for box in [(slice(1, 5), slice(0, 9), slice(4, 11)), (slice(3, 4), slice(6, 7), slice(0, 13)),
                (slice(0, 6), slice(2, 3), slice(12, 13))]:
        part = clip_runs(starts, lengths, values, box)
        shape = [b.stop - b.start for b in box]
        np.testing.assert_array_equal(paint_runs(np.zeros(shape, lab.dtype), *part), lab[box])
        assert np.all(part[1] > 0)


def test_seed_runs_read_regions_across_blocks(tmp_path):
    """The seed runs saved per block give the dense ids of any region, across blocks."""
    from chunkseg.engine.segment import SeedRuns, _block_file
    from chunkseg.ops.segstats import label_runs

    shape, block = (11, 20, 17), (4, 8, 6)  # blocks that do not divide the shape
    rng = np.random.default_rng(5)
    ids = ((rng.random(shape) < 0.3) * rng.integers(1, 2**40, shape)).astype(np.uint64)
    for bz in range(0, shape[0], block[0]):
        for by in range(0, shape[1], block[1]):
            for bx in range(0, shape[2], block[2]):
                part = ids[bz:bz + block[0], by:by + block[1], bx:bx + block[2]]
                starts, lengths, values = label_runs(part)
                np.savez(_block_file(tmp_path, 3, (bz // block[0], by // block[1],
                                                   bx // block[2])),
                         starts=starts, lengths=lengths, values=values)
    read = SeedRuns(tmp_path, block)
    for region in [(slice(0, 11), slice(0, 20), slice(0, 17)), (slice(3, 9), slice(5, 18),
                   slice(5, 7)), (slice(10, 11), slice(7, 8), slice(0, 17))]:
        np.testing.assert_array_equal(read(3, region), ids[region])
