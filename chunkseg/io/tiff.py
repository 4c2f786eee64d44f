"""Lazy, validated TIFF reading (3D stacks, 4D hyperstacks, series of 3D files).

Pages are read inside dask tasks: each task opens the file, decodes the planes of one
block one at a time, crops them and closes the file, so the graph pickles to
distributed workers (an open ``tifffile`` handle or ``aszarr`` store does not) and a
task holds one plane plus its block.  Blocks match the output's shards, so a plane
is decoded once per shard column it crosses (4x for a 1024 x 1024 plane and 512 x 512
shards) in exchange for memory bounded by a shard.
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.defaults import READ_BLOCK
from chunkseg.errors import DTypeError, FormatError, InputNotFoundError, ParameterError, ShapeError
from chunkseg.io.lazy import block_reader_array

#: default ``(z, y, x)`` extent of one read task: the default shard shape
DEFAULT_BLOCK = READ_BLOCK

__all__ = ["DEFAULT_BLOCK", "TiffInfo", "natural_key", "open_tiff", "open_tiff_series", "tiff_info"]

_UNIT_TO_UM = {
    "micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micrometer": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3,
}


@dataclass(frozen=True)
class TiffInfo:
    """What a TIFF holds, read from its header and IFDs only.

    Attributes
    ----------
    path : str
    shape : tuple of int
        ``(t, z, y, x)`` after channel selection.
    dtype : numpy.dtype
    axes : str
        tifffile's axes of the first series (e.g. ``"TZCYX"``).
    series_shape : tuple of int
        Shape of the first series as stored.
    channel_axis : int or None
        Position of ``C`` in ``series_shape``.
    voxel_size : tuple of float or None
        ``(z, y, x)`` in micrometres, when the metadata gives it.
    paged : bool
        True if every 2D plane is its own page (pages can be read selectively).
    """

    path: str
    shape: tuple[int, int, int, int]
    dtype: np.dtype
    axes: str
    series_shape: tuple[int, ...]
    channel_axis: int | None
    voxel_size: tuple[float, float, float] | None
    paged: bool


def natural_key(path: str | os.PathLike) -> list[Any]:
    """Sort key ordering ``t2`` before ``t10`` (digits compared as numbers)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", str(path))]


def _voxel_size(tif) -> tuple[float, float, float] | None:
    ome = tif.ome_metadata
    if ome:
        def attr(name: str) -> float | None:
            m = re.search(rf'{name}="([0-9.eE+-]+)"', ome)
            return float(m.group(1)) if m else None

        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
        scale = _UNIT_TO_UM.get(unit.group(1), 1.0) if unit else 1.0
        sizes = [attr("PhysicalSizeZ"), attr("PhysicalSizeY"), attr("PhysicalSizeX")]
        if all(s is not None for s in sizes[1:]):
            return tuple((s if s is not None else 1.0) * scale for s in sizes)
    ij = tif.imagej_metadata
    if ij:
        page = tif.pages.first
        unit = str(ij.get("unit", "micron"))
        scale = _UNIT_TO_UM.get(unit, 1.0)
        try:
            xr = page.tags["XResolution"].value
            yr = page.tags["YResolution"].value
            x = xr[1] / xr[0] if xr[0] else None
            y = yr[1] / yr[0] if yr[0] else None
        except KeyError:
            x = y = None
        z = ij.get("spacing")
        if x and y:
            return (float(z or 1.0) * scale, y * scale, x * scale)
    return None


