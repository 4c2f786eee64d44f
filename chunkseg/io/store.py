"""The OME-Zarr volume store: create, open, validate and mark complete.

A chunkseg volume is an OME-Zarr (NGFF 0.5, Zarr v3) group holding one full-resolution
array ``<group>/0`` with axes ``t z y x``.  chunkseg's own metadata (provenance,
normalization range, dropped slices, the run fingerprint, ...) lives in the group
attribute ``"chunkseg"``; its key ``complete`` is written last, after every block of
data, so an interrupted run never looks finished.

Chunk and shard defaults (for 251 x 1024 x 1024 uint16 light-sheet stacks):
chunks ``(1, 32, 256, 256)`` are 4 MiB uncompressed, small enough that a random
64 x 128 x 128 training crop decompresses at most 8 chunks, large enough that
compression (Blosc-zstd, bit-shuffle) works well.  Shards ``(1, 64, 512, 512)`` group
8 chunks into one 32 MiB object, so a 1024 x 1024 time point is 16 files instead of
128 and every dask task writes whole shards (the unit of safe parallel writes).
A store written and read once by chunkseg itself (a work store) may use
``codec="lz4"`` (:data:`CODECS`): several times faster to encode and decode, with a
lower compression ratio.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg import __version__
from chunkseg.defaults import CHUNKS, SHARDS
from chunkseg.errors import (
    FormatError,
    IncompleteStoreError,
    InputNotFoundError,
    OutputError,
    OutputExistsError,
    ParameterError,
    ResumeMismatchError,
    ShapeError,
)

__all__ = [
    "CODECS",
    "DEFAULT_CHUNKS",
    "DEFAULT_SHARDS",
    "VERIFY_BLOCKS",
    "Volume",
    "check_resume_pyramid",
    "create_image",
    "default_chunks",
    "is_zarr",
    "mark_complete",
    "missing_shards",
    "open_array",
    "open_volume",
    "read_attrs",
    "shard_sample",
    "update_attrs",
    "ome_metadata",
]

DEFAULT_CHUNKS: tuple[int, int, int, int] = CHUNKS
DEFAULT_SHARDS: tuple[int, int, int, int] = SHARDS
#: Blosc settings of :func:`create_image`'s codecs: ``zstd`` (the default, compact) and
#: ``lz4`` (for work stores: on a block of labels about 6x faster to encode, 2x to decode)
CODECS: dict[str, dict[str, Any]] = {
    "zstd": {"cname": "zstd", "clevel": 3, "shuffle": "bitshuffle"},
    "lz4": {"cname": "lz4", "clevel": 5, "shuffle": "noshuffle"},
}
AXES = ("t", "z", "y", "x")
ARRAY_NAME = "0"
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Volume:
    """A lazily opened 4D volume.

    Attributes
    ----------
    data : dask.array.Array
        The voxels, axes ``(t, z, y, x)``; nothing is read until computed.
    voxel_size : tuple of float
        Physical voxel size in micrometres, ``(z, y, x)``.
    attrs : dict
        chunkseg metadata of the store (empty for TIFF and foreign Zarr input).
    path : str
        Where the volume was opened from.
    """

    data: da.Array
    voxel_size: tuple[float, float, float]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape ``(t, z, y, x)``."""
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        """Voxel dtype."""
        return self.data.dtype


def _positive(name: str, values: Sequence[float], n: int) -> tuple:
    values = tuple(values)
    if len(values) != n or any(not (v > 0) for v in values):
        raise ParameterError(f"{name} must be {n} positive numbers; got {values!r}")
    return values


def default_chunks(
    shape: Sequence[int],
    dtype: Any = np.uint16,
    *,
    chunks: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Choose chunk and shard shapes for a ``(t, z, y, x)`` volume.

    Parameters
    ----------
    shape : sequence of 4 int
        Volume shape.
    dtype : dtype-like
        Voxel dtype (kept for future byte-size based choices).
    chunks : sequence of 3 or 4 int, optional
        Requested chunk shape (z, y, x) or (t, z, y, x); the default is
        :data:`DEFAULT_CHUNKS`.

    Returns
    -------
    chunks, shards : tuple of int
        Chunks clipped to the shape; shards a whole number of chunks, about
        :data:`DEFAULT_SHARDS` in extent and never larger than needed.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ShapeError(f"expected a 4D (t, z, y, x) shape; got {shape!r}")
    if chunks is None:
        req = DEFAULT_CHUNKS
    else:
        req = tuple(int(c) for c in chunks)
        if len(req) == 3:
            req = (1, *req)
        _positive("chunks", req, 4)
    out_chunks = tuple(min(c, s) if s > 0 else c for c, s in zip(req, shape))
    shards = []
    for c, s, d in zip(out_chunks, shape, DEFAULT_SHARDS):
        k = max(1, d // c)
        shards.append(min(k * c, math.ceil(max(s, 1) / c) * c))
    return out_chunks, tuple(shards)


def ome_metadata(
    name: str, voxel_size: Sequence[float], *, time_interval: float = 1.0
) -> dict[str, Any]:
    """NGFF 0.5 ``ome`` group attributes for one full-resolution level."""
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [
                    {"name": "t", "type": "time", "unit": "second"},
                    {"name": "z", "type": "space", "unit": "micrometer"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": ARRAY_NAME,
                        "coordinateTransformations": [
                            {
                                "type": "scale",
                                "scale": [float(time_interval), *map(float, voxel_size)],
                            }
                        ],
                    }
                ],
            }
        ],
    }


