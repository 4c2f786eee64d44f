"""Finish a store: build its multiscale pyramid blockwise, then mark it complete.

Every command that writes an OME-Zarr image ends with :func:`finish_image`.  When
the store was created with ``pyramid=True`` it builds level ``k`` from level
``k - 1``, one output shard per task through :func:`chunkseg.engine.blocks.write_volume`
(shard-aligned, done-markers per level, so ``--resume`` continues a pyramid too),
records the levels in the NGFF metadata and only then marks the store complete.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.engine.blocks import write_volume
from chunkseg.io.multiscale import create_level, level_grid, write_multiscales
from chunkseg.io.store import mark_complete, open_array, open_volume, read_attrs
from chunkseg.defaults import PYRAMID_PLANE
from chunkseg.ops.pyramid import downsample, level_factors, level_shape

__all__ = ["LABEL_KINDS", "build_pyramid", "finish_image", "pyramid_method"]

#: chunkseg ``kind`` attributes whose voxels are labels (downsampled by mode, not mean)
LABEL_KINDS = ("labels", "mask")


def pyramid_method(kind: str | None) -> str:
    """The downsampling rule of a store's ``kind``: ``"mode"`` for labels and masks, else ``"mean"``."""
    return "mode" if kind in LABEL_KINDS else "mean"


def _level_array(above: Any, factors: tuple[int, ...], shards: tuple[int, ...],
                 method: str) -> da.Array:
    """Level ``k`` as a dask array whose blocks are its shards, each read from its window
    of the zarr array ``above`` (level ``k - 1``)."""
    src = da.from_zarr(above, chunks=tuple(s * f for s, f in zip(shards, factors)))
    chunks = tuple(tuple(-(-c // f) for c in cs) for cs, f in zip(src.chunks, factors))
    return src.map_blocks(downsample, factors, method=method, chunks=chunks, dtype=src.dtype,
                          meta=np.empty((0,) * src.ndim, src.dtype))


def build_pyramid(
    path: str | os.PathLike,
    *,
    method: str,
    plane: int = PYRAMID_PLANE,
    client: Any = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Write pyramid levels ``1, 2, ...`` of an image store and record them in its metadata.

    Parameters
    ----------
    path : path-like
        A store made by :func:`chunkseg.io.store.create_image`, level 0 written.
    method : {"mean", "mode"}
        Downsampling rule (see :mod:`chunkseg.ops.pyramid`).
    plane : int
        Levels are added until a plane fits ``plane x plane``.
    client : distributed.Client, optional
        Cluster to run on; ``None`` uses dask's current scheduler.
    resume : bool
        Keep the finished blocks of existing levels.
    progress : bool
        Show a progress bar per level.

    Returns
    -------
    list of dict
        Per level: ``level``, ``shape``, ``factors`` (relative to the level above),
        ``written``, ``skipped`` blocks.
    """
    path = Path(path)
    base = open_array(path)
    voxel_size = open_volume(path, require_complete=False, verify=False).voxel_size
    chunks0, shards0 = tuple(base.chunks), tuple(base.shards or base.chunks)
    shape, total, done, totals = tuple(base.shape), (1, 1, 1, 1), [], []
    above = base
    for k, f in enumerate(level_factors(shape[1:], voxel_size, plane=plane), 1):
        f4 = (1, *f)
        total = tuple(a * b for a, b in zip(total, f4))
        totals.append(total)
        shape = (shape[0], *level_shape(shape[1:], f))
        chunks, shards = level_grid(shape, chunks0, shards0, total)
        arr = create_level(path, k, shape=shape, chunks=chunks, shards=shards, resume=resume)
        report = write_volume(_level_array(above, f4, shards, method), path / str(k),
                              client=client, resume=resume, progress=progress,
                              desc=f"pyramid level {k}")
        done.append({"level": k, "shape": list(shape), "factors": list(f),
                     "written": report.written, "skipped": report.skipped})
        above = arr
    write_multiscales(path, totals)
    return done


def finish_image(
    path: str | os.PathLike,
    *,
    client: Any = None,
    resume: bool = False,
    progress: bool = True,
    plane: int = PYRAMID_PLANE,
    **extra: Any,
) -> list[dict[str, Any]]:
    """Build the store's pyramid (when it was created with ``pyramid=True``), then mark it complete.

    Parameters
    ----------
    path : path-like
        A store whose level 0 is fully written.
    client, resume, progress, plane
        As for :func:`build_pyramid`.
    **extra
        Attributes recorded with completion (as :func:`chunkseg.io.store.mark_complete`).

    Returns
    -------
    list of dict
        The levels built (empty without a pyramid).
    """
    attrs = read_attrs(path)
    levels: list[dict[str, Any]] = []
    if attrs.get("pyramid", False):
        t0 = time.perf_counter()
        levels = build_pyramid(path, method=pyramid_method(attrs.get("kind")), plane=plane,
                               client=client, resume=resume, progress=progress)
        extra["pyramid_seconds"] = round(time.perf_counter() - t0, 3)
    mark_complete(path, **extra)
    return levels
