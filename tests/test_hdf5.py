"""HDF5 input (``FILE.h5:/dataset``): round trips, ilastik axistags, voxel size, bad input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from chunkseg.cli import main  # noqa: E402
from chunkseg.errors import (  # noqa: E402
    DTypeError, FormatError, InputError, InputNotFoundError, ParameterError, ShapeError,
)
from chunkseg.io.hdf5 import hdf5_info, open_hdf5, split_hdf5_path  # noqa: E402
from chunkseg.io.store import open_volume  # noqa: E402
from chunkseg.pipeline.convert import run_convert  # noqa: E402


def _write(path, name, data, **attrs):
    with h5py.File(path, "a") as f:
        ds = f.create_dataset(name, data=data, chunks=True)
        for k, v in attrs.items():
            ds.attrs[k] = v


def _ilastik_tags(axes: str) -> str:
    return json.dumps({"axes": [{"key": a, "typeFlags": 2, "resolution": 0, "description": ""}
                                for a in axes]})


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_roundtrip_3d_exact(tmp_path, dtype):
    rng = np.random.default_rng(1)
    x = (rng.random((11, 37, 29)) * 250).astype(dtype)
    _write(tmp_path / "d.h5", "/volumes/raw", x, element_size_um=[0.5, 0.25, 0.2])
    s = run_convert(f"{tmp_path / 'd.h5'}:/volumes/raw", tmp_path / "o.zarr", chunks=(4, 8, 16),
                    progress=False)
    assert s["shape"] == [1, 11, 37, 29]
    vol = open_volume(tmp_path / "o.zarr")
    assert vol.voxel_size == (0.5, 0.25, 0.2)
    assert vol.attrs["voxel_size_from"] == "metadata"
    np.testing.assert_array_equal(vol.data.compute()[0], x)


def test_roundtrip_4d_and_odd_blocks(tmp_path):
    x = np.arange(3 * 7 * 13 * 17, dtype=np.uint16).reshape(3, 7, 13, 17)
    _write(tmp_path / "s.hdf5", "raw", x)
    data, voxel_size = open_hdf5(f"{tmp_path / 's.hdf5'}:raw", block=(3, 5, 7))
    assert voxel_size is None
    assert data.chunks[1] == (3, 3, 1) and data.chunks[3] == (7, 7, 3)
    np.testing.assert_array_equal(data.compute(), x)
    # the graph pickles (h5py handles are opened inside the tasks, as on distributed workers)
    task = next(iter(data.__dask_graph__().values()))
    assert pickle.loads(pickle.dumps(task)) is not None


def test_ilastik_channel_axis(tmp_path):
    x = np.random.default_rng(2).integers(0, 1000, (6, 10, 12, 2), dtype=np.uint16)
    _write(tmp_path / "il.h5", "exported_data", x, axistags=_ilastik_tags("zyxc"))
    with pytest.raises(ParameterError, match="2 channels .*--channel"):
        hdf5_info(f"{tmp_path / 'il.h5'}:/exported_data")
    data, _ = open_hdf5(f"{tmp_path / 'il.h5'}:/exported_data", channel=1, block=(4, 4, 5))
    np.testing.assert_array_equal(data.compute()[0], x[..., 1])


def test_open_volume_reads_hdf5(tmp_path):
    x = np.ones((4, 5, 6), np.uint8)
    _write(tmp_path / "v.h5", "raw", x)
    vol = open_volume(f"{tmp_path / 'v.h5'}:/raw")
    assert vol.shape == (1, 4, 5, 6)
    assert vol.voxel_size == (1.0, 1.0, 1.0)


def test_split_hdf5_path():
    assert split_hdf5_path("a/b.H5:/x/y") == (split_hdf5_path("a/b.H5")[0], "/x/y")
    assert split_hdf5_path("a/b.h5") [1] is None
    assert split_hdf5_path("a/b.tif") is None


# ---------------------------------------------------------------- bad input

def test_bad_inputs(tmp_path):
    _write(tmp_path / "d.h5", "/g/flat", np.zeros((5, 6), np.uint8))
    _write(tmp_path / "d.h5", "/g/cplx", np.zeros((2, 3, 4), np.complex64))
    _write(tmp_path / "d.h5", "/raw", np.zeros((2, 3, 4), np.uint8))
    d = tmp_path / "d.h5"
    with pytest.raises(InputNotFoundError, match="nope.h5: no such file"):
        hdf5_info(f"{tmp_path / 'nope.h5'}:/raw")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FormatError, match="fake.h5: expected an HDF5 file"):
        hdf5_info(f"{tmp_path / 'fake.h5'}:/raw")
    with pytest.raises(InputError, match=r"d.h5: expected FILE:/DATASET .*/raw \(2, 3, 4\) uint8"):
        hdf5_info(d)
    with pytest.raises(InputError, match="expected a dataset at '/missing'; found it absent"):
        hdf5_info(f"{d}:/missing")
    with pytest.raises(InputError, match="expected a dataset at '/g'; found it a group"):
        hdf5_info(f"{d}:/g")
    with pytest.raises(ShapeError, match=r"d.h5:/g/flat: expected a 3D .* got shape \(5, 6\)"):
        hdf5_info(f"{d}:/g/flat")
    with pytest.raises(DTypeError, match="expected integer or float voxels; got dtype complex64"):
        hdf5_info(f"{d}:/g/cplx")


@pytest.mark.parametrize("spec, message", [
    ("d.h5", "expected FILE:/DATASET"),
    ("d.h5:/flat", "expected a 3D (z, y, x) or 4D"),
    ("missing.h5:/raw", "no such file"),
])
def test_cli_bad_input_exit_2(tmp_path, capsys, spec, message):
    _write(tmp_path / "d.h5", "/flat", np.zeros((5, 6), np.uint8))
    assert main(["convert", str(tmp_path / spec), "--out", str(tmp_path / "o.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o.zarr").exists()


def test_cli_convert_hdf5(tmp_path, capsys):
    x = np.random.default_rng(3).integers(0, 60000, (5, 9, 11), dtype=np.uint16)
    _write(tmp_path / "d.h5", "/raw", x, element_size_um=[2.0, 0.26, 0.26])
    assert main(["convert", f"{tmp_path / 'd.h5'}:/raw", "--out", str(tmp_path / "o.zarr")]) == 0
    vol = open_volume(tmp_path / "o.zarr")
    np.testing.assert_array_equal(vol.data.compute()[0], x)
    np.testing.assert_allclose(vol.voxel_size, (2.0, 0.26, 0.26))


def test_fingerprint_stamps_the_file_and_names_the_dataset(tmp_path):
    import os

    from chunkseg.io.fingerprint import fingerprint

    d = tmp_path / "d.h5"
    _write(d, "/a", np.zeros((2, 3, 4), np.uint8))
    _write(d, "/b", np.zeros((2, 3, 4), np.uint8))
    fa, fb = fingerprint([f"{d}:/a"]), fingerprint([f"{d}:/b"])
    assert fa != fb
    st = os.stat(d)
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file was rewritten
    assert fingerprint([f"{d}:/a"]) != fa