def tiff_info(path: str | os.PathLike, *, channel: int | None = None) -> TiffInfo:
    """Read and validate a TIFF's header.

    Raises
    ------
    InputNotFoundError
        The file does not exist.
    FormatError
        Not a TIFF, or truncated (the last page's data lie past the end of the file).
    ShapeError
        Not 3D or 4D after channel selection.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such file")
    axes, sshape, dtype, paged, voxel_size = _read_header(path)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DTypeError(f"{path}: expected integer or float voxels; got dtype {dtype}")
    if axes.endswith("S"):
        raise ShapeError(f"{path}: RGB / interleaved multi-sample TIFFs are not supported "
                         f"(axes {axes!r}); expected grey-level planes")
    caxis = axes.find("C") if "C" in axes else None
    shape = _tzyx_shape(path, axes, sshape, caxis, channel)
    return TiffInfo(str(path), shape, dtype, axes, sshape, caxis, voxel_size, paged)


def _read_header(path: Path) -> tuple[str, tuple[int, ...], np.dtype, bool, Any]:
    """Axes, series shape, dtype, one-page-per-plane and voxel size; truncation refused."""
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            sshape = tuple(series.shape)
            dtype = np.dtype(series.dtype)
            pages = series.pages
            n_planes = math.prod(sshape[:-2]) if len(sshape) >= 2 else 1
            paged = len(pages) == n_planes and all(
                p is not None for p in (pages[0], pages[-1])
            )
            n_pages = len(tif.pages)
            end = 0
            for page in pages:
                if page is not None and getattr(page, "dataoffsets", None):
                    end = max(end, *(o + c for o, c in zip(page.dataoffsets, page.databytecounts)))
            voxel_size = _voxel_size(tif)
    except tifffile.TiffFileError as exc:
        raise FormatError(f"{path}: expected a TIFF file; tifffile says: {exc}") from exc
    except (ValueError, IndexError, OSError, KeyError) as exc:
        raise FormatError(f"{path}: unreadable or corrupt TIFF ({exc})") from exc
    # planar samples ('S', tifffile's guess for a small leading axis) share one page
    n_page_expected = n_planes // (sshape[axes.index("S")] if "S" in axes else 1)
    if not paged and min(n_pages, len(pages)) < n_page_expected:
        raise FormatError(
            f"{path}: truncated TIFF: the metadata describe {n_page_expected} pages, "
            f"the file holds {n_pages}"
        )
    if end > size:
        raise FormatError(
            f"{path}: truncated TIFF: image data should end at byte {end}, "
            f"the file has {size} bytes"
        )
    return axes, sshape, dtype, paged, voxel_size


def _tzyx_shape(path: Path, axes: str, sshape: tuple[int, ...], caxis: int | None,
                channel: int | None) -> tuple[int, int, int, int]:
    """The (t, z, y, x) shape once ``channel`` is chosen; a bad channel refused."""
    shape = list(sshape)
    if caxis is not None:
        if channel is None:
            raise ParameterError(
                f"{path}: the file has {sshape[caxis]} channels (axes {axes!r}); "
                "choose one with --channel"
            )
        if not 0 <= channel < sshape[caxis]:
            raise ParameterError(
                f"{path}: --channel must be in [0, {sshape[caxis] - 1}]; got {channel}"
            )
        del shape[caxis]
    elif channel not in (None, 0):
        raise ParameterError(f"{path}: --channel {channel} given but the file has no channels")
    if len(shape) == 3:
        shape = [1, *shape]
    if len(shape) != 4:
        raise ShapeError(
            f"{path}: expected a 3D (z, y, x) or 4D (t, z, y, x) image; got shape "
            f"{tuple(sshape)} with axes {axes!r}"
        )
    return tuple(shape)


def _plane_indices(info: TiffInfo, t: int, z0: int, z1: int, channel: int | None) -> list[int]:
    """Page numbers of planes ``z0:z1`` of time point ``t`` in the first series."""
    lead = info.series_shape[:-2]
    n_spatial = len(lead) - (info.channel_axis is not None)
    idx = []
    for z in range(z0, z1):
        pos = [t, z] if n_spatial == 2 else [z]
        if info.channel_axis is not None:
            pos.insert(info.channel_axis, channel)
        idx.append(int(np.ravel_multi_index(pos, lead)))
    return idx


def _read_block(path: str, info: TiffInfo, channel: int | None, t: int,
                region: tuple[slice, slice, slice]) -> np.ndarray:
    """Read one ``(1, z, y, x)`` block (one dask task).

    Planes are decoded one at a time and cropped at once, so a task holds one plane
    plus its output block, whatever the block's share of the plane.
    """
    import tifffile

    zs, ys, xs = region
    out = np.empty((1, zs.stop - zs.start, ys.stop - ys.start, xs.stop - xs.start), info.dtype)
    try:
        with tifffile.TiffFile(path) as tif:
            if info.paged:
                for i, page in enumerate(_plane_indices(info, t, zs.start, zs.stop, channel)):
                    out[0, i] = tif.asarray(key=page, series=0)[ys, xs]
            else:  # planes are not separate pages: decode the series (small files only)
                full = tif.series[0].asarray()
                if info.channel_axis is not None:
                    full = np.take(full, channel, axis=info.channel_axis)
                out[0] = full.reshape(info.shape)[t, zs, ys, xs]
    except Exception as exc:  # any decoding failure names the file
        raise FormatError(
            f"{path}: failed to read t={t} z={zs.start}:{zs.stop}: {exc}"
        ) from exc
    return out


def _lazy(info: TiffInfo, channel: int | None, block: tuple[int, int, int]) -> da.Array:
    """A dask array over the TIFF, one task per ``block``-sized region of each time point."""
    from dask.base import tokenize

    read = functools.partial(_read_block, info.path, info, channel)
    return block_reader_array(read, info.shape, info.dtype, block,
                              token="read-tiff-" + tokenize(info, channel, block))


def open_tiff(
    path: str | os.PathLike, *, channel: int | None = None,
    block: tuple[int, int, int] = DEFAULT_BLOCK,
) -> tuple[da.Array, tuple[float, float, float] | None]:
    """Open one 3D or 4D TIFF lazily as ``(t, z, y, x)``.

    Parameters
    ----------
    block : tuple of 3 int
        ``(z, y, x)`` extent of one read task (give the output's shard shape so
        writes need no rechunk).

    Returns
    -------
    data : dask.array.Array
        Chunks of ``(1, *block)``.
    voxel_size : tuple of float or None
        ``(z, y, x)`` micrometres from ImageJ / OME metadata, if present.
    """
    info = tiff_info(path, channel=channel)
    return _lazy(info, channel, block), info.voxel_size


def open_tiff_series(
    paths: list[str | os.PathLike], *, block: tuple[int, int, int] = DEFAULT_BLOCK
) -> tuple[da.Array, tuple[float, float, float] | None, list[str]]:
    """Open a list of 3D TIFFs (sorted naturally) as one time series ``(t, z, y, x)``.

    Raises
    ------
    ShapeError, DTypeError
        The files differ in shape or dtype (the message names the first odd file).
    """
    ordered = sorted((str(p) for p in paths), key=natural_key)
    infos = [tiff_info(p) for p in ordered]
    first = infos[0]
    for info in infos if len(infos) > 1 else []:
        if info.shape[0] != 1:
            raise ShapeError(
                f"{info.path}: time-series files must be 3D; got 4D shape {info.shape}"
            )
        if info.shape != first.shape:
            raise ShapeError(
                f"{info.path}: shape {info.shape[1:]} differs from {first.path} "
                f"{first.shape[1:]}; every file of a time series must have the same shape"
            )
        if info.dtype != first.dtype:
            raise DTypeError(
                f"{info.path}: dtype {info.dtype} differs from {first.path} {first.dtype}"
            )
    data = da.concatenate([_lazy(i, None, block) for i in infos], axis=0)
    return data, first.voxel_size, ordered
