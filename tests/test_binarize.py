"""Membrane masks from labels (ops layer) and the chunked binarize pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from chunkseg.errors import DTypeError, ParameterError
from chunkseg.ops.boundaries import halo_for_width, membrane_mask


def _random_labels(shape, n, seed, dtype=np.uint32):
    """Voronoi-like cells: each voxel takes the label of the nearest of n seeds."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    d = ((grid[..., None, :] - pts) ** 2).sum(-1)
    return d.argmin(-1).astype(dtype)


def _reference(labels, ignore, mode):
    return find_boundaries(np.where(np.isin(labels, ignore), 0, labels), mode=mode,
                           connectivity=1).astype(np.uint8)


@pytest.mark.parametrize("mode", ["thick", "inner"])
@pytest.mark.parametrize("ignore", [(0,), (0, 1), (0, 1, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int32])
def test_width1_equals_skimage(mode, ignore, dtype):
    lab = _random_labels((9, 14, 17), 12, seed=3, dtype=dtype)
    got = membrane_mask(lab, ignore=ignore, mode=mode)
    assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, _reference(lab, ignore, mode))


def test_large_label_values_uint64():
    lab = _random_labels((6, 8, 9), 5, seed=4, dtype=np.uint64)
    big = lab + np.uint64(2**63)
    big[lab == 0] = 0
    np.testing.assert_array_equal(membrane_mask(big), membrane_mask(lab))


def test_definition_small_cases():
    lab = np.array([[2, 2, 2, 3, 3, 3]])
    assert membrane_mask(lab).tolist() == [[0, 0, 1, 1, 0, 0]]
    assert membrane_mask(lab, width=2).tolist() == [[0, 1, 1, 1, 1, 0]]
    bg = np.array([[0, 0, 2, 2, 2, 2]])
    assert membrane_mask(bg).tolist() == [[0, 1, 1, 0, 0, 0]]
    assert membrane_mask(bg, mode="inner").tolist() == [[0, 0, 1, 0, 0, 0]]
    assert membrane_mask(bg, mode="inner", width=2).tolist() == [[0, 0, 1, 1, 0, 0]]
    # 0 and 1 ignored: their interface is not a membrane; a 1-voxel gap is filled (thick)
    gap = np.array([[1, 1, 0, 0, 4, 4, 0, 5, 5]])
    assert membrane_mask(gap, ignore=(0, 1)).tolist() == [[0, 0, 0, 1, 1, 1, 1, 1, 0]]
    assert membrane_mask(gap, ignore=()).tolist() == [[0, 1, 1, 1, 1, 1, 1, 1, 0]]
    # volume edges are not interfaces
    assert membrane_mask(np.full((3, 4, 5), 7)).sum() == 0


def test_width_uses_l1_ball():
    lab = np.zeros((9, 9, 9), np.uint16)
    lab[4, 4, 4] = 9
    m = membrane_mask(lab, width=2)
    z, y, x = np.nonzero(m)
    assert (np.abs(z - 4) + np.abs(y - 4) + np.abs(x - 4)).max() == 2
    assert m.sum() == 25  # voxels of the L1 ball of radius 2 in 3D
    assert halo_for_width(3) == 3


def test_bad_inputs():
    with pytest.raises(DTypeError, match="float32"):
        membrane_mask(np.zeros((3, 3, 3), np.float32))
    for w in (0, -1, 1.5, True):
        with pytest.raises(ParameterError, match="width"):
            membrane_mask(np.zeros((3, 3, 3), np.uint16), width=w)
    with pytest.raises(ParameterError, match="mode"):
        membrane_mask(np.zeros((3, 3, 3), np.uint16), mode="outer")
    assert membrane_mask(np.zeros((2, 2), bool)).sum() == 0


# --------------------------------------------------------------------------- chunked pipeline

import dask.array as da  # noqa: E402
import tifffile  # noqa: E402

from chunkseg.cli import main  # noqa: E402
from chunkseg.engine.blocks import write_volume  # noqa: E402
from chunkseg.errors import ShapeError  # noqa: E402
from chunkseg.io.store import create_image, mark_complete, open_volume, read_attrs  # noqa: E402
from chunkseg.engine.volumes import membrane_volume  # noqa: E402
from chunkseg.pipeline.binarize import run_binarize  # noqa: E402

