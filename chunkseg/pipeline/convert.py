"""``chunkseg convert``: TIFF / TIFF series / HDF5 / Zarr → chunkseg OME-Zarr, streamed.

Peak memory is a few z-slabs of the input (one task reads the pages of one
``(t, z-slab)``, the write tasks take whole shards), never the whole volume.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da

from chunkseg.engine.blocks import write_volume
from chunkseg.engine.pyramid import finish_image
from chunkseg.errors import InputError, InputNotFoundError, ParameterError
from chunkseg.io.fingerprint import fingerprint
from chunkseg.io.hdf5 import split_hdf5_path
from chunkseg.io.store import (
    TIFF_SUFFIXES,
    create_image,
    default_chunks,
    is_zarr,
    open_volume,
)
from chunkseg.io.tiff import DEFAULT_BLOCK
from chunkseg.ops.slices import compose_dropped, drop_slices as _drop

__all__ = ["expand_inputs", "open_inputs", "run_convert"]


def _file_of(source: str) -> str:
    """The file behind an input: ``FILE.h5`` for ``FILE.h5:/dataset``, else the input."""
    parts = split_hdf5_path(source)
    return str(parts[0]) if parts else source


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Expand globs and check that every input exists (natural order is applied later).

    Raises
    ------
    InputNotFoundError
        An input (or a glob matching nothing) does not exist.
    """
    out: list[str] = []
    for item in inputs:
        item = str(item)
        if any(ch in item for ch in "*?["):
            matches = glob.glob(item)
            if not matches:
                raise InputNotFoundError(f"{item}: the pattern matches no file")
            out.extend(matches)
        elif not os.path.exists(_file_of(item)):
            raise InputNotFoundError(f"{_file_of(item)}: no such file or directory")
        else:
            out.append(item)
    if not out:
        raise InputError("no input given; expected one or more TIFF files or a Zarr store")
    return out


def open_inputs(
    inputs: Sequence[str | os.PathLike], *, channel: int | None = None,
    block: tuple[int, int, int] = DEFAULT_BLOCK,
) -> tuple[da.Array, tuple[float, float, float] | None, list[str]]:
    """Open the inputs of ``convert`` lazily as one ``(t, z, y, x)`` dask array.

    Returns
    -------
    data : dask.array.Array
    voxel_size : tuple of float or None
        From the input's metadata, when present.
    sources : list of str
        Input files in the order used (natural order for a series).
    """
    from chunkseg.io.hdf5 import open_hdf5
    from chunkseg.io.tiff import open_tiff, open_tiff_series

    paths = expand_inputs(inputs)
    if len(paths) == 1 and split_hdf5_path(paths[0]):
        data, voxel_size = open_hdf5(paths[0], channel=channel, block=block)
        return data, voxel_size, [paths[0]]
    if len(paths) == 1:
        path = Path(paths[0])
        if is_zarr(path):
            vol = open_volume(path)
            return vol.data, vol.voxel_size, [str(path)]
        if path.suffix.lower() in TIFF_SUFFIXES or path.is_file():
            data, voxel_size = open_tiff(path, channel=channel, block=block)
            return data, voxel_size, [str(path)]
    for p in paths:
        if is_zarr(p) or split_hdf5_path(p):
            raise InputError(f"{p}: expected TIFF files in a time series; found a "
                             f"{'Zarr store' if is_zarr(p) else 'HDF5 file'}")
    if channel is not None:
        raise ParameterError("--channel applies to one hyperstack TIFF, not to a series")
    return open_tiff_series(paths, block=block)


def run_convert(
    inputs: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    voxel_size: Sequence[float] | None = None,
    chunks: Sequence[int] | None = None,
    channel: int | None = None,
    drop_slices: str | Sequence[int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    pyramid: bool = True,
    client: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Convert light-sheet data to a chunkseg OME-Zarr image.

    Parameters
    ----------
    inputs : path or sequence of paths
        One 3D TIFF, one 4D TIFF (``t z y x``; a hyperstack with channels needs
        ``channel``), several 3D TIFFs or a glob (a time series, ordered naturally),
        an HDF5 dataset ``FILE.h5:/dataset`` (3D or 4D; ilastik axistags with a
        channel axis need ``channel``), or an existing Zarr array / OME-Zarr image.
    out : path-like
        The OME-Zarr group to write.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` micrometres; overrides the input's metadata.
    chunks : sequence of int, optional
        Chunk shape ``(z, y, x)``; shards are chosen around it (see the README).
    channel : int, optional
        Channel of a multi-channel hyperstack.
    drop_slices : str or sequence of int, optional
        Artifact z-slices to remove (``"3,17,40-45"``), recorded in the metadata.
    overwrite, resume : bool
        Replace an existing output / continue an interrupted conversion.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    client : distributed.Client, optional
        Cluster to run on; ``None`` uses dask's threaded scheduler.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        Summary: output path, shape, dtype, chunks, shards, voxel size, seconds, MB/s.
    """
    t0 = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if voxel_size is not None:
        voxel_size = tuple(float(v) for v in voxel_size)
        if len(voxel_size) != 3 or any(not v > 0 for v in voxel_size):
            raise ParameterError(f"--voxel-size must be 3 positive numbers (z y x); got {voxel_size}")
    if chunks is not None and (len(chunks) not in (3, 4) or any(int(c) < 1 for c in chunks)):
        raise ParameterError(f"--chunks must be 3 positive integers (z y x); got {tuple(chunks)}")
    # one read task per output shard: writes need no rechunk, memory is a shard per thread
    block = default_chunks((1, 1 << 30, 1 << 30, 1 << 30), chunks=chunks)[1][1:]
    data, meta_voxel, sources = open_inputs(inputs, channel=channel, block=block)
    data, dropped = _drop(data, drop_slices, name=str(sources[0]))
    if is_zarr(sources[0]):  # a chunkseg store keeps the slices dropped before it, too
        dropped = compose_dropped(open_volume(sources[0]).attrs.get("dropped_slices") or [],
                                  dropped)
    vs = voxel_size or meta_voxel or (1.0, 1.0, 1.0)
    params = {"voxel_size": vs, "chunks": chunks, "channel": channel, "dropped": dropped}
    attrs = {
        "kind": "raw",
        "source": sources,
        "channel": channel,
        "dropped_slices": dropped,
        "voxel_size_from": "argument" if voxel_size else ("metadata" if meta_voxel else "default"),
        "fingerprint": fingerprint(sources, params, shape=data.shape, dtype=data.dtype),
    }
    arr = create_image(out, shape=data.shape, dtype=data.dtype, voxel_size=vs, chunks=chunks,
                       attrs=attrs, overwrite=overwrite, resume=resume, pyramid=pyramid)
    report = write_volume(data, out, client=client, resume=resume, progress=progress, desc="convert")
    seconds = time.perf_counter() - t0
    nbytes = data.size * data.dtype.itemsize
    finish_image(out, client=client, resume=resume, progress=progress,
                 convert_seconds=round(seconds, 3))
    return {
        "out": str(out),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "chunks": list(arr.chunks),
        "shards": list(arr.shards) if arr.shards else None,
        "voxel_size": list(vs),
        "sources": len(sources),
        "blocks_written": report.written,
        "blocks_skipped": report.skipped,
        "seconds": round(seconds, 3),
        "MB_per_s": round(nbytes / 1e6 / max(seconds, 1e-9), 1),
    }
