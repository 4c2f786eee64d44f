"""Chunked prediction of a (z, y, x) dask array: one task per haloed block, tiles inside.

How a time point is predicted (:func:`predict_array`): one task per output block
(per block of ``group`` time points when blocks are tiny).  Block ``k`` (extent
``B_k``, origin ``k * B``) reads its region grown by ``halo`` voxels per side
straight from the input (:func:`mirror_region`: outside the volume the border is
mirrored, ``numpy.pad(mode="symmetric")`` of any width, so the border is
treated the same way whatever the block size), predicts it tile by tile
(:func:`predict_block`: :func:`chunkseg.ops.tiling.predict_tiled`, tile origins on the
pooling grid in volume coordinates) and keeps the ``B_k`` voxels it owns.  No
``map_overlap``, no padded copy of the volume, no rechunk: a block costs one task
(plus its write), which keeps the graph of a long series of small time points cheap.
The result has chunks ``(B, ..., B, rest)``, the output's shard grid.

With ``halo`` and the tile context at least the model's receptive-field radius the
result equals one pass over the whole (mirrored) volume up to floating point.

The model is never pickled into tasks: tasks carry a :class:`ModelSpec` (the model's
path and a thread count) and each worker process loads the model once into
:data:`_MODELS` (:func:`get_model`), sizing the Keras backend's thread pools first
(:func:`chunkseg.engine.backend.configure_backend`: TensorFlow, JAX or PyTorch,
whichever ``KERAS_BACKEND`` names; nothing here imports TensorFlow itself).  One lock
per model serialises network calls inside a worker, so a second worker thread reads
and prepares the next block (prefetch) while the current one runs on the cores (or
the GPU).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.engine.backend import configure_backend, run_model
from chunkseg.engine.geometry import Block
from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.normalize import scale_to_uint8
from chunkseg.ops.tiling import BlendMode, as_triple, axis_tiles, predict_tiled

__all__ = [
    "ModelSpec",
    "block_grid",
    "check_halo",
    "clip_halo",
    "get_model",
    "mirror_region",
    "predict_array",
    "predict_block",
    "scale_array",
    "tile_stats",
]

#: model path -> (model, metadata, lock); one entry per worker process
_MODELS: dict[str, tuple[Any, dict, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """What a task needs to find the model in its worker: a path, not the model.

    Attributes
    ----------
    path : str
        The ``.keras`` file (a chunkseg model).
    threads : int, optional
        Backend intra-op threads for this worker process (default: the dask
        worker's thread count inside a distributed worker, else TensorFlow's default).
    precision : {"float32", "bfloat16"}
        Compute precision (:mod:`chunkseg.model.precision`).
    """

    path: str
    threads: int | None = None
    precision: str = "float32"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        model, _meta, lock = self._model()
        with lock:
            return run_model(model, x)

    def load(self) -> None:
        """Load the model into this process now (otherwise the first call does)."""
        self._model()

    def _model(self):
        return get_model(self.path, threads=self.threads or _worker_threads(),
                         precision=self.precision)


def _worker_threads() -> int | None:
    """Backend threads inside a dask worker (None outside one).

    The worker's ``TF_NUM_INTRAOP_THREADS`` when its cluster set it
    (:func:`chunkseg.engine.cluster.backend_env`), else the worker's thread count.
    """
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        nthreads = int(get_worker().state.nthreads)
    except (ValueError, AttributeError):
        return None
    env = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else nthreads


def get_model(path: str | os.PathLike, *, threads: int | None = None,
              precision: str = "float32"):
    """The model at ``path`` in ``precision``, loaded once per process:
    ``(model, metadata, lock)``.

    In float32 the model predicts with its BatchNorms folded into the convolutions
    (:func:`chunkseg.model.folding.fold_batchnorm`: the same probability within float32
    rounding, faster); ``metadata`` is the file's.
    """
    path = str(Path(path).resolve())
    key = path if precision == "float32" else f"{path}#{precision}"
    with _MODELS_LOCK:
        entry = _MODELS.get(key)
        if entry is None:
            configure_backend(threads)
            from chunkseg.model import load_model
            from chunkseg.model.folding import fold_batchnorm
            from chunkseg.model.precision import with_precision

            model, meta = load_model(path)
            # bfloat16 keeps the BatchNorms in float32 (folded into bfloat16 kernels they
            # would round the scales too)
            model = (fold_batchnorm(model, meta)[0] if precision == "float32"
                     else with_precision(model, meta, precision))
            entry = _MODELS[key] = (model, dict(meta or {}), threading.Lock())
        return entry


def block_grid(length: int, block: int, halo: int) -> tuple[int, ...]:
    """Chunks of one mirrored axis: ``(halo + B, B, ..., B, rest + halo)``."""
    sizes = [min(block, length - s) for s in range(0, length, block)]
    if len(sizes) == 1:
        return (sizes[0] + 2 * halo,)
    return (sizes[0] + halo, *sizes[1:-1], sizes[-1] + halo)


def _mirror_index(n: int, before: int, after: int) -> np.ndarray:
    return np.pad(np.arange(n), (before, after), mode="symmetric")


def mirror_region(
    read: Callable[[tuple[slice, ...]], np.ndarray],
    shape: Sequence[int],
    start: Sequence[int],
    stop: Sequence[int],
) -> np.ndarray:
    """Voxels ``start:stop`` (per axis) of a volume mirrored at its border.

    Equals ``numpy.pad(volume, w, mode="symmetric")[start + w : stop + w]`` for any
    ``w`` covering the request (coordinates may be negative or beyond the shape); only
    the bounding box of the needed voxels is read, with ``read(slices)``.  ``shape``,
    ``start`` and ``stop`` describe the last axes of what ``read`` returns; leading
    axes (e.g. time points) are kept whole.
    """
    index = []
    for n, a, b in zip(shape, start, stop):
        before, after = max(0, -a), max(0, b - n)
        index.append(_mirror_index(n, before, after)[a + before : b + before])
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)
    region = np.asarray(read(box))
    for axis, (i, sl) in enumerate(zip(index, box), start=-len(box)):
        local = i - sl.start
        if not np.array_equal(local, np.arange(local.size)):
            region = np.take(region, local, axis=axis)
    return region


def scale_array(x: da.Array, intensity_range: tuple[float, float] | None) -> da.Array:
    """``x`` scaled to uint8 chunk by chunk by :func:`chunkseg.ops.normalize.scale_to_uint8`
    with ``intensity_range`` (``x`` itself when None)."""
    if intensity_range is None:
        return x
    return x.map_blocks(scale_to_uint8, *intensity_range, dtype=np.uint8,
                        meta=np.empty((0,) * x.ndim, np.uint8))


class _ArrayReader:
    """Picklable ``read(slices)`` of a dask array (one small synchronous compute), scaled to
    uint8 by :func:`chunkseg.ops.normalize.scale_to_uint8` when given an intensity range.

    Scaling the region read, not the array, keeps the read to the stored chunks the region
    touches: dask fuses a slice of a Zarr array into its read, but not through a
    ``map_blocks`` in between, which would read and scale every whole dask chunk (shard)
    the region touches.
    """

    def __init__(self, x: da.Array, intensity_range: tuple[float, float] | None = None) -> None:
        self.x = x
        self.intensity_range = intensity_range

    def __call__(self, region: tuple[slice, ...]) -> np.ndarray:
        out = np.asarray(self.x[region].compute(scheduler="sync"))
        return out if self.intensity_range is None else scale_to_uint8(out, *self.intensity_range)

    def __dask_tokenize__(self) -> str:
        return f"{self.x.name}-{self.intensity_range}"


def predict_block(
    block: np.ndarray,
    *,
    predictor: Callable[[np.ndarray], np.ndarray],
    tile: Sequence[int],
    context: Sequence[int],
    pool: Sequence[int],
    blend: str,
    crop_context: bool,
    batch: int | None,
    scale: float,
    origin: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Predict one haloed block whose first voxel lies at volume coordinate ``origin``.

    ``block`` is (z, y, x), or (n, z, y, x): the same block of ``n`` time points,
    predicted one after the other (a network call never mixes time points, so each is
    predicted exactly as alone).  Returns the prediction of the whole haloed block
    (same shape).
    """
    kw = dict(tile=tile, context=context, pool=pool, origin=origin, blend=blend,
              crop_context=crop_context, batch=batch, scale=scale)
    if block.ndim == 4:
        return np.stack([predict_tiled(xi, predictor, **kw)[0] for xi in block])
    return predict_tiled(block, predictor, **kw)[0]