ODD = (1, 17, 23, 29)  # much smaller than a cell of the real tissue (~40 voxels across)


@pytest.fixture(scope="module")
def tissue(real_data):
    return tifffile.imread(real_data / "tissue_labels.tif")


@pytest.mark.parametrize("mode, ignore", [("thick", (0, 1)), ("inner", (0,))])
def test_real_tissue_chunked_equals_skimage(tissue, mode, ignore):
    crop = tissue[40:100, 60:200, 150:400]  # 60 x 140 x 250, dozens of cells cut by chunks
    assert len(np.unique(crop)) > 40
    got = membrane_volume(da.from_array(crop[None], chunks=ODD), mode=mode,
                          ignore=ignore).compute(scheduler="threads")[0]
    np.testing.assert_array_equal(got, _reference(crop, ignore, mode))


@pytest.mark.slow
@pytest.mark.parametrize("width", [1, 2])
def test_real_tissue_whole_volume_tiny_chunks(tissue, width):
    got = membrane_volume(da.from_array(tissue[None], chunks=ODD), width=width,
                          ignore=(0, 1)).compute()[0]
    ref = membrane_mask(tissue, width=width, ignore=(0, 1))
    if width == 1:
        np.testing.assert_array_equal(ref, _reference(tissue, (0, 1), "thick"))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
def test_chunked_width_equals_in_memory(width, dtype):
    lab = np.stack([_random_labels((11, 19, 23), 9, seed=s, dtype=dtype) for s in (5, 6)])
    got = membrane_volume(da.from_array(lab, chunks=(1, 4, 5, 7)), width=width,
                          ignore=(0, 3)).compute()
    for t in range(2):  # time points are separate volumes: t is no spatial axis
        np.testing.assert_array_equal(got[t], membrane_mask(lab[t], width=width, ignore=(0, 3)))


@pytest.mark.parametrize("width", [1, 2])
def test_in_plane_mask_is_per_slice_and_chunked_equals_in_memory(width):
    lab = np.stack([_random_labels((11, 19, 23), 9, seed=s) for s in (5, 6)])
    for t in range(2):
        ref = membrane_mask(lab[t], width=width, in_plane=True)
        np.testing.assert_array_equal(
            ref, np.stack([membrane_mask(sl, width=width) for sl in lab[t]]))
        assert ref.sum() < membrane_mask(lab[t], width=width).sum()
    got = membrane_volume(da.from_array(lab, chunks=(1, 4, 5, 7)), width=width,
                          in_plane=True).compute()
    for t in range(2):
        np.testing.assert_array_equal(got[t], membrane_mask(lab[t], width=width, in_plane=True))
    with pytest.raises(ParameterError, match="2 or more axes"):
        membrane_mask(np.array([1, 2]), in_plane=True)


