"""Lazy, validated HDF5 reading (the format of PlantSeg and ilastik data sets).

A dataset is named ``FILE.h5:/path/in/file`` (suffixes ``.h5``, ``.hdf5``, ``.hdf``,
``.he5``).  Shapes: 3D ``(z, y, x)``, 4D ``(t, z, y, x)``, or any order of ``t z y x c``
described by an ilastik ``axistags`` attribute (a channel axis needs ``channel``).
The voxel size comes from the ``element_size_um`` attribute (PlantSeg's, z y x µm) or
from the ilastik axistags' resolutions.

Each read task opens the file, reads the hyperslab of its block and closes the file
(h5py objects do not pickle to distributed workers); memory is one block per task.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.errors import DTypeError, FormatError, InputError, InputNotFoundError, ParameterError, ShapeError
from chunkseg.io.lazy import block_reader_array

__all__ = ["HDF5_SUFFIXES", "Hdf5Info", "hdf5_info", "open_hdf5", "split_hdf5_path"]

#: file suffixes read as HDF5
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

_SPEC = re.compile(r"^(?P<file>.*?\.(?:h5|hdf5|hdf|he5))(?::(?P<dataset>.*))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Hdf5Info:
    """What an HDF5 dataset holds, read from its header only.

    Attributes
    ----------
    path : str
        The file.
    dataset : str
        Absolute path of the dataset inside the file.
    shape : tuple of int
        ``(t, z, y, x)`` after channel selection.
    dtype : numpy.dtype
    axes : str
        Axes of the stored dataset, e.g. ``"zyx"``, ``"tzyx"``, ``"zyxc"``.
    channel : int or None
        Selected channel (when the dataset has a ``c`` axis).
    voxel_size : tuple of float or None
        ``(z, y, x)`` micrometres, when the attributes give it.
    """

    path: str
    dataset: str
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    axes: str
    channel: int | None
    voxel_size: tuple[float, float, float] | None


def split_hdf5_path(spec: str | os.PathLike) -> tuple[Path, str | None] | None:
    """Split ``FILE.h5:/dataset`` into the file and the dataset path.

    Returns
    -------
    (Path, str or None) or None
        ``None`` when ``spec`` does not name an HDF5 file; the dataset is ``None``
        when the spec has none (``FILE.h5`` alone).

    Examples
    --------
    >>> split_hdf5_path("data/ovule.h5:/raw")
    (PosixPath('data/ovule.h5'), '/raw')
    >>> split_hdf5_path("stack.tif") is None
    True
    """
    m = _SPEC.match(str(spec))
    if m is None:
        return None
    dataset = m.group("dataset")
    return Path(m.group("file")), (dataset or None)


def _describe(f: Any) -> str:
    """``/raw (32, 128, 128) uint8, ...`` for every dataset in an open file."""
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(f"/{name} {tuple(obj.shape)} {obj.dtype}")

    f.visititems(visit)
    return ", ".join(found) if found else "none"


def _axes(path: Path, dataset: str, ds: Any) -> tuple[str, dict[str, float]]:
    """Axis letters of a dataset and the resolutions its axistags give (ilastik)."""
    tags = ds.attrs.get("axistags")
    if tags is None:
        return {3: "zyx", 4: "tzyx"}.get(ds.ndim, ""), {}
    try:
        axes = json.loads(tags)["axes"]
        letters = "".join(str(a["key"]).lower() for a in axes)
        res = {str(a["key"]).lower(): float(a.get("resolution", 0) or 0) for a in axes}
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{path}:{dataset}: unreadable 'axistags' attribute ({exc})") from exc
    return letters, res


def _voxel_size(ds: Any, res: dict[str, float]) -> tuple[float, float, float] | None:
    size = ds.attrs.get("element_size_um")
    if size is not None and len(np.atleast_1d(size)) == 3:
        vs = tuple(float(v) for v in np.atleast_1d(size))
        if all(v > 0 for v in vs):
            return vs
    if all(res.get(a, 0) > 0 for a in "zyx"):
        return (res["z"], res["y"], res["x"])
    return None


def _dataset(f: Any, path: Path, dataset: str | None) -> Any:
    import h5py

    if not dataset:
        raise InputError(
            f"{path}: expected FILE:/DATASET naming the dataset to read; found no dataset "
            f"path (datasets in the file: {_describe(f)})"
        )
    obj = f.get(dataset)
    if not isinstance(obj, h5py.Dataset):
        what = "a group" if isinstance(obj, h5py.Group) else "absent"
        raise InputError(
            f"{path}: expected a dataset at {dataset!r}; found it {what} "
            f"(datasets in the file: {_describe(f)})"
        )
    return obj


def _shape(name: str, ds: Any, axes: str, channel: int | None) -> tuple[int, int, int, int]:
    """``(t, z, y, x)`` after channel selection; validates axes and channel."""
    dims = dict(zip(axes, ds.shape))
    if "c" in axes:
        if channel is None:
            raise ParameterError(f"{name}: the dataset has {dims['c']} channels (axes "
                                 f"{axes!r}); choose one with --channel")
        if not 0 <= channel < dims["c"]:
            raise ParameterError(f"{name}: --channel must be in [0, {dims['c'] - 1}]; got {channel}")
    elif channel not in (None, 0):
        raise ParameterError(f"{name}: --channel {channel} given but the dataset has no channels")
    spatial = axes.replace("c", "")
    if len(axes) != ds.ndim or spatial not in ("zyx", "tzyx"):
        raise ShapeError(
            f"{name}: expected a 3D (z, y, x) or 4D (t, z, y, x) dataset; got shape "
            f"{tuple(ds.shape)}" + (f" with axes {axes!r}" if axes else "")
        )
    return (dims.get("t", 1), dims["z"], dims["y"], dims["x"])


def hdf5_info(spec: str | os.PathLike, *, channel: int | None = None) -> Hdf5Info:
    """Read and validate the header of an HDF5 dataset ``FILE.h5:/dataset``.

    Raises
    ------
    InputNotFoundError
        The file does not exist.
    FormatError
        Not an HDF5 file.
    InputError
        No dataset named, or the named path is absent or a group (the message lists
        the file's datasets).
    ShapeError, DTypeError, ParameterError
        Not 3D / 4D, a dtype other than integer or float, a bad channel.
    """
    import h5py

    parts = split_hdf5_path(spec)
    if parts is None:
        raise FormatError(f"{spec}: expected an HDF5 file ({', '.join(HDF5_SUFFIXES)})")
    path, dataset = parts
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise FormatError(f"{path}: expected an HDF5 file; found no HDF5 signature")
    with h5py.File(path, "r") as f:
        ds = _dataset(f, path, dataset)
        name = f"{path}:{ds.name}"
        axes, res = _axes(path, ds.name, ds)
        shape = _shape(name, ds, axes, channel)
        dtype = np.dtype(ds.dtype)
        if dtype.kind not in "uif" or dtype.itemsize > 8:
            raise DTypeError(f"{name}: expected integer or float voxels; got dtype {dtype}")
        voxel_size = _voxel_size(ds, res)
        return Hdf5Info(str(path), ds.name, shape, dtype, axes, channel if "c" in axes else None,
                        voxel_size)


def _read_block(info: Hdf5Info, t: int, region: tuple[slice, slice, slice]) -> np.ndarray:
    """Read one ``(1, z, y, x)`` block (one dask task)."""
    import h5py

    index = {"t": slice(t, t + 1), "z": region[0], "y": region[1], "x": region[2],
             "c": info.channel}
    key = tuple(index[a] for a in info.axes)
    try:
        with h5py.File(info.path, "r") as f:
            block = f[info.dataset][key]
    except Exception as exc:  # any decoding failure names the file
        raise FormatError(f"{info.path}:{info.dataset}: failed to read t={t} "
                          f"z={region[0].start}:{region[0].stop}: {exc}") from exc
    return block.reshape((1, *(s.stop - s.start for s in region)))


def open_hdf5(
    spec: str | os.PathLike, *, channel: int | None = None,
    block: tuple[int, int, int] = (64, 512, 512),
) -> tuple[da.Array, tuple[float, float, float] | None]:
    """Open an HDF5 dataset ``FILE.h5:/dataset`` lazily as ``(t, z, y, x)``.

    Parameters
    ----------
    spec : str or path-like
        ``FILE.h5:/path/to/dataset``.
    channel : int, optional
        Channel of a dataset with a ``c`` axis.
    block : tuple of 3 int
        ``(z, y, x)`` extent of one read task (give the output's shard shape so writes
        need no rechunk).

    Returns
    -------
    data : dask.array.Array
        Chunks of ``(1, *block)``.
    voxel_size : tuple of float or None
        ``(z, y, x)`` micrometres from the attributes, if present.

    Examples
    --------
    >>> data, voxel_size = open_hdf5("ovule.h5:/raw")  # doctest: +SKIP
    """
    from dask.base import tokenize

    info = hdf5_info(spec, channel=channel)
    st = os.stat(info.path)
    token = "read-hdf5-" + tokenize(info, st.st_size, st.st_mtime_ns, block)
    read = functools.partial(_read_block, info)
    return block_reader_array(read, info.shape, info.dtype, block, token=token), info.voxel_size
