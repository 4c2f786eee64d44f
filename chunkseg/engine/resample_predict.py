"""Chunked prediction at the model's voxel size: each block is resampled, predicted, resampled back.

A model that declares the voxel size it was trained at (metadata ``voxel_size``) sees
every input at that voxel size, as PlantSeg does, but block by block:

1. the input is split into output blocks with a halo of input voxels (the same
   mirrored-border ``map_overlap`` layout as :func:`chunkseg.engine.predict.predict_array`);
2. each block works out, from the convention of :mod:`chunkseg.ops.resample`, the model
   voxels ``[MA, MB)`` its own output voxels interpolate from, widens them by the
   network context ``c`` (model voxels), resamples exactly that model region from its
   haloed input block, mirrors it where it passes the model volume's border, predicts it
   tile by tile (tile origins on the pooling grid in *model* volume coordinates) and
   resamples the probability of ``[MA, MB)`` back onto the block's own input voxels.

The halo is computed in the model space: ``c`` model voxels of context plus one model
voxel of interpolation on each side span ``(c + 1) f`` input voxels (``f`` = model /
input voxel size), plus one input voxel of interpolation: ``ceil((c + 1) f) + 1`` per
axis (:func:`resampled_halo`).  Every output voxel then depends only on global indices, so
the result equals the whole-volume pipeline (resample the volume, mirror it by ``c``,
predict it, resample back; :func:`predict_resampled_in_memory`) up to floating point,
whatever the block size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import dask.array as da
import numpy as np

from chunkseg.engine.geometry import Block
from chunkseg.engine.predict import _mirror_index, block_grid
from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.resample import resample, resampled_shape, source_region
from chunkseg.ops.tiling import as_triple, predict_tiled

__all__ = ["predict_array_resampled", "predict_resampled_in_memory", "resampled_halo"]


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
    """Split an index map into runs of step +1 or -1: ``(first, last, step)``."""
    runs, start, n = [], 0, len(index)
    while start < n:
        end, step = start + 1, 1
        if end < n and abs(int(index[end]) - int(index[start])) == 1:
            step = int(index[end]) - int(index[start])
            while end < n and int(index[end]) - int(index[end - 1]) == step:
                end += 1
        runs.append((int(index[start]), int(index[end - 1]), step))
        start = end
    return runs


def pad_border(x: da.Array, width: Sequence[int]) -> da.Array:
    """Mirror the border of ``x`` lazily by ``width`` voxels per axis (any width).

    Equals ``numpy.pad(x, width, mode="symmetric")``; built from slices and
    concatenations, so nothing is read until computed.
    """
    for axis, w in enumerate(width):
        if not w:
            continue
        if x.shape[axis] == 1:  # mirroring one voxel repeats it
            x = da.repeat(x, 1 + 2 * w, axis=axis)
            continue
        pieces = []
        for first, last, step in _runs(_mirror_index(x.shape[axis], w, w)):
            stop = last + step if last + step >= 0 else None
            sl = [slice(None)] * x.ndim
            sl[axis] = slice(first, stop, step)
            pieces.append(x[tuple(sl)])
        x = da.concatenate(pieces, axis=axis)
    return x


def resampled_halo(context: Sequence[int], factor: Sequence[float]) -> tuple[int, int, int]:
    """Input voxels of halo for ``context`` model voxels at zoom ``factor`` (model / input
    voxel size): ``ceil((c + 1) f) + 1`` per axis."""
    return tuple(int(math.ceil((int(c) + 1) * float(f))) + 1
                 for c, f in zip(context, factor))  # type: ignore[return-value]


def _model_window(owned, factor, shape, context):
    """Model voxels the owned input region interpolates from, and that range widened by
    the context (unclipped), per axis."""
    model_shape = resampled_shape(shape, factor)
    back = tuple(1.0 / f for f in factor)
    needed = source_region(owned, back, model_shape)
    wide = tuple((a - c, b + c) for (a, b), c in zip(needed, context))
    return model_shape, needed, wide


def _predict_model_region(x_model, wide, clipped, predictor, context, **tiling):
    """Mirror a model-grid region to its widened window, predict it, crop the context."""
    pad = [(lo - wlo, whi - hi) for (wlo, whi), (lo, hi) in zip(wide, clipped)]
    padded = np.pad(x_model, pad, mode="symmetric") if any(any(p) for p in pad) else x_model
    out, _ = predict_tiled(padded, predictor, context=context,
                           origin=[w for w, _ in wide], **tiling)
    return out[tuple(slice(c, out.shape[i] - c) for i, c in enumerate(context))]


def predict_block_resampled(
    block: np.ndarray,
    *,
    predictor: Callable[[np.ndarray], np.ndarray],
    factor: Sequence[float],
    shape: Sequence[int],
    block_shape: Sequence[int],
    halo: Sequence[int],
    context: Sequence[int],
    scale: float,
    block_info: dict | None = None,
    **tiling,
) -> np.ndarray:
    """Predict one haloed input block at the model's voxel size (the ``map_overlap``
    function); ``tiling``: ``tile``, ``pool``, ``blend``, ``crop_context``, ``batch``."""
    loc = block_info[0]["chunk-location"] if block_info else (0, 0, 0)
    geometry = Block.at(loc, shape=shape, block=block_shape, halo=halo)
    origin = geometry.origin
    owned = [(s.start, s.stop) for s in geometry.owned]
    model_shape, needed, wide = _model_window(owned, factor, shape, context)
    clipped = [(max(lo, 0), min(hi, n)) for (lo, hi), n in zip(wide, model_shape)]
    src = source_region(clipped, factor, shape)
    if any(lo < o or hi > o + s for (lo, hi), o, s in zip(src, origin, block.shape)):
        raise ShapeError(f"block at {origin} of shape {block.shape} lacks input voxels {src} "
                         f"for model voxels {clipped}: halo {tuple(halo)} too small")
    local = block[tuple(slice(lo - o, hi - o) for (lo, hi), o in zip(src, origin))]
    x = resample(np.asarray(local, np.float32) * np.float32(scale), factor,
                 offset=[lo for lo, _ in src], source_shape=shape, region=clipped)
    prob = _predict_model_region(x, wide, clipped, predictor, context, **tiling)
    back = resample(prob, [1.0 / f for f in factor], offset=[a for a, _ in needed],
                    source_shape=model_shape, region=owned)
    out = np.zeros(block.shape, np.float32)
    out[tuple(slice(a - o, b - o) for (a, b), o in zip(owned, origin))] = back
    return out


def predict_array_resampled(
    x: da.Array,
    predictor: Callable[[np.ndarray], np.ndarray],
    *,
    factor: Sequence[float],
    block: int | Sequence[int],
    context: int | Sequence[int],
    tile: int | Sequence[int],
    pool: int | Sequence[int] = 1,
    receptive: int | Sequence[int] | None = None,
    blend: str = "gaussian",
    batch: int | None = None,
    scale: float = 1.0,
) -> da.Array:
    """Lazily predict a (z, y, x) volume block by block at the model's voxel size.

    Parameters
    ----------
    x : dask.array.Array
        (z, y, x) network input before ``scale``.
    predictor : callable
        ``(b, z, y, x, 1) float32 -> same shape`` (a :class:`~chunkseg.engine.predict.ModelSpec`).
    factor : 3 floats
        Model voxel size / input voxel size per axis (:func:`chunkseg.ops.resample.zoom_factors`).
    block : int or 3 ints
        Output block (input voxels), clipped to the volume.
    context : int or 3 ints
        Network context in model voxels (the ``halo`` of ``predict``; seam-free when
        at least the receptive-field radius).
    tile, pool, blend, batch, scale
        As in :func:`chunkseg.engine.predict.predict_array` (``tile`` in model voxels).
    receptive : int or 3 ints, optional
        Receptive-field radius (model voxels); tiles crop their context when ``context``
        reaches it, else blend.

    Returns
    -------
    dask.array.Array
        float32 probability on the input grid, chunks = the block grid.
    """
    if x.ndim != 3:
        raise ShapeError(f"expected a 3D (z, y, x) array; got shape {x.shape}")
    factor = tuple(float(f) for f in factor)
    if len(factor) != 3 or not all(f > 0 for f in factor):
        raise ParameterError(f"factor must be 3 positive numbers; got {factor!r}")
    shape = tuple(int(s) for s in x.shape)
    context = as_triple(context, "context", minimum=0)
    block = tuple(min(b, s) for b, s in zip(as_triple(block, "block"), shape))
    halo = resampled_halo(context, factor)
    halo = tuple(min(h, b) if b == s else h for h, b, s in zip(halo, block, shape))
    if any(h > b for h, b in zip(halo, block)):
        raise ParameterError(f"the resampling halo {halo} (input voxels, from context "
                             f"{context} model voxels at zoom {factor}) exceeds the block "
                             f"{block}: use a bigger --block")
    crop_context = receptive is None or all(
        c >= r for c, r in zip(context, as_triple(receptive, "receptive", minimum=0)))
    padded = pad_border(x, halo).rechunk(
        tuple(block_grid(n, b, h) for n, b, h in zip(shape, block, halo)))
    out = da.map_overlap(
        predict_block_resampled, padded, depth=dict(enumerate(halo)), boundary="none",
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32), predictor=predictor,
        factor=factor, shape=shape, block_shape=block, halo=halo, context=context,
        scale=scale, tile=as_triple(tile, "tile"), pool=as_triple(pool, "pool"), blend=blend,
        crop_context=crop_context, batch=batch,
    )
    return out[tuple(slice(h, h + n) for h, n in zip(halo, shape))]


def predict_resampled_in_memory(
    volume: np.ndarray,
    predictor: Callable[[np.ndarray], np.ndarray],
    *,
    factor: Sequence[float],
    context: int | Sequence[int],
    tile: int | Sequence[int],
    pool: int | Sequence[int] = 1,
    blend: str = "gaussian",
    scale: float = 1.0,
) -> np.ndarray:
    """The whole-volume reference of :func:`predict_array_resampled`: resample the volume,
    mirror it by ``context``, predict it tile by tile, resample the probability back."""
    context = as_triple(context, "context", minimum=0)
    model = resample(np.asarray(volume, np.float32) * np.float32(scale), factor)
    wide = [(-c, n + c) for c, n in zip(context, model.shape)]
    prob = _predict_model_region(model, wide, [(0, n) for n in model.shape], predictor,
                                 context, tile=as_triple(tile, "tile"),
                                 pool=as_triple(pool, "pool"), blend=blend, crop_context=True)
    return resample(prob, [1.0 / f for f in factor], source_shape=model.shape,
                    region=[(0, n) for n in volume.shape])