def is_zarr(path: str | os.PathLike) -> bool:
    """True if ``path`` is a Zarr v3 node (group or array) on the local file system."""
    return (Path(path) / "zarr.json").is_file()


def _node_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: expected a readable Zarr v3 'zarr.json'; got {exc}") from exc


def create_image(
    path: str | os.PathLike,
    *,
    shape: Sequence[int],
    dtype: Any,
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None | bool = None,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    fill_value: Any = 0,
    pyramid: bool = False,
    codec: str = "zstd",
):
    """Create (or, with ``resume``, reopen) an OME-Zarr image group and its array.

    Parameters
    ----------
    path : path-like
        The group to create, e.g. ``"raw.ome.zarr"``.
    shape : sequence of 4 int
        ``(t, z, y, x)``.
    dtype : dtype-like
        Voxel dtype.
    voxel_size : sequence of 3 float
        Micrometres, ``(z, y, x)``.
    chunks, shards : sequence of int, optional
        Chunk shape (see :func:`default_chunks`); ``shards=False`` writes no shards.
    attrs : dict, optional
        Initial chunkseg attributes (``kind``, ``source``, ``fingerprint``...).
    overwrite : bool
        Replace an existing store.
    resume : bool
        Reopen an existing store instead of failing; its ``fingerprint`` attribute,
        shape, dtype and ``pyramid`` choice must equal the requested ones.
    pyramid : bool
        Record that the store gets a multiscale pyramid when it is finished
        (:func:`chunkseg.engine.pyramid.finish_image` builds it).
    codec : {"zstd", "lz4"}
        Compression (:data:`CODECS`).

    Returns
    -------
    zarr.Array
        The full-resolution array ``<path>/0``.

    Raises
    ------
    OutputExistsError
        The store exists and neither ``overwrite`` nor ``resume`` was given.
    ResumeMismatchError
        ``resume`` was given but the store was made from other inputs or parameters.
    """
    import zarr
    from zarr.codecs import BloscCodec

    path = Path(path)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ShapeError(f"{path}: expected a 4D (t, z, y, x) shape; got {shape!r}")
    voxel_size = _positive("voxel_size", [float(v) for v in voxel_size], 3)
    if codec not in CODECS:
        raise ParameterError(f"{path}: codec must be one of {tuple(CODECS)}; got {codec!r}")
    attrs = {**(attrs or {}), "pyramid": bool(pyramid)}
    if path.exists():
        if resume and is_zarr(path):
            return _reopen_for_resume(path, shape, np.dtype(dtype), attrs)
        if not overwrite:
            raise OutputExistsError(
                f"{path}: output exists; pass overwrite (--overwrite) to replace it"
                + (" or resume (--resume) to continue it" if not resume else "")
            )
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out_chunks, out_shards = default_chunks(shape, dtype, chunks=chunks)
    if shards is False:
        out_shards = None
    elif shards is not None:
        out_shards = tuple(int(s) for s in shards)
        if len(out_shards) == 3:
            out_shards = (1, *out_shards)
        if any(s % c for s, c in zip(out_shards, out_chunks)):
            raise ParameterError(
                f"{path}: shards must be whole multiples of chunks {out_chunks}; "
                f"got {out_shards}"
            )
    try:
        group = zarr.create_group(store=str(path), zarr_format=3, overwrite=True)
        group.create_array(
            ARRAY_NAME,
            shape=shape,
            dtype=dtype,
            chunks=out_chunks,
            shards=out_shards,
            compressors=BloscCodec(**CODECS[codec]),
            dimension_names=list(AXES),
            fill_value=fill_value,
        )
        meta = {"version": __version__, **attrs, "complete": False}
        group.attrs.update({"ome": ome_metadata(path.name, voxel_size), "chunkseg": meta})
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot write the output ({exc.strerror or exc}); expected a writable "
            "directory with free space"
        ) from exc
    return zarr.open_array(str(path / ARRAY_NAME), mode="r+")


