"""ACME-style baseline: filters on small synthetic shapes, chunked == whole, errors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from chunkseg.engine.acme import acme_map, halo_of
from chunkseg.errors import DTypeError, ParameterError, ShapeError
from chunkseg.ops.acme import (
    AcmeParams,
    acme_halo,
    acme_score,
    acme_score_reference,
    plate_measure,
    tensor_vote,
)
from chunkseg.ops.eigen3 import eigh3_values, eigh3_vector

#: small filters keep the tests fast (halo 5 z / 9 y, x at voxel size 0.25, 0.1, 0.1)
SMALL = AcmeParams(sigmas=(1.0,), vote_sigma=1.0, truncate=2.0)


def _sheet(shape=(32, 32, 32), width=2):
    vol = np.zeros(shape, np.float32)
    c = shape[0] // 2
    vol[c - width // 2 : c - width // 2 + width] = 1.0
    return vol


@pytest.mark.parametrize("field", ["oriented", "smooth"])
def test_planar_sheet_scores_high_along_it_and_low_away(field):
    vol = _sheet()
    score = acme_score_reference(vol, params=AcmeParams(field=field))
    c = vol.shape[0] // 2
    assert score.dtype == np.float32
    assert 0.0 <= score.min() and score.max() <= 1.0
    assert score[c - 1 : c + 1].min() > 0.6  # everywhere along the sheet, up to its edges
    assert score[c - 10].max() < 0.05 and score[c + 10].max() < 0.05


def test_blob_ball_interior_and_isolated_dot_score_low():
    zz, yy, xx = np.mgrid[:40, :40, :40]
    r2 = (zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2
    blob = np.exp(-r2 / (2 * 3.0**2)).astype(np.float32)  # a nucleus-like Gaussian blob
    assert acme_score_reference(blob).max() < 0.05
    # a solid ball's surface is a step edge (plate-like on its bright side), its core is not
    ball = (r2 < 10**2).astype(np.float32)
    score = acme_score_reference(ball)
    assert score[r2 <= 2**2].max() < 0.05 and score[r2 == 7**2].min() > 0.3
    dot = np.zeros((24, 24, 24), np.float32)
    dot[12, 12, 12] = 1.0
    assert acme_score_reference(dot).max() < 0.05


def test_plate_normal_is_across_an_oblique_sheet():
    zz, yy, xx = np.mgrid[:32, :32, :32].astype(np.float64)
    n = np.array([1.0, 2.0, 2.0]) / 3.0
    d = (zz - 16) * n[0] + (yy - 16) * n[1] + (xx - 16) * n[2]
    vol = np.exp(-0.5 * d**2).astype(np.float32)
    plate, normal = plate_measure(vol, sigmas=(1.0, 2.0))
    assert plate[16, 16, 16] > 0.9
    assert abs(float(normal[16, 16, 16] @ n)) > 0.99


def test_closed_form_eigen_matches_lapack():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(500, 3, 3))
    m = m + m.transpose(0, 2, 1)
    m[:5] = np.diag([2.0, 2.0, -1.0])  # repeated eigenvalues
    comps = [m[:, i, j] for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))]
    e1, e2, e3 = eigh3_values(comps)
    ref = np.linalg.eigvalsh(m)[:, ::-1]
    np.testing.assert_allclose(np.stack([e1, e2, e3], -1), ref, atol=1e-9)
    v = eigh3_vector(comps, e3)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", m, v), e3[:, None] * v, atol=1e-8)


def test_voting_bridges_a_gap_in_the_sheet():
    vol = _sheet((24, 32, 32), width=2)
    vol[:, 14:18, :] = 0.0  # a 4-voxel gap across the sheet
    plate, normal = plate_measure(vol)
    sal = tensor_vote(plate, normal, sigma=2.0)
    assert plate[11:13, 16, 8:24].max() < 0.05
    assert sal[11:13, 16, 8:24].min() > 0.2


def test_chunked_equals_whole_on_odd_chunks_anisotropic_time_series():
    rng = np.random.default_rng(1)
    vol = (rng.random((2, 14, 40, 36)) * 255).astype(np.uint8)
    vs = (0.25, 0.1, 0.1)
    ref = np.stack([acme_score_reference(v, voxel_size=vs, params=SMALL) for v in vol])
    darr = da.from_array(vol, chunks=(1, 5, 13, 11))
    out = acme_map(darr, voxel_size=vs, params=SMALL)
    assert out.dtype == np.float32 and out.shape == vol.shape
    assert all(len(c) > 1 for c in out.chunks[1:])  # really several blocks per axis
    got = out.compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)  # float32; in practice bit-exact


def test_chunked_equals_whole_with_given_block_shape():
    rng = np.random.default_rng(2)
    vol = (rng.random((9, 30, 31)) * 255).astype(np.uint8)
    ref = acme_score_reference(vol, voxel_size=(1, 1, 1), params=SMALL)
    out = acme_map(da.from_array(vol), voxel_size=(1, 1, 1), params=SMALL, chunks=(9, 11, 10))
    np.testing.assert_allclose(out.compute(scheduler="sync"), ref, rtol=0, atol=1e-6)


def test_halo_is_computed_from_the_filters_and_needed():
    assert halo_of((1, 1, 1), SMALL) == acme_halo((1, 1, 1), (1.0,), median_radius=1,
                                                   vote_sigma=1.0, truncate=2.0)
    h = acme_halo((0.25, 0.1, 0.1), (1.0,), median_radius=1, vote_sigma=1.0, truncate=2.0)
    assert h == (5, 9, 9)  # 1 + 2 + 2 + 2 = 7 iso voxels; ×0.4 in z; + resample + median
    assert acme_halo((1, 1, 1), (4.0,)) > acme_halo((1, 1, 1), (1.0,))
    # a block cut with less context than the halo differs from the whole volume
    rng = np.random.default_rng(3)
    vol = (rng.random((30, 30, 30)) * 255).astype(np.uint8)
    ref = acme_score_reference(vol, params=SMALL)
    full = acme_halo((1, 1, 1), (1.0,), median_radius=1, vote_sigma=1.0, truncate=2.0)[0]
    for halo, equal in ((full, True), (full - 3, False)):
        block = vol[12 - halo : 18 + halo, 12 - halo : 18 + halo, 12 - halo : 18 + halo]
        got = acme_score(block, origin=(12 - halo,) * 3, params=SMALL)[halo:-halo, halo:-halo,
                                                                         halo:-halo]
        assert np.array_equal(got, ref[12:18, 12:18, 12:18]) is equal


def test_errors():
    with pytest.raises(ParameterError, match="sigmas"):
        AcmeParams(sigmas=())
    with pytest.raises(ParameterError, match="field"):
        AcmeParams(field="ball")
    with pytest.raises(ParameterError, match="vote_sigma"):
        AcmeParams(vote_sigma=0)
    with pytest.raises(ParameterError, match="median_radius"):
        AcmeParams(median_radius=-1)
    with pytest.raises(ParameterError, match="field"):
        tensor_vote(np.zeros((4, 4, 4)), np.zeros((4, 4, 4, 3)), field="x")
    with pytest.raises(ParameterError, match="voxel_size"):
        acme_halo((1, 1), (1.0,))
    with pytest.raises(ShapeError, match="3D"):
        acme_score(np.zeros((4, 4), np.float32))
    with pytest.raises(ShapeError, match="3D"):
        plate_measure(np.zeros((4, 4), np.float32))
    with pytest.raises(DTypeError, match="uint16"):
        acme_score(np.zeros((4, 4, 4), np.uint16))
    with pytest.raises(ShapeError, match="shape"):
        acme_map(da.zeros((4, 4)), voxel_size=(1, 1, 1))


def test_params_round_trip_to_dict():
    d = AcmeParams().to_dict()
    assert AcmeParams(**d) == AcmeParams()


def test_run_acme_writes_a_probability_store_equal_to_the_reference(tmp_path):
    from chunkseg.pipeline.acme import run_acme
    from chunkseg.io.store import open_volume
    from chunkseg.ops.normalize import scale_to_uint8
    from chunkseg.pipeline.synth import run_synth

    paths = run_synth(tmp_path / "s", shape=(10, 40, 44), seed=3, progress=False)
    out = tmp_path / "acme.ome.zarr"
    small = SMALL.to_dict()
    s = run_acme(paths["raw"], out=out, params=small, progress=False,
                 block=(10, 20, 44), compute_block=(5, 20, 22))
    assert s["method"] == "acme" and s["voxels"] == 10 * 40 * 44 and s["blocks_written"] == 2
    vol = open_volume(out)
    assert vol.attrs["kind"] == "probability" and vol.attrs["complete"]
    raw = open_volume(paths["raw"]).data[0].compute()
    norm = s["normalization"]
    ref = acme_score_reference(scale_to_uint8(raw, norm["low"], norm["high"]),
                               voxel_size=vol.voxel_size, params=SMALL)
    np.testing.assert_allclose(vol.data[0].compute(), ref, rtol=0, atol=1e-6)
    again = run_acme(paths["raw"], out=out, params=small, progress=False,
                     block=(10, 20, 44), compute_block=(5, 20, 22), resume=True)
    assert again["blocks_skipped"] == 2 and again["blocks_written"] == 0
    with pytest.raises(ParameterError, match="dtype"):
        run_acme(paths["raw"], out=tmp_path / "x.ome.zarr", dtype="int8")


def test_cli_predict_method_acme_routes_to_the_baseline(tmp_path, capsys):
    import json

    from chunkseg.cli import main
    from chunkseg.io.store import open_volume
    from chunkseg.pipeline.predict import run_predict
    from chunkseg.pipeline.synth import run_synth

    paths = run_synth(tmp_path / "s", shape=(6, 24, 24), seed=4, outputs=("raw",),
                      progress=False)
    out = tmp_path / "acme.ome.zarr"
    rc = main(["predict", paths["raw"], "--out", str(out), "--method", "acme",
               "--scheduler", "sync", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "acme" and summary["voxels"] == 6 * 24 * 24
    with pytest.raises(ParameterError, match="method"):
        run_predict(paths["raw"], out=tmp_path / "x.ome.zarr", method="hessian")
    with pytest.raises(ParameterError, match="threshold"):
        run_predict(paths["raw"], out=tmp_path / "x.ome.zarr", method="acme", threshold=0.5)
    from chunkseg.pipeline.acme import run_acme

    s = run_acme(paths["raw"], out=tmp_path / "t.ome.zarr", threshold=0.3,
                 progress=False)
    mask = open_volume(s["mask"]).data.compute()
    score = open_volume(tmp_path / "t.ome.zarr").data.compute()
    np.testing.assert_array_equal(mask, (score >= 0.3).astype(np.uint8))


def test_cli_benchmark_is_registered_and_finds_its_script():
    from chunkseg.cli import build_parser
    from chunkseg.cli.benchmark import find_script

    args = build_parser().parse_args(["benchmark", "--quick", "--out", "x", "--only", "io"])
    assert args.quick and args.out == "x" and args.only == ["io"]
    assert find_script().is_file()


def test_benchmark_writes_results_json_and_table(tmp_path):
    import importlib.util
    import json
    import sys

    from chunkseg.cli.benchmark import find_script

    script = find_script()
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("bench_run_test", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run_benchmark(tmp_path, quick=True, only=["io", "gpu_full"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["sections"]["io"]["mb"] > 0 and "cpu" in saved["hardware"]
    assert "skipped" in res["sections"]["gpu_full"] or "failed" not in res["sections"]["gpu_full"]
    table = (tmp_path / "results.md").read_text()
    assert "| io | convert MB/s |" in table and "gpu_full" in table
