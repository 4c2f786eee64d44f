"""chunkseg convert / info: round trips, metadata, series order, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from chunkseg.cli import main
from chunkseg.errors import (
    DTypeError,
    FormatError,
    IncompleteStoreError,
    InputNotFoundError,
    OutputExistsError,
    ParameterError,
    ShapeError,
)
from chunkseg.io.store import open_volume, read_attrs
from chunkseg.pipeline.convert import run_convert
from chunkseg.pipeline.info import volume_info


def _vol(dtype, shape=(11, 37, 29), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_roundtrip_3d(tmp_path, dtype):
    x = _vol(dtype)
    tifffile.imwrite(tmp_path / "s.tif", x)
    s = run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", chunks=(4, 8, 16), progress=False)
    assert s["shape"] == [1, *x.shape]
    vol = open_volume(tmp_path / "o.zarr")
    assert vol.dtype == dtype
    np.testing.assert_array_equal(vol.data.compute()[0], x)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_roundtrip_4d_hyperstack(tmp_path, dtype):
    x = _vol(dtype, shape=(3, 5, 16, 18))
    tifffile.imwrite(tmp_path / "h.tif", x, imagej=True, metadata={"axes": "TZYX"})
    run_convert(tmp_path / "h.tif", tmp_path / "o.zarr", chunks=(2, 8, 8), progress=False)
    np.testing.assert_array_equal(open_volume(tmp_path / "o.zarr").data.compute(), x)


def test_small_4d_read_as_planar_samples_by_tifffile(tmp_path):
    x = _vol(np.uint16, shape=(2, 4, 5, 6))  # tifffile guesses the 4 to be samples
    tifffile.imwrite(tmp_path / "q.tif", x)
    run_convert(tmp_path / "q.tif", tmp_path / "o.zarr", progress=False)
    np.testing.assert_array_equal(open_volume(tmp_path / "o.zarr").data.compute(), x)


def test_hyperstack_channel(tmp_path):
    x = _vol(np.uint16, shape=(2, 4, 2, 9, 10))
    tifffile.imwrite(tmp_path / "c.tif", x, imagej=True, metadata={"axes": "TZCYX"})
    with pytest.raises(ParameterError, match="2 channels.*--channel"):
        run_convert(tmp_path / "c.tif", tmp_path / "o.zarr", progress=False)
    run_convert(tmp_path / "c.tif", tmp_path / "o.zarr", channel=1, progress=False)
    np.testing.assert_array_equal(open_volume(tmp_path / "o.zarr").data.compute(), x[:, :, 1])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_series_natural_order(tmp_path, dtype):
    frames = [_vol(dtype, shape=(4, 10, 12), seed=t) for t in range(11)]
    for t, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"stack_t{t}.tif", f)
    run_convert([str(tmp_path / "stack_t*.tif")], tmp_path / "o.zarr", progress=False)
    got = open_volume(tmp_path / "o.zarr").data.compute()
    np.testing.assert_array_equal(got, np.stack(frames))  # t2 before t10
    src = read_attrs(tmp_path / "o.zarr")["source"]
    assert [s.rsplit("_t", 1)[1] for s in src][:3] == ["0.tif", "1.tif", "2.tif"]


def test_zarr_input_roundtrip(tmp_path):
    import zarr

    x = _vol(np.uint16, shape=(2, 6, 10, 10))
    zarr.create_array(str(tmp_path / "in.zarr"), data=x, chunks=(1, 3, 5, 5))
    run_convert(tmp_path / "in.zarr", tmp_path / "o.zarr", voxel_size=(2, 0.5, 0.5), progress=False)
    vol = open_volume(tmp_path / "o.zarr")
    assert vol.voxel_size == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(vol.data.compute(), x)


def test_voxel_size_from_imagej_and_override(tmp_path):
    x = _vol(np.uint16, shape=(4, 8, 8))
    tifffile.imwrite(tmp_path / "m.tif", x, imagej=True, resolution=(1 / 0.104, 1 / 0.104),
                     metadata={"spacing": 0.4, "unit": "um", "axes": "ZYX"})
    run_convert(tmp_path / "m.tif", tmp_path / "a.zarr", progress=False)
    np.testing.assert_allclose(open_volume(tmp_path / "a.zarr").voxel_size, (0.4, 0.104, 0.104),
                               rtol=1e-6)
    run_convert(tmp_path / "m.tif", tmp_path / "b.zarr", voxel_size=(1, 2, 3), progress=False)
    assert open_volume(tmp_path / "b.zarr").voxel_size == (1.0, 2.0, 3.0)


def test_real_ovule_voxel_size(real_data, tmp_path):
    run_convert(real_data / "ovule_raw.tif", tmp_path / "ov.zarr", progress=False)
    vol = open_volume(tmp_path / "ov.zarr")
    assert vol.shape == (1, 32, 128, 128)
    np.testing.assert_allclose(vol.voxel_size, (0.235, 0.15, 0.15), rtol=1e-3)
    np.testing.assert_array_equal(vol.data.compute()[0], tifffile.imread(real_data / "ovule_raw.tif"))


# ---------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="missing.tif: no such"):
        run_convert(tmp_path / "missing.tif", tmp_path / "o.zarr")
    with pytest.raises(InputNotFoundError, match="matches no file"):
        run_convert(str(tmp_path / "nothing_*.tif"), tmp_path / "o.zarr")


def test_not_a_tiff(tmp_path):
    (tmp_path / "fake.tif").write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(FormatError, match="fake.tif: expected a TIFF"):
        run_convert(tmp_path / "fake.tif", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", _vol(np.uint16, shape=(8, 64, 64)))
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="t.tif"):
        run_convert(tmp_path / "t.tif", tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists()


def test_2d_image_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "flat.tif", _vol(np.uint16, shape=(32, 32)))
    with pytest.raises(ShapeError, match="flat.tif: expected a 3D.*got shape \\(32, 32\\)"):
        run_convert(tmp_path / "flat.tif", tmp_path / "o.zarr")


def test_series_mixed_shapes_and_dtypes(tmp_path):
    tifffile.imwrite(tmp_path / "a1.tif", _vol(np.uint16, shape=(4, 8, 8)))
    tifffile.imwrite(tmp_path / "a2.tif", _vol(np.uint16, shape=(4, 8, 9)))
    with pytest.raises(ShapeError, match="a2.tif: shape \\(4, 8, 9\\) differs"):
        run_convert([tmp_path / "a1.tif", tmp_path / "a2.tif"], tmp_path / "o.zarr")
    tifffile.imwrite(tmp_path / "a3.tif", _vol(np.uint8, shape=(4, 8, 8)))
    with pytest.raises(DTypeError, match="a3.tif: dtype uint8 differs"):
        run_convert([tmp_path / "a1.tif", tmp_path / "a3.tif"], tmp_path / "o.zarr")


def test_output_exists(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", _vol(np.uint8, shape=(2, 6, 5)))
    run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", progress=False)
    with pytest.raises(OutputExistsError, match="o.zarr: output exists"):
        run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", progress=False)
    run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", overwrite=True, progress=False)


@pytest.mark.parametrize("kw", [{"voxel_size": (0, 1, 1)}, {"voxel_size": (1, -1, 1)},
                                {"chunks": (0, 8, 8)}])
def test_nonpositive_sizes(tmp_path, kw):
    tifffile.imwrite(tmp_path / "s.tif", _vol(np.uint8, shape=(2, 6, 5)))
    with pytest.raises(ParameterError, match="positive"):
        run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", **kw)


def test_interrupted_store_not_complete(tmp_path):
    from chunkseg.io.store import create_image

    create_image(tmp_path / "half.zarr", shape=(1, 4, 4, 4), dtype="uint8")
    assert volume_info(tmp_path / "half.zarr")["complete"] is False
    with pytest.raises(IncompleteStoreError):
        run_convert(tmp_path / "half.zarr", tmp_path / "o.zarr")


# ---------------------------------------------------------------- CLI

def test_cli_convert_and_info(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "s.tif", _vol(np.uint16, shape=(6, 20, 20)))
    assert main(["convert", str(tmp_path / "s.tif"), "--out", str(tmp_path / "o.zarr"),
                 "--voxel-size", "0.4", "0.1", "0.1"]) == 0
    assert json.loads(capsys.readouterr().out)["shape"] == [1, 6, 20, 20]
    assert main(["info", str(tmp_path / "o.zarr"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] and info["voxel_size"] == [0.4, 0.1, 0.1]
    assert info["compression_ratio"] > 0
    assert main(["convert", str(tmp_path / "s.tif"), "--out", str(tmp_path / "o.zarr")]) == 2
    assert "output exists" in capsys.readouterr().err


@pytest.mark.subprocess
def test_cli_light_commands_do_not_import_tensorflow(tmp_path):
    tifffile.imwrite(tmp_path / "s.tif", _vol(np.uint8, shape=(2, 6, 5)))
    code = (
        "import sys; from chunkseg.cli import main; "
        f"main(['convert', {str(tmp_path / 's.tif')!r}, '--out', {str(tmp_path / 'o.zarr')!r}]); "
        f"main(['info', {str(tmp_path / 'o.zarr')!r}]); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.subprocess
def test_cli_version_and_help():
    out = subprocess.run([sys.executable, "-m", "chunkseg", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("chunkseg ")


@pytest.mark.slow
def test_convert_memory_bounded_400mb(tmp_path):
    """A 400 MB stack converts with a peak RSS well below its size (see benchmarks/)."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "benchmarks"))
    import convert_memory

    row = convert_memory.measure(400, tmp_path)
    assert row["read_back_equal"]
    assert row["conversion_rss_MB"] < 0.75 * row["stack_MB"]


def test_drop_slices_recorded(tmp_path):
    x = _vol(np.uint16, shape=(12, 8, 9))
    tifffile.imwrite(tmp_path / "s.tif", x)
    run_convert(tmp_path / "s.tif", tmp_path / "o.zarr", drop_slices="1,5-7", progress=False)
    vol = open_volume(tmp_path / "o.zarr")
    np.testing.assert_array_equal(vol.data.compute()[0], x[[0, 2, 3, 4, 8, 9, 10, 11]])
    assert vol.attrs["dropped_slices"] == [1, 5, 6, 7]
    # converting that store again keeps the acquisition's numbering: its slice 0 is x[0]
    run_convert(tmp_path / "o.zarr", tmp_path / "o2.zarr", drop_slices="0,4", progress=False)
    again = open_volume(tmp_path / "o2.zarr")
    np.testing.assert_array_equal(again.data.compute()[0], x[[2, 3, 4, 9, 10, 11]])
    assert again.attrs["dropped_slices"] == [0, 1, 5, 6, 7, 8]
    with pytest.raises(ParameterError, match="s.tif"):
        run_convert(tmp_path / "s.tif", tmp_path / "p.zarr", drop_slices="3,40", progress=False)