def _reopen_for_resume(path: Path, shape, dtype, attrs):
    import zarr

    old = read_attrs(path)
    arr = zarr.open_array(str(path / ARRAY_NAME), mode="r+")
    if tuple(arr.shape) != shape or arr.dtype != dtype:
        raise ResumeMismatchError(
            f"{path}: cannot resume; the store holds {arr.shape} {arr.dtype}, this run "
            f"writes {shape} {dtype}"
        )
    if old.get("fingerprint") != attrs.get("fingerprint"):
        raise ResumeMismatchError(
            f"{path}: cannot resume; the input, model or parameters differ from the first "
            f"run (fingerprint {old.get('fingerprint')!r}, now {attrs.get('fingerprint')!r}). "
            "Use --overwrite to start again."
        )
    check_resume_pyramid(path, attrs["pyramid"])
    return arr


def check_resume_pyramid(path: str | os.PathLike, pyramid: bool) -> None:
    """Refuse to resume a store whose first run made the other pyramid choice.

    Raises
    ------
    ResumeMismatchError
        The store records ``pyramid`` other than ``pyramid``.
    """
    first = bool(read_attrs(path).get("pyramid", False))
    if first != bool(pyramid):
        said = {True: "builds a multiscale pyramid", False: "has no pyramid (--no-pyramid)"}
        raise ResumeMismatchError(
            f"{path}: cannot resume; expected the first run's pyramid choice, found another: "
            f"the first run {said[first]}, this run {said[bool(pyramid)]}. Resume "
            f"{'without' if first else 'with'} --no-pyramid, or use --overwrite.")


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ``chunkseg`` attributes of a store (empty dict if it has none)."""
    path = Path(path)
    node = _node_json(path)
    return dict(node.get("attributes", {}).get("chunkseg", {}))


def update_attrs(path: str | os.PathLike, **attrs: Any) -> None:
    """Merge ``attrs`` into the store's ``chunkseg`` attributes."""
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    meta = dict(group.attrs.get("chunkseg", {}))
    meta.update(attrs)
    group.attrs["chunkseg"] = meta


def mark_complete(path: str | os.PathLike, **extra: Any) -> None:
    """Record that every block of the store is written (call this last).

    ``extra`` attributes (summary numbers, the normalization used, ...) are merged
    in the same write.
    """
    update_attrs(path, **extra, complete=True)


def open_array(path: str | os.PathLike, *, mode: str = "r"):
    """Open the full-resolution zarr array of a chunkseg store (or a plain array)."""
    import zarr

    path = Path(path)
    node = _node_json(path)
    if node.get("node_type") == "group":
        return zarr.open_array(str(path / ARRAY_NAME), mode=mode)
    return zarr.open_array(str(path), mode=mode)


def _voxel_size_from_ome(path: Path, ome: dict[str, Any]) -> tuple[float, float, float]:
    try:
        ms = ome["multiscales"][0]
        names = [a["name"] for a in ms["axes"]]
        scale = next(
            t["scale"]
            for t in ms["datasets"][0]["coordinateTransformations"]
            if t["type"] == "scale"
        )
        lookup = dict(zip(names, scale))
        return tuple(float(lookup.get(ax, 1.0)) for ax in ("z", "y", "x"))
    except (KeyError, IndexError, StopIteration, TypeError) as exc:
        raise FormatError(
            f"{path}: malformed OME-Zarr 'multiscales' metadata ({exc!r})"
        ) from exc


def _as_tzyx(path: Path, data: da.Array) -> da.Array:
    if data.ndim == 3:
        return data[None]
    if data.ndim == 4:
        return data
    raise ShapeError(
        f"{path}: expected a 3D (z, y, x) or 4D (t, z, y, x) volume; got {data.ndim}D "
        f"shape {tuple(data.shape)}"
    )


#: shard files :func:`open_volume` checks when verifying a complete store: every one
#: up to this many blocks, else this many spread evenly over the grid
VERIFY_BLOCKS = 4096


def _shard_root(path: Path) -> Path:
    return path / ARRAY_NAME / "c" if (path / ARRAY_NAME).is_dir() else path / "c"


def _shard_grid(path: str | os.PathLike) -> tuple[Path, list[int]]:
    """The folder of the shard files and the number of shards per axis."""
    arr = open_array(path)
    grid = arr.shards or arr.chunks
    return _shard_root(Path(path)), [math.ceil(n / g) for n, g in zip(arr.shape, grid)]


