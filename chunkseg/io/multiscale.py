"""The levels of an OME-Zarr multiscale pyramid: their arrays, grids and NGFF metadata.

Level ``k`` of a chunkseg store is the array ``<group>/<k>``; level 0 is the full
resolution every command reads.  Lower levels use level 0's chunk shape (clipped to
the level) and shards that cover the level-0 shard's footprint, so building one
shard of level ``k`` reads about one shard of the level above.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chunkseg.errors import FormatError
from chunkseg.io.store import ARRAY_NAME

__all__ = ["create_level", "level_grid", "levels_info", "write_multiscales"]


def level_grid(
    shape: Sequence[int],
    chunks0: Sequence[int],
    shards0: Sequence[int],
    factors: Sequence[int],
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk and shard shapes of a level.

    Parameters
    ----------
    shape : sequence of int
        The level's shape.
    chunks0, shards0 : sequence of int
        Level 0's chunk and shard (or chunk, when unsharded) shapes.
    factors : sequence of int
        The level's cumulative downsampling factor per axis, relative to level 0.

    Returns
    -------
    chunks, shards : tuple of int
        Chunks as level 0's clipped to the shape; shards a whole number of chunks
        close to ``shards0 / factors``, never beyond the shape's last chunk.
    """
    chunks = tuple(max(1, min(int(c), int(n))) for c, n in zip(chunks0, shape))
    shards = tuple(
        min(max(c, int(s) // int(f) // c * c), math.ceil(max(int(n), 1) / c) * c)
        for c, s, f, n in zip(chunks, shards0, factors, shape)
    )
    return chunks, shards


def create_level(
    path: str | os.PathLike,
    level: int,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    shards: Sequence[int],
    resume: bool = False,
):
    """Create the array of pyramid level ``level`` (>= 1) beside level 0.

    dtype, codecs, fill value and dimension names are level 0's.  With ``resume``
    a level of the same shape and grid is reopened (its finished blocks are kept);
    any other existing level is replaced, since every level is derived data.

    Returns
    -------
    zarr.Array
    """
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    base = group[ARRAY_NAME]
    name = str(int(level))
    shape, chunks, shards = (tuple(int(v) for v in x) for x in (shape, chunks, shards))
    if name in group:
        old = group[name]
        if resume and (old.shape, old.chunks, old.shards or old.chunks) == (shape, chunks, shards):
            return old
        shutil.rmtree(Path(path) / name)
    return group.create_array(
        name, shape=shape, dtype=base.dtype, chunks=chunks,
        shards=None if shards == chunks else shards, compressors=base.compressors,
        fill_value=base.fill_value, dimension_names=base.metadata.dimension_names,
        overwrite=True,
    )


def write_multiscales(path: str | os.PathLike, factors: Sequence[Sequence[int]]) -> None:
    """Record levels ``1..len(factors)`` in the NGFF 0.5 ``multiscales`` metadata.

    Parameters
    ----------
    path : path-like
        The image group.
    factors : sequence of sequence of int
        Each level's cumulative factor ``(t, z, y, x)`` relative to level 0.  A level
        voxel is centred on its window, so its translation is ``(F - 1) / 2`` level-0
        voxels per axis.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r+")
    ome = dict(group.attrs["ome"])
    ms = dict(ome["multiscales"][0])
    base = ms["datasets"][0]
    scale0 = next(t["scale"] for t in base["coordinateTransformations"] if t["type"] == "scale")
    datasets = [{"path": ARRAY_NAME,
                 "coordinateTransformations": [{"type": "scale", "scale": list(scale0)}]}]
    for level, f in enumerate(factors, 1):
        scale = [float(s) * int(k) for s, k in zip(scale0, f)]
        shift = [float(s) * (int(k) - 1) / 2 for s, k in zip(scale0, f)]
        transforms = [{"type": "scale", "scale": scale}]
        if any(shift):
            transforms.append({"type": "translation", "translation": shift})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    ms["datasets"] = datasets
    ome["multiscales"] = [ms, *ome["multiscales"][1:]]
    group.attrs["ome"] = ome


def levels_info(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The levels listed in an image group's metadata: path, shape, chunks, scale, translation.

    Raises
    ------
    FormatError
        The group has no readable ``multiscales`` metadata.
    """
    import zarr

    group = zarr.open_group(str(path), mode="r")
    try:
        datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    except (KeyError, IndexError, TypeError) as exc:
        raise FormatError(f"{path}: expected OME-Zarr 'multiscales' metadata; got {exc!r}") from exc
    out = []
    for d in datasets:
        arr = group[d["path"]]
        tf = {t["type"]: t.get(t["type"]) for t in d.get("coordinateTransformations", [])}
        out.append({"path": d["path"], "shape": list(arr.shape), "chunks": list(arr.chunks),
                    "scale": tf.get("scale"), "translation": tf.get("translation")})
    return out
