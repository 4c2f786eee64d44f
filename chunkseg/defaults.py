"""Default shapes, defined once: storage chunks and shards, and the blocks of each engine.

All ``(z, y, x)`` except the ``(t, z, y, x)`` storage shapes.
"""

from __future__ import annotations

__all__ = ["CHUNKS", "PREDICT_BLOCK", "PYRAMID_PLANE", "READ_BLOCK", "SEGMENT_BLOCK", "SHARDS"]

#: zarr chunks of a stored volume: 4 MiB of uint16, small enough for random crop reads
CHUNKS: tuple[int, int, int, int] = (1, 32, 256, 256)
#: zarr shards (the write unit, one dask task per shard): 8 chunks
SHARDS: tuple[int, int, int, int] = (1, 64, 512, 512)
#: multiscale pyramid levels halve y and x until a plane fits PYRAMID_PLANE x PYRAMID_PLANE
PYRAMID_PLANE: int = 512
#: one TIFF read task: a default shard, so ``convert`` writes need no rechunk
READ_BLOCK: tuple[int, int, int] = SHARDS[1:]
#: output block (= shard = dask task) of ``predict`` / ``acme``, clipped to the volume
PREDICT_BLOCK: tuple[int, int, int] = (128, 256, 256)
#: processing block of ``segment`` (its labels do not depend on it)
SEGMENT_BLOCK: tuple[int, int, int] = (64, 256, 256)