def missing_shards(path: str | os.PathLike, *, limit: int | None = None) -> list[tuple[int, ...]]:
    """Grid indices of shard (or chunk) files absent from a local chunkseg store.

    chunkseg writes every shard, empty ones included, so in a complete store a
    missing file means lost data (zarr would silently read it as the fill value).
    Lists every shard file: O(blocks); :func:`open_volume` checks a bounded sample.
    """
    import itertools

    root, counts = _shard_grid(path)
    present = {
        tuple(int(v) for v in f.relative_to(root).parts)
        for f in root.rglob("*") if f.is_file()
    } if root.is_dir() else set()
    missing = []
    for idx in itertools.product(*(range(c) for c in counts)):
        if idx not in present:
            missing.append(idx)
            if limit is not None and len(missing) >= limit:
                break
    return missing


def shard_sample(counts: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """At most ``n`` grid indices spread evenly over a grid of ``counts`` shards.

    Every index when the grid has at most ``n``; else the first, the last and evenly
    spaced ones between them in C order (so every part of a series is visited).
    """
    total = math.prod(int(c) for c in counts)
    if total <= n:
        picks = range(total)
    else:
        picks = sorted({(i * (total - 1)) // (n - 1) for i in range(n)}) if n > 1 else [0]
    return [tuple(int(v) for v in np.unravel_index(i, counts)) for i in picks]


def _lost_shards(path: Path, limit: int) -> list[tuple[int, ...]]:
    """Missing shard files of a complete store: all of them up to :data:`VERIFY_BLOCKS`
    blocks, else among :func:`shard_sample` (cost bounded whatever the series length)."""
    root, counts = _shard_grid(path)
    if math.prod(counts) <= VERIFY_BLOCKS:
        return missing_shards(path, limit=limit)
    lost = [idx for idx in shard_sample(counts, VERIFY_BLOCKS)
            if not root.joinpath(*map(str, idx)).is_file()]
    return lost[:limit]


def open_volume(
    path: str | os.PathLike, *, require_complete: bool = True, verify: bool = True
) -> Volume:
    """Open a volume lazily as ``(t, z, y, x)``.

    Parameters
    ----------
    path : path-like
        A chunkseg OME-Zarr group, any Zarr v3 array or OME-Zarr image group, a
        TIFF file (3D → t = 1, 4D t z y x), or an HDF5 dataset ``FILE.h5:/dataset``.
    require_complete : bool
        Refuse a chunkseg store that was never marked complete.
    verify : bool
        For a complete chunkseg store, check that its shard files exist (no voxels
        read): every one up to :data:`VERIFY_BLOCKS` blocks, else that many spread
        evenly over the grid (:func:`shard_sample`), so opening costs the same at
        10^6 blocks; :func:`missing_shards` checks every one.

    Returns
    -------
    Volume

    Raises
    ------
    InputNotFoundError, FormatError, ShapeError, IncompleteStoreError
    """
    from chunkseg.io.hdf5 import open_hdf5, split_hdf5_path

    if split_hdf5_path(path):
        data, voxel_size = open_hdf5(path)
        return Volume(data, voxel_size or (1.0, 1.0, 1.0), {}, str(path))
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file or directory")
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        from chunkseg.io.tiff import open_tiff

        data, voxel_size = open_tiff(path)
        return Volume(data, voxel_size or (1.0, 1.0, 1.0), {}, str(path))
    if not is_zarr(path):
        raise FormatError(
            f"{path}: expected an OME-Zarr / Zarr v3 store or a TIFF file; found neither"
        )
    node = _node_json(path)
    attributes = node.get("attributes", {})
    meta = dict(attributes.get("chunkseg", {}))
    if meta and require_complete and not meta.get("complete", False):
        raise IncompleteStoreError(
            f"{path}: the store is incomplete (an interrupted or failed run wrote it: "
            "expected attribute chunkseg.complete = true, found false). Re-run the "
            "command with --resume or --overwrite."
        )
    if meta.get("complete") and verify:
        lost = _lost_shards(path, limit=5)
        if lost:
            raise IncompleteStoreError(
                f"{path}: the store is marked complete but shard files are missing "
                f"(expected one per block; first missing grid indices: {lost}); the data "
                "were lost after writing. Re-create it with --overwrite."
            )
    arr = open_array(path)
    voxel_size = (1.0, 1.0, 1.0)
    if node.get("node_type") == "group" and "ome" in attributes:
        voxel_size = _voxel_size_from_ome(path, attributes["ome"])
    data = da.from_zarr(arr, chunks=arr.shards or arr.chunks)
    return Volume(_as_tzyx(path, data), voxel_size, meta, str(path))