def test_in_plane_chosen_by_voxel_size(tmp_path, capsys):
    """An oblique wall at the organoid's 2.0 / 0.26 µm: through z neighbours its mask spans
    about the anisotropy in lateral voxels; drawn per slice (`--in-plane auto` there) it does not."""
    from chunkseg.ops.boundaries import in_plane_for

    assert in_plane_for((2.0, 0.26, 0.26)) and not in_plane_for((0.235, 0.15, 0.15))
    assert not in_plane_for((0.5, 0.25, 0.25))                   # exactly 2: 3D
    z, x = np.meshgrid(np.arange(12), np.arange(64), indexing="ij")
    lab = np.where(x < 5 * z + 4, 2, 3).astype(np.uint16)[:, None, :].repeat(5, 1)[None]
    aniso = tmp_path / "aniso.tif"
    tifffile.imwrite(aniso, lab[0], imagej=True, resolution=(1 / 0.26, 1 / 0.26),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    assert main(["binarize", str(aniso), "--out", str(tmp_path / "a.ome.zarr"),
                 "--in-plane", "auto"]) == 0
    assert main(["binarize", str(aniso), "--out", str(tmp_path / "b.ome.zarr")]) == 0
    capsys.readouterr()
    auto, full = (open_volume(tmp_path / f"{n}.ome.zarr").data.compute()[0] for n in "ab")
    assert read_attrs(tmp_path / "a.ome.zarr")["binarize"]["in_plane"] is True
    assert auto[1:-1, 2].sum(1).tolist() == [2] * 10               # 2 voxels per row
    assert full[1:-1, 2].sum(1).tolist() == [10] * 10              # twice the z step
    np.testing.assert_array_equal(full, membrane_mask(lab[0]))


def _labels_store(path, lab, chunks=(6, 7, 9), attrs=None):
    create_image(path, shape=lab.shape, dtype=lab.dtype, chunks=chunks, shards=False,
                 attrs={"kind": "labels", **(attrs or {})})
    write_volume(da.from_array(lab), path, progress=False)
    mark_complete(path)
    return path


def test_run_binarize_end_to_end(tmp_path):
    lab = _random_labels((14, 20, 25), 15, seed=8)[None]
    src = _labels_store(tmp_path / "labels.ome.zarr", lab, attrs={"dropped_slices": [3]})
    out = tmp_path / "mask.ome.zarr"
    s = run_binarize(src, out, ignore=(0, 1), width=2, drop_slices="0,5-6", chunks=(5, 8, 8),
                     progress=False)
    keep = [z for z in range(14) if z not in (0, 5, 6)]
    vol = open_volume(out)
    assert vol.dtype == np.uint8 and vol.attrs["kind"] == "mask"
    np.testing.assert_array_equal(vol.data.compute()[0],
                                  membrane_mask(lab[0][keep], width=2, ignore=(0, 1)))
    attrs = read_attrs(out)
    assert attrs["binarize"] == {"ignore": [0, 1], "width": 2, "mode": "thick", "in_plane": False}
    assert attrs["halo"] == 2 and s["dropped_slices"] == attrs["dropped_slices"] == [0, 3, 6, 7]


def test_run_binarize_bad_input(tmp_path):
    flt = tmp_path / "float.tif"
    tifffile.imwrite(flt, np.zeros((5, 6, 7), np.float32))
    with pytest.raises(DTypeError, match="float32"):
        run_binarize(flt, tmp_path / "m.ome.zarr")
    lab, raw = tmp_path / "lab.tif", tmp_path / "raw.tif"
    tifffile.imwrite(lab, np.ones((5, 6, 7), np.uint16))
    tifffile.imwrite(raw, np.ones((6, 6, 7), np.uint16))
    with pytest.raises(ShapeError, match=r"\(1, 5, 6, 7\) differs from the raw .*\(1, 6, 6, 7\)"):
        run_binarize(lab, tmp_path / "m.ome.zarr", like=raw)
    with pytest.raises(ShapeError, match=r"after dropping slices \[0\]"):
        run_binarize(raw, tmp_path / "m.ome.zarr", like=raw, drop_slices="0")
    with pytest.raises(ParameterError, match="out of range"):
        run_binarize(lab, tmp_path / "m.ome.zarr", drop_slices="5")
    with pytest.raises(ParameterError, match="width"):
        run_binarize(lab, tmp_path / "m.ome.zarr", width=0)
    assert not (tmp_path / "m.ome.zarr").exists()
    run_binarize(raw, tmp_path / "m.ome.zarr", like=raw, progress=False)


def test_cli_binarize(tmp_path, capsys):
    lab = tmp_path / "lab.tif"
    tifffile.imwrite(lab, _random_labels((8, 12, 13), 6, seed=9, dtype=np.uint16))
    out = tmp_path / "m.ome.zarr"
    assert main(["binarize", str(lab), "--out", str(out), "--ignore", "0", "1",
                 "--mode", "inner"]) == 0
    assert read_attrs(out)["binarize"]["mode"] == "inner"
    assert main(["binarize", str(lab), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_resume_skips_done_blocks(tmp_path):
    lab = _random_labels((10, 12, 14), 6, seed=10)[None]
    src = _labels_store(tmp_path / "labels.ome.zarr", lab)
    out = tmp_path / "mask.ome.zarr"
    first = run_binarize(src, out, chunks=(4, 6, 7), progress=False)
    again = run_binarize(src, out, chunks=(4, 6, 7), resume=True, progress=False)
    assert again["blocks_written"] == 0 and again["blocks_skipped"] == first["blocks_written"]
    np.testing.assert_array_equal(open_volume(out).data.compute()[0], membrane_mask(lab[0]))