def _plan(shape, block, halo, tile, pool, receptive):
    """Validate and resolve block / halo / tile / context (all per axis)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ShapeError(f"expected a 3D (z, y, x) array; got shape {shape}")
    pool = as_triple(pool, "pool")
    halo = as_triple(halo, "halo", minimum=0)
    block = tuple(min(b, s) for b, s in zip(as_triple(block, "block"), shape))
    check_halo(halo, block, shape)
    halo = clip_halo(halo, block, shape)
    tile = as_triple(tile, "tile")
    if any(t % p for t, p in zip(tile, pool)):
        raise ParameterError(
            f"tile {tile} must be a multiple of the model's pooling factor {pool} per axis"
        )
    if receptive is None:
        context, crop = halo, True
    else:
        receptive = as_triple(receptive, "receptive", minimum=0)
        crop = all(h >= r for h, r in zip(halo, receptive))
        context = tuple(min(h, r) for h, r in zip(halo, receptive))
    return shape, block, halo, tile, pool, context, crop


def clip_halo(halo: Sequence[int], block: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    """The halo blocks use: at most the volume's length on an axis one block covers.

    There the whole halo is mirrored border (:func:`mirror_region`); one volume length
    of it already shows the network the whole axis once more, and a wider one would
    only add further mirrored copies to predict.  Other axes keep their halo
    (:func:`check_halo` bounds it by the block).
    """
    return tuple(min(int(h), int(s)) if int(b) >= int(s) else int(h)
                 for h, b, s in zip(halo, block, shape))


def check_halo(halo: Sequence[int], block: Sequence[int], shape: Sequence[int]) -> None:
    """Refuse a halo larger than the block on an axis split into several blocks.

    A wider halo adds no context a block could use, only mirrored copies of the volume
    to predict: the work grows with the halo, not with the data.  An axis one block
    covers takes any halo (:func:`clip_halo` clips it to the volume).

    Raises
    ------
    ParameterError
        ``halo > block`` on some axis where ``block < shape``.
    """
    clipped = tuple(min(int(b), int(s)) for b, s in zip(block, shape))
    if any(int(h) > b and b < int(s) for h, b, s in zip(halo, clipped, shape)):
        raise ParameterError(
            f"halo {tuple(int(h) for h in halo)} is larger than the block {clipped} on an axis "
            f"split into several blocks (volume {tuple(int(s) for s in shape)}): expected halo "
            "<= block there (use a smaller --halo, or a bigger --block where the volume allows)")


def tile_stats(shape, *, block, halo, tile, pool=1, receptive=None) -> dict[str, int]:
    """Tiles and network-input voxels :func:`predict_array` spends on one (z, y, x) volume.

    ``tile_voxels / prod(shape)`` is the redundancy the halo and the tile context cost;
    ``block_tiles`` is the most tiles of one block, the most a network call can take (a
    call never mixes blocks or time points).
    """
    shape, block, halo, tile, pool, context, _ = _plan(shape, block, halo, tile, pool, receptive)
    tiles = voxels = most = 1
    for n, b, h, t, c, p, name in zip(shape, block, halo, tile, context, pool, "zyx"):
        g = block_grid(n, b, h)  # the grid is a product of its axes: so are the sums
        per_block = [axis_tiles(g[i] + h * (i > 0) + h * (i < len(g) - 1), tile=t, context=c,
                                pool=p, origin=i * b - h, name=name) for i in range(len(g))]
        tiles *= sum(k for k, _ in per_block)
        voxels *= sum(k * e for k, e in per_block)
        most *= max(k for k, _ in per_block)
    return {"tiles": tiles, "tile_voxels": voxels, "block_tiles": most}


def predict_array(
    x: da.Array,
    predictor: Callable[[np.ndarray], np.ndarray],
    *,
    block: int | Sequence[int],
    halo: int | Sequence[int],
    tile: int | Sequence[int],
    pool: int | Sequence[int] = 1,
    receptive: int | Sequence[int] | None = None,
    blend: BlendMode = "gaussian",
    batch: int | None = None,
    scale: float = 1.0,
    group: int = 1,
    intensity_range: tuple[float, float] | None = None,
) -> da.Array:
    """Lazily predict a (z, y, x) volume, or each time point of a (t, z, y, x) series,
    block by block with a halo.

    Parameters
    ----------
    x : dask.array.Array
        (z, y, x) or (t, z, y, x) network input before ``scale`` (e.g. uint8 normalised
        raw).
    predictor : callable
        ``(b, z, y, x, 1) float32 -> same shape``; a :class:`ModelSpec` (model loaded
        once per worker) or any picklable function.
    block : int or 3 ints
        Output block shape (the write grid); clipped to the volume.
    halo : int or 3 ints
        Context read around each block; <= block on axes split into several blocks,
        clipped to the volume on the others (:func:`clip_halo`).
    tile : int or 3 ints
        Network input shape; a multiple of ``pool``.
    pool : int or 3 ints
        The model's total pooling factor.
    receptive : int or 3 ints, optional
        Receptive-field radius; tiles crop ``min(halo, receptive)`` voxels of context
        when ``halo >= receptive`` (exact), else they overlap by ``2 * halo`` and blend.
        None: treat ``halo`` as sufficient.
    blend : {"gaussian", "linear", "none"}
        Weights for overlapping tile outputs.
    batch : int, optional
        Tiles per network call (default: :func:`chunkseg.ops.tiling.choose_batch`).
    scale : float
        Factor applied to the input (1/255 for uint8), after ``intensity_range``.
    group : int
        Time points per task of a series: one task reads the same block of ``group``
        consecutive time points at once and predicts them one after the other (for
        tiny blocks, where a task, its graph and its read cost more than the voxels).
        Each time point is predicted exactly as alone.
    intensity_range : (low, high), optional
        Scale each region read to uint8 with
        :func:`chunkseg.ops.normalize.scale_to_uint8` (the same as scaling ``x`` first,
        but only the stored chunks a block touches are read and scaled).

    Returns
    -------
    dask.array.Array
        float32, shape of ``x``, chunks = the block grid (and ``group`` time points).
    """
    if x.ndim not in (3, 4):
        raise ShapeError(f"expected a 3D (z, y, x) or 4D (t, z, y, x) array; got shape {x.shape}")
    series = x if x.ndim == 4 else x[None]
    shape, block, halo, tile, pool, context, crop = _plan(
        series.shape[1:], block, halo, tile, pool, receptive)
    if int(group) < 1:
        raise ParameterError(f"group must be >= 1 time point; got {group!r}")
    n_t = series.shape[0]
    chunks = tuple(tuple(min(b, n - s) for s in range(0, n, b)) for n, b in zip(shape, block))
    out = da.map_blocks(
        _predict_owned, chunks=(tuple(min(int(group), n_t - s) for s in range(0, n_t, int(group))),
                                *chunks),
        dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32),
        read=_ArrayReader(series, intensity_range),
        shape=shape, block=block, halo=halo, predictor=predictor, tile=tile, context=context,
        pool=pool, blend=blend, crop_context=crop, batch=batch, scale=scale,
    )
    return out if x.ndim == 4 else out[0]


def _predict_owned(*, read, shape, block, halo, block_info=None, **kw) -> np.ndarray:
    """One output block of some time points: read them with the halo (mirrored at the
    border), predict them together, crop."""
    info = block_info[None]
    blk = Block.at(info["chunk-location"][1:], shape=shape, block=block, halo=halo)
    times = slice(*info["array-location"][0])
    stop = [o.stop + h for o, h in zip(blk.owned, halo)]
    region = mirror_region(lambda box: read((times, *box)), shape, blk.origin, stop)
    out = predict_block(region, origin=blk.origin, **kw)
    return out[(slice(None), *blk.padded_crop)]
