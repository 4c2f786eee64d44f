"""Agglomerative segmentation: fragments, region-graph edges, global agglomeration."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from chunkseg.cli import main
from chunkseg.engine.agglomerate import agglo_method, agglomerate_array, segment_method
from chunkseg.engine.segment import Reader, final_labels, segment_array, segment_volume
from chunkseg.errors import InputError, ParameterError
from chunkseg.io.store import read_attrs
from chunkseg.ops.fragments import FragmentParams, fragment_seed_halo, fragment_seeds
from chunkseg.ops.instance_metrics import contingency, instance_scores
from chunkseg.ops.rag import (
    EDGE_BINS, Q, AggloParams, agglomeration_plan, block_edges, cluster, edge_mean,
    edge_quantile, split_table,
)
from chunkseg.ops.segstats import block_stats, dense_labels, sum_pair_counts
from chunkseg.ops.watershed import SegmentParams, capped_sq_distance
from chunkseg.pipeline.segment import run_segment
from conftest import SEG_VS, store_volume

VS = SEG_VS
PARAMS = AggloParams(FragmentParams(voxel_size=VS, radius=0.5, sigma=0.15, interior_levels=4),
                     threshold=0.1, min_size=0.3)


@pytest.fixture(scope="module")
def synth(seg_synth):
    return seg_synth


def test_agglo_chunking_independence(synth, tmp_path):
    _, p = synth
    whole, cells = agglomerate_array(p, PARAMS)
    assert whole.max() > 40
    for block in [(11, 23, 19), (17, 29, 37)]:
        got_cells = {}
        res = segment_volume(Reader(p[None]), (1, *p.shape), agglo_method(PARAMS),
                             work=tmp_path / "x".join(map(str, block)), block=block,
                             on_cells=got_cells.__setitem__)
        got = final_labels(res["flood"], res["maps"], res["stats"]).to_dask().compute()[0]
        assert res["blocks"] >= 12 and res["graph"]["edges"] > 100
        np.testing.assert_array_equal(got, whole)  # the same ids, not only the partition
        np.testing.assert_array_equal(got_cells[0].count, cells.count)
        np.testing.assert_array_equal(got_cells[0].first, cells.first)


def _brute_edges(lab, prob):
    q = np.rint(prob.astype(np.float64) * Q).astype(np.int64)
    out = {}
    for axis in range(3):
        a, b = np.moveaxis(lab, axis, 0), np.moveaxis(q, axis, 0)
        for x, y, qx, qy in zip(a[:-1].ravel(), a[1:].ravel(), b[:-1].ravel(), b[1:].ravel()):
            if x and y and x != y:
                row = out.setdefault((min(x, y), max(x, y)), [0, 0] + [0] * EDGE_BINS)
                row[0] += 1
                row[1] += qx + qy
                row[2 + min((qx + qy) * EDGE_BINS // (2 * Q), EDGE_BINS - 1)] += 1
    return out


def _brute_nodes(lab, prob):
    q = np.rint(prob.astype(np.float64) * Q).astype(np.int64)
    out = {}
    for x, qx in zip(lab.ravel(), q.ravel()):
        if x:
            row = out.setdefault((x, x), [0, 0] + [0] * EDGE_BINS)  # no histogram
            row[0] += 1
            row[1] += 2 * qx
    return out


def _scipy_fragment_seeds(prob, fp):
    """Reference of the seed rule with SciPy's filters (maxima with plateaus, no seed
    on or beside a boundary voxel)."""
    bg = prob >= np.float32(fp.boundary)
    d2 = capped_sq_distance(bg, radius=fp.radius, voxel_size=fp.voxel_size)
    far = sum((np.floor(fp.radius / s) * s) ** 2 for s in fp.voxel_size) + 1.0
    dist = np.sqrt(np.where(np.isinf(d2), far, d2)).astype(np.float32)
    dist = ndimage.gaussian_filter(dist, fp.sigmas(), mode="nearest", truncate=2.0)
    peak = ndimage.maximum_filter(dist, size=3, mode="nearest")
    return (dist >= peak) & ~bg & ~ndimage.binary_dilation(bg, border_value=0)


def test_fragment_seeds_equal_scipy_rule_and_blocks_with_halo_are_exact():
    """Walls with cells 1 to 30 voxels wide: plateaus of the deep interior, thin cells
    whose interior touches a wall on one side only."""
    rng = np.random.default_rng(11)
    wall = np.zeros((16, 48, 52), bool)
    wall[[0, 7, 8, 15]] = True
    wall[:, [0, 20, 23, 24, 47]] = True
    wall[:, :, [0, 3, 5, 8, 9, 11, 30, 33, 51]] = True
    p = np.where(wall, 0.95, 0.05) + rng.normal(0, 0.02, wall.shape)
    p = (np.round(np.clip(p, 0, 1) * 32) / 32).astype(np.float32)
    fp = PARAMS.fragments
    whole = fragment_seeds(p, fp)
    np.testing.assert_array_equal(whole, _scipy_fragment_seeds(p, fp))
    assert 0 < whole.sum() < whole.size
    halo = fragment_seed_halo(fp)
    for z0, y0, x0 in [(0, 0, 0), (5, 11, 17), (9, 30, 3)]:
        box = (slice(z0, z0 + 4), slice(y0, y0 + 7), slice(x0, x0 + 20))
        ext = tuple(slice(max(0, b.start - h), b.stop + h) for b, h in zip(box, halo))
        crop = tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(box, ext))
        np.testing.assert_array_equal(fragment_seeds(p[ext], fp)[crop], whole[box])


def test_edge_table_blockwise_equals_whole():
    rng = np.random.default_rng(5)
    lab = rng.integers(0, 6, (9, 11, 13)).astype(np.uint64) * np.uint64(1 << 33)
    prob = rng.random(lab.shape, dtype=np.float32)
    whole = block_edges(lab, prob, lab.shape)
    nodes, edges = split_table(whole)
    assert {(int(r[0]), int(r[1])): [int(v) for v in r[2:]] for r in edges} == \
        _brute_edges(lab, prob)
    assert {(int(r[0]), int(r[1])): [int(v) for v in r[2:]] for r in nodes} == \
        _brute_nodes(lab, prob)
    np.testing.assert_allclose(edge_mean(nodes), [prob[lab == i].mean() for i in nodes[:, 0]],
                               atol=1e-5)  # a node row's mean: the fragment's mean probability
    parts = []
    for z0 in range(0, 9, 4):
        for y0 in range(0, 11, 7):
            for x0 in range(0, 13, 5):
                own = lab[z0:z0 + 4, y0:y0 + 7, x0:x0 + 5].shape
                sl = (slice(z0, z0 + 5), slice(y0, y0 + 8), slice(x0, x0 + 6))
                parts.append(block_edges(lab[sl], prob[sl], own))
    np.testing.assert_array_equal(sum_pair_counts(parts), whole)
    np.testing.assert_allclose(edge_mean(whole), whole[:, 3] / (2 * Q * whole[:, 2]))
    for q in (0.5, 0.9):  # interfaces: upper edge of the bin where the cumulative count reaches q
        want = [(np.searchsorted(np.cumsum(r[4:]), np.ceil(q * r[2])) + 1) / EDGE_BINS
                for r in edges.astype(np.int64)]
        np.testing.assert_allclose(edge_quantile(edges, q), want)


def test_dense_labels_with_ids_give_the_same_tables():
    """Dense labels of a wider region (so some ids are absent from the block) with their
    ids: the same statistics and edge table as the ids themselves."""
    rng = np.random.default_rng(8)
    wide = rng.integers(0, 9, (10, 12, 14)).astype(np.uint64) * np.uint64(1 << 33)
    wide[9, 11, 13] = np.uint64(99 << 33)  # outside the block
    prob = rng.random(wide.shape, dtype=np.float32)
    ids, _, dense = dense_labels(wide)
    sl = (slice(3, 8), slice(2, 9), slice(0, 6))
    own = (4, 6, 5)
    assert np.setdiff1d(ids, wide[3:7, 2:8, 0:5]).size  # the case of absent ids
    np.testing.assert_array_equal(block_edges(dense[sl], prob[sl], own, ids=ids),
                                  block_edges(wide[sl], prob[sl], own))
    owned = tuple(slice(s.start, s.start + o) for s, o in zip(sl, own))
    got = block_stats(dense[owned], offset=(3, 2, 0), shape=wide.shape, ids=ids)
    want = block_stats(wide[owned], offset=(3, 2, 0), shape=wide.shape)
    for name in ("ids", "count", "sums", "lo", "hi", "first"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_cluster_linkages_split_a_leaky_wall():
    """Nodes 0-1 and 2-3 are cells; 1-2 is a wall with one weak spot (mean high)."""
    faces = np.array([50, 40, 50])
    mean = np.array([0.1, 0.8, 0.1])
    edges = np.zeros((3, 4 + EDGE_BINS), np.uint64)
    edges[:, 2] = faces
    edges[:, 3] = np.rint(mean * 2 * Q * faces).astype(np.uint64)
    index = np.array([[0, 1], [1, 2], [2, 3]])
    for linkage in ("mutex", "average", "single"):
        comp = cluster(4, index, edges, threshold=0.5, linkage=linkage)
        assert comp[0] == comp[1] != comp[2] == comp[3], linkage
    with pytest.raises(ParameterError, match="linkage"):
        cluster(4, index, edges, threshold=0.5, linkage="ward")


def _rows(pairs, faces, mean):
    t = np.zeros((len(pairs), 4 + EDGE_BINS), np.uint64)
    t[:, :2] = pairs
    t[:, 2] = faces
    t[:, 3] = np.rint(np.asarray(mean) * 2 * Q * np.asarray(faces)).astype(np.uint64)
    return t


def test_contrast_merges_a_cell_with_thick_walls_the_mean_does_not():
    """Fragments 1, 2: one cell whose voxels are half wall (mean p 0.5), meeting at 0.55;
    fragment 3: a clear cell (mean 0.1) behind a wall of 0.6."""
    nodes = _rows([[1, 1], [2, 2], [3, 3]], [100, 100, 100], [0.5, 0.5, 0.1])
    edges = _rows([[1, 2], [2, 3]], [40, 40], [0.55, 0.6])
    stats = block_stats(np.array([[[1, 2, 3]]], np.uint64))
    for linkage in ("mutex", "average", "single"):
        ids, final, _ = agglomeration_plan(stats, np.concatenate([nodes, edges]), threshold=0.1,
                                           min_voxels=0, linkage=linkage)
        assert final[0] == final[1] != final[2], linkage  # contrast 0.05 joins, 0.3 does not
        _, final, _ = agglomeration_plan(stats, np.concatenate([nodes, edges]), threshold=0.45,
                                         min_voxels=0, linkage=linkage, criterion="mean")
        assert len(set(final.tolist())) == 3, linkage  # both means above 0.45: all apart
    with pytest.raises(ParameterError, match="criterion"):
        agglomeration_plan(stats, nodes, threshold=0.1, min_voxels=0, criterion="max")


def test_one_cell_and_no_edges():
    p = np.full((6, 10, 12), 0.1, np.float32)
    p[0, 0, :3] = 0.9
    labels, cells = agglomerate_array(p, PARAMS)
    assert labels.max() == 1 and cells.count.sum() == (labels > 0).sum() > 0.9 * p.size


def gap_volume(cell=(10, 14, 14), grid=(2, 3, 3), wall=2, seed=0):
    """Box cells whose every wall has one square hole of 1, 2 or 3 voxels."""
    rng = np.random.default_rng(seed)
    shape = tuple(g * c for g, c in zip(grid, cell))
    truth = np.zeros(shape, np.uint32)
    for i, idx in enumerate(np.ndindex(*grid)):
        truth[tuple(slice(k * c, (k + 1) * c) for k, c in zip(idx, cell))] = i + 1
    walls = np.zeros(shape, bool)
    holes = []
    for axis in range(3):
        other = [ax for ax in range(3) if ax != axis]
        for k in range(1, grid[axis]):
            across = slice(k * cell[axis] - wall // 2, k * cell[axis] + wall - wall // 2)
            sl = [slice(None)] * 3
            sl[axis] = across
            walls[tuple(sl)] = True
            for j0 in range(grid[other[0]]):
                for j1 in range(grid[other[1]]):
                    g = int(rng.integers(1, 4))
                    hole = [across] * 3
                    for ax, j in zip(other, (j0, j1)):
                        c = j * cell[ax] + cell[ax] // 2
                        hole[ax] = slice(c, c + g)
                    holes.append(tuple(hole))
    for hole in holes:
        walls[hole] = False
    p = ndimage.gaussian_filter(walls.astype(np.float32), 0.7)
    p = np.clip(p / p.max() * 0.9 + 0.05 + rng.normal(0, 0.03, shape), 0, 1)
    truth[walls] = 0
    return p.astype(np.float32), truth


def _merges(truth, lab):
    """Truth cells that share their predicted cell (>50% of each) with another one."""
    t = contingency(truth, lab)
    size = np.bincount(t[:, 0].astype(int), weights=t[:, 2].astype(float))
    major = t[(t[:, 1] > 0) & (t[:, 2] > 0.5 * size[t[:, 0].astype(int)])]
    _, n = np.unique(major[:, 1], return_counts=True)
    return int((n - 1).sum())


def test_gaps_merge_the_flood_not_the_default():
    vs = (1.0, 0.5, 0.5)
    p, truth = gap_volume()
    flood, _ = segment_array(p, SegmentParams(voxel_size=vs))
    _, params = segment_method("agglo", voxel_size=vs)  # the defaults of `segment`
    agglo, _ = agglomerate_array(p, params)
    f_flood = instance_scores(contingency(truth, flood))["f1"]
    f_agglo = instance_scores(contingency(truth, agglo))["f1"]
    assert _merges(truth, flood) >= 6 and f_flood < 0.5
    assert _merges(truth, agglo) == 0 and f_agglo > 0.95


def test_run_segment_default_is_agglo(synth, tmp_path):
    from chunkseg.io.store import open_volume

    _, p = synth
    q = p[:, ::-1].copy()
    prob = store_volume(tmp_path / "p.zarr", np.stack([p, q]))
    s = run_segment(prob, out=tmp_path / "c.zarr", block=(13, 30, 30),
                    progress=False)  # the defaults are those of PARAMS
    assert s["method"] == "agglo" and s["graph"]["edges"] > 100 and read_attrs(
        tmp_path / "c.zarr")["complete"]
    got = open_volume(tmp_path / "c.zarr").data.compute()
    for k, vol in enumerate((p, q)):  # each time point on its own
        np.testing.assert_array_equal(got[k], agglomerate_array(vol, PARAMS)[0])
    with pytest.raises(ParameterError, match="seed_distance"):
        run_segment(prob, out=tmp_path / "d.zarr", seed_distance=0.4, progress=False)
    with pytest.raises(ParameterError, match="linkage"):
        run_segment(prob, out=tmp_path / "d.zarr", method="flood", linkage="mutex",
                    progress=False)
    with pytest.raises(ParameterError, match="criterion"):
        run_segment(prob, out=tmp_path / "d.zarr", method="flood", criterion="mean",
                    progress=False)
    with pytest.raises(ParameterError, match="criterion"):
        run_segment(prob, out=tmp_path / "d.zarr", criterion="median", progress=False)


@pytest.mark.parametrize("values,message", [
    (np.full((4, 8, 8), 0.3, np.float32), "constant"),
    (np.zeros((4, 8, 8), np.float32), "constant"),
    (np.zeros((4, 0, 8), np.float32), "empty"),
])
def test_bad_probability_agglo(tmp_path, values, message):
    prob = store_volume(tmp_path / "p.zarr", values)
    with pytest.raises(InputError, match=message):
        run_segment(prob, out=tmp_path / "c.zarr", progress=False)
    assert not (tmp_path / "c.zarr").exists()


def test_cli_agglo_bad_inputs(tmp_path, capsys):
    p = np.linspace(0, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    prob = store_volume(tmp_path / "p.zarr", p)
    for threshold in ("0", "1", "-0.2", "1.5"):
        assert main(["segment", str(prob), "--out", str(tmp_path / "c.zarr"),
                     "--threshold", threshold, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "threshold must lie in (0, 1)" in err and len(err.strip().splitlines()) == 1
    p[0, 0, 0] = 1.5
    bad = store_volume(tmp_path / "b.zarr", p)
    assert main(["segment", str(bad), "--out", str(tmp_path / "c.zarr"), "--quiet"]) == 2
    assert "[0, 1]" in capsys.readouterr().err
    const = store_volume(tmp_path / "k.zarr", np.full((4, 8, 8), 0.5, np.float32))
    assert main(["segment", str(const), "--out", str(tmp_path / "c.zarr"), "--quiet"]) == 2
    assert "constant" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()
    assert main(["segment", str(prob), "--out", str(tmp_path / "f.zarr"), "--method",
                 "flood", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "flood"
    assert main(["segment", str(prob), "--out", str(tmp_path / "m.zarr"), "--criterion",
                 "mean", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["criterion"], out["threshold"], out["min_size"]) == ("mean", 0.45, 0.3)


def test_default_membrane_reach_steps_between_coarse_slices(tmp_path):
    """2 µm slices: a wall lying along a slice is reached by default, not with 0.5 µm."""
    vs = (2.0, 0.25, 0.25)
    p = np.full((7, 20, 24), 0.1, np.float32)
    p[3] = 0.95  # a wall along a slice
    p[:, :, 11:13] = 0.9  # a wall across the slices
    p += np.random.default_rng(0).normal(0, 0.02, p.shape).astype(np.float32)
    p = np.clip(p, 0, 1)
    assert SegmentParams(voxel_size=vs).membrane_reach == 2.0
    assert SegmentParams(voxel_size=VS).membrane_reach == 0.5  # finer voxels: unchanged
    _, short = segment_method("agglo", voxel_size=vs, membrane_reach=0.5)
    assert (agglomerate_array(p, short)[0][3] == 0).all()
    method, params = segment_method("agglo", voxel_size=vs)
    whole, _ = agglomerate_array(p, params)
    assert (whole > 0).all() and whole.max() == 4
    res = segment_volume(Reader(p[None]), (1, *p.shape), method, work=tmp_path / "w",
                         block=(3, 7, 9))
    np.testing.assert_array_equal(final_labels(res["flood"], res["maps"], res["stats"]).to_dask()
                                  .compute()[0], whole)
