"""Tiled prediction of one block: tile grid, blend weights, pad/crop, the batched loop.

Pure NumPy.  The network is passed in as a callable ``predict_batch(x) -> y`` taking
and returning ``(b, z, y, x, 1)`` float32 arrays, so this module knows nothing about
Keras and is tested with a SciPy convolution of known receptive field.

Why the grid is laid out as it is
---------------------------------
A U-Net's output at a voxel depends on the input within its receptive-field radius
``r`` *and* on the voxel's position modulo the total pooling factor ``P`` of the tile
(max-pooling windows start at the tile origin).  So:

* every tile origin sits on the pooling grid **in volume coordinates** — the caller
  says where the block's first voxel lies in the volume (``origin``) and the block is
  padded in front so that its first tile starts on a multiple of ``P``;
* a tile's outer ``context`` voxels are cropped on every side that has a neighbour
  tile (weight 0), so with ``context >= r`` each output voxel is computed from a tile
  that holds its whole receptive field — the result equals one pass over the whole
  volume (up to floating point) and seams are impossible;
* with a smaller ``context`` (``crop=False``) neighbouring tiles overlap by at least
  ``2 * context`` voxels and their outputs are blended (Gaussian / linear weights).

Examples
--------
>>> import numpy as np
>>> block = np.random.default_rng(0).random((20, 30, 30), dtype=np.float32)
>>> out, n = predict_tiled(block, lambda x: x, tile=16, context=2, pool=4)
>>> bool(np.allclose(out, block)), n
(True, 18)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from chunkseg.errors import ParameterError, ShapeError

__all__ = [
    "BLEND_MODES",
    "BlendMode",
    "TileGrid",
    "as_triple",
    "axis_tiles",
    "blend_weights",
    "choose_batch",
    "choose_tile",
    "count_tiles",
    "crop",
    "pad_to_grid",
    "predict_tiled",
    "tile_grid",
]

Triple = tuple[int, int, int]
BLEND_MODES = ("gaussian", "linear", "none")
BlendMode = Literal["gaussian", "linear", "none"]
#: smallest blend weight relative to the tile centre (avoids 0/0 at block borders)
MIN_WEIGHT = 1e-3


def as_triple(value: Any, name: str, *, minimum: int = 1) -> Triple:
    """Normalise an int or a 3-sequence of ints to ``(z, y, x)``; values >= ``minimum``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value, value)
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an int or 3 ints (z, y, x); got {value!r}") from None
    if len(out) != 3 or any(float(v) != o for v, o in zip(value, out)) or min(out) < minimum:
        raise ParameterError(f"{name} must be 3 ints >= {minimum} (z, y, x); got {value!r}")
    return out  # type: ignore[return-value]


def _ceil_to(n: int, p: int) -> int:
    return -(-n // p) * p


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of one block go.

    Attributes
    ----------
    shape : tuple of int
        The block's shape before padding.
    pad_before, pad_after : tuple of int
        Padding per axis; the padded block starts on the pooling grid and is covered
        exactly by the tiles.
    tile : tuple of int
        Tile shape actually used (the requested one, shrunk to the padded block).
    starts : tuple of tuple of int
        Tile origins per axis, in padded-block coordinates.
    """

    shape: Triple
    pad_before: Triple
    pad_after: Triple
    tile: Triple
    starts: tuple[tuple[int, ...], ...]

    @property
    def padded_shape(self) -> Triple:
        """Shape of the block after :func:`pad_to_grid`."""
        return tuple(s + a + b for s, a, b in zip(self.shape, self.pad_before, self.pad_after))

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return math.prod(len(s) for s in self.starts)

    def origins(self) -> list[Triple]:
        """All tile origins (z, y, x) in padded-block coordinates, C order."""
        return [tuple(o) for o in itertools.product(*self.starts)]


def _axis_grid(length: int, origin: int, tile: int, context: int, pool: int, name: str):
    pad_before = origin % pool  # padded block starts at a multiple of ``pool``
    n = length + pad_before
    tile = min(tile, _ceil_to(n, pool))
    if tile >= n:
        return pad_before, tile - n, tile, (0,)
    stride = (tile - 2 * context) // pool * pool
    if stride < pool:
        raise ParameterError(
            f"tile {tile} along {name} is too small for a context of {context} voxels on each "
            f"side with pooling factor {pool}: expected tile >= 2 * context + pool, i.e. "
            f">= {_ceil_to(2 * context + pool, pool)}"
        )
    count = -(-(n - tile) // stride) + 1
    padded = (count - 1) * stride + tile
    return pad_before, padded - n, tile, tuple(k * stride for k in range(count))


def tile_grid(
    shape: Sequence[int],
    *,
    tile: int | Sequence[int],
    context: int | Sequence[int],
    pool: int | Sequence[int] = 1,
    origin: Sequence[int] = (0, 0, 0),
) -> TileGrid:
    """Lay tiles over a block so that their origins sit on the volume's pooling grid.

    Parameters
    ----------
    shape : sequence of 3 int
        Block shape (z, y, x), halo included.
    tile : int or 3 ints
        Tile (network input) shape; multiple of ``pool``.  Shrunk to the padded block
        when larger.
    context : int or 3 ints
        Voxels on each tile side that neighbouring tiles must overlap (cropped, or
        blended over); consecutive tiles overlap by at least ``2 * context``.
    pool : int or 3 ints
        The network's total pooling factor.
    origin : sequence of 3 int
        Volume coordinate of the block's first voxel (may be negative: halo in front
        of the volume).

    Returns
    -------
    TileGrid

    Raises
    ------
    ParameterError
        The tile is not a multiple of ``pool`` or leaves no room between contexts.
    """
    shape = as_triple(shape, "shape")
    tile = as_triple(tile, "tile")
    context = as_triple(context, "context", minimum=0)
    pool = as_triple(pool, "pool")
    origin = tuple(int(o) for o in origin)
    bad = [t for t, p in zip(tile, pool) if t % p]
    if bad:
        raise ParameterError(
            f"tile {tile} must be a multiple of the model's pooling factor {pool} per axis"
        )
    axes = [
        _axis_grid(n, o, t, c, p, name)
        for n, o, t, c, p, name in zip(shape, origin, tile, context, pool, "zyx")
    ]
    return TileGrid(
        shape=shape,
        pad_before=tuple(a[0] for a in axes),
        pad_after=tuple(a[1] for a in axes),
        tile=tuple(a[2] for a in axes),
        starts=tuple(a[3] for a in axes),
    )


def axis_tiles(length: int, *, tile: int, context: int, pool: int = 1, origin: int = 0,
               name: str = "axis") -> tuple[int, int]:
    """``(tiles, tile extent)`` :func:`tile_grid` lays along one axis of a block.

    The grid is a product of its axes, so a block's tiles and network voxels are the
    products of these counts and extents.
    """
    _, _, extent, starts = _axis_grid(int(length), int(origin), int(tile), int(context),
                                      int(pool), name)
    return len(starts), extent


def count_tiles(shape: Sequence[int], **kwargs: Any) -> int:
    """Number of tiles :func:`tile_grid` lays over a block of ``shape`` (same keywords)."""
    return tile_grid(shape, **kwargs).n_tiles


def pad_to_grid(block: np.ndarray, grid: TileGrid, *, mode: str = "symmetric") -> np.ndarray:
    """Pad ``block`` as ``grid`` says (``numpy.pad`` mode; mirror by default)."""
    if tuple(block.shape) != grid.shape:
        raise ShapeError(f"block shape {block.shape} differs from the grid's {grid.shape}")
    widths = list(zip(grid.pad_before, grid.pad_after))
    if not any(a or b for a, b in widths):
        return block
    return np.pad(block, widths, mode=mode)


def crop(array: np.ndarray, before: Sequence[int], after: Sequence[int]) -> np.ndarray:
    """Remove ``before`` / ``after`` voxels per axis (the inverse of padding)."""
    return array[tuple(slice(b, n - a) for b, a, n in zip(before, after, array.shape))]


def _profile(n: int, mode: str) -> np.ndarray:
    i = np.arange(n, dtype=np.float64)
    centre = (n - 1) / 2.0
    if mode == "gaussian":
        sigma = max(n / 8.0, 0.5)
        w = np.exp(-0.5 * ((i - centre) / sigma) ** 2)
    elif mode == "linear":
        w = np.minimum(i + 1, n - i) / math.ceil(n / 2)
    elif mode == "none":
        w = np.ones(n)
    else:
        raise ParameterError(f"blend must be one of {BLEND_MODES}; got {mode!r}")
    return np.maximum(w, MIN_WEIGHT)


def blend_weights(
    tile: int | Sequence[int],
    *,
    mode: BlendMode = "gaussian",
    crop_before: Sequence[int] = (0, 0, 0),
    crop_after: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Weights of one tile's output when overlapping tiles are stitched.

    Parameters
    ----------
    tile : int or 3 ints
        Tile shape.
    mode : {"gaussian", "linear", "none"}
        Profile over the tile: Gaussian (sigma = tile / 8, as in nnU-Net / MONAI),
        linear tent, or uniform.  Never below ``MIN_WEIGHT`` times the centre.
    crop_before, crop_after : sequence of 3 int
        Voxels at the start / end of each axis that get weight 0 (a tile's context
        on the sides that have a neighbour).

    Returns
    -------
    numpy.ndarray
        float32, shape ``tile``; separable (outer product of per-axis profiles).
    """
    tile = as_triple(tile, "tile")
    w = np.ones((), dtype=np.float64)
    for p in _axis_weights(tile, mode, crop_before, crop_after):
        w = np.multiply.outer(w, p)
    return w.astype(np.float32)


def _axis_weights(tile: Triple, mode: str, crop_before: Sequence[int],
                  crop_after: Sequence[int]) -> list[np.ndarray]:
    """The per-axis profiles of :func:`blend_weights` (float64)."""
    out = []
    for axis, n in enumerate(tile):
        p = _profile(n, mode)
        p[: crop_before[axis]] = 0.0
        if crop_after[axis]:
            p[n - crop_after[axis]:] = 0.0
        out.append(p)
    return out


def choose_batch(
    tile: Sequence[int],
    *,
    n_tiles: int,
    bytes_per_voxel: float = 512.0,
    budget_bytes: float = 1 << 30,
    max_voxels: float = math.inf,
) -> int:
    """Tiles per network call: as many as fit ``budget_bytes`` of activations, <= n_tiles.

    ``bytes_per_voxel`` is the model's peak activation memory per input voxel (about
    4 bytes x the channels alive at full resolution); ``max_voxels`` caps the input
    voxels of one call (batch x tile), whatever the budget.
    """
    voxels = math.prod(tile)
    per_tile = voxels * float(bytes_per_voxel)
    fit = min(budget_bytes // max(per_tile, 1.0), max_voxels // max(voxels, 1))
    return int(max(1, min(n_tiles, fit)))


def _axis_options(n: int, context: int, pool: int) -> list[tuple[int, int]]:
    """Pareto options ``(tile, count)`` along one axis of padded length ``n``."""
    options: list[tuple[int, int]] = []
    for tile in range(_ceil_to(2 * context + pool, pool), _ceil_to(n, pool) + 1, pool):
        stride = (tile - 2 * context) // pool * pool
        count = 1 if tile >= n else -(-(n - tile) // stride) + 1
        if not options or count * tile < options[-1][0] * options[-1][1]:
            options.append((tile, count))
    return options


def choose_tile(
    block: Sequence[int],
    *,
    halo: int | Sequence[int],
    context: int | Sequence[int] | None = None,
    pool: int | Sequence[int] = 1,
    bytes_per_voxel: float = 512.0,
    budget_bytes: float = 1 << 30,
    max_voxels: float = math.inf,
) -> Triple:
    """The tile (multiple of ``pool``) that predicts a haloed block with the least work.

    For an interior block of extent ``block + 2 halo`` (plus up to ``pool - 1``
    voxels of grid alignment) every per-axis tile size is tried; the combination with
    the fewest network voxels in total (tiles x tile volume) whose activations
    (``prod(tile) * bytes_per_voxel``) fit ``budget_bytes`` and whose voxels do not
    exceed ``max_voxels`` wins.  With a large budget that is one tile per block.  Never
    below ``2 * context + pool`` per axis.

    Parameters
    ----------
    block : 3 ints
        Output block shape.
    halo : int or 3 ints
        Block halo.
    context : int or 3 ints, optional
        Tile context (default ``halo``); see :func:`tile_grid`.
    pool : int or 3 ints
        Pooling factor.
    bytes_per_voxel, budget_bytes : float
        Activation memory per tile voxel and the budget for one tile.
    max_voxels : float
        Largest tile (voxels) one network call may take.
    """
    block, pool = as_triple(block, "block"), as_triple(pool, "pool")
    halo = as_triple(halo, "halo", minimum=0)
    context = halo if context is None else as_triple(context, "context", minimum=0)
    axes = [_axis_options(b + 2 * h + p - 1, c, p)
            for b, h, c, p in zip(block, halo, context, pool)]
    limit = min(budget_bytes / float(bytes_per_voxel), max_voxels)
    best, best_cost = None, math.inf
    for opt in itertools.product(*axes):
        voxels = math.prod(t for t, _ in opt)
        cost = voxels * math.prod(c for _, c in opt)
        if voxels <= limit and cost < best_cost:
            best, best_cost = opt, cost
    if best is None:  # nothing fits: the smallest legal tile
        best = tuple(min(ax) for ax in axes)
    return tuple(t for t, _ in best)  # type: ignore[return-value]


def predict_tiled(
    block: np.ndarray,
    predict_batch: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int | Sequence[int],
    context: int | Sequence[int],
    pool: int | Sequence[int] = 1,
    origin: Sequence[int] = (0, 0, 0),
    blend: BlendMode = "gaussian",
    crop_context: bool = True,
    batch: int | None = None,
    pad_mode: str = "symmetric",
    scale: float = 1.0,
) -> tuple[np.ndarray, int]:
    """Predict a whole block tile by tile and stitch the tile outputs.

    Parameters
    ----------
    block : numpy.ndarray
        (z, y, x) network input before ``scale`` (e.g. uint8 normalised raw, or float32
        in [0, 1]), halo included.  It stays in its dtype; each tile is cast to float32
        and multiplied by ``scale`` when it is sent to the network.
    predict_batch : callable
        ``(b, tz, ty, tx, 1) float32 -> (b, tz, ty, tx, 1)``, e.g. a Keras model's
        ``predict_on_batch``.
    tile, context, pool, origin
        See :func:`tile_grid`.
    blend : {"gaussian", "linear", "none"}
        Weights over overlapping tile outputs.
    crop_context : bool
        Give the ``context`` voxels of inner tile sides weight 0 (exact when
        ``context`` >= the receptive-field radius); otherwise blend over them.
    batch : int, optional
        Tiles per ``predict_batch`` call (default: :func:`choose_batch`).
    pad_mode : str
        ``numpy.pad`` mode for the alignment padding around the block.
    scale : float
        Factor applied to the tiles (1/255 for uint8 input).

    Returns
    -------
    out : numpy.ndarray
        float32, same shape as ``block``.
    n_tiles : int
        Tiles predicted.

    Memory: besides the network call, the block, its padded copy (when the block is
    not on the pooling grid) and, when it takes several tiles, two float32 arrays of the
    padded block (weighted sum and weights; the result is divided in place) and one
    tile's weights at a time.
    """
    if block.ndim != 3:
        raise ShapeError(f"expected a 3D (z, y, x) block; got shape {block.shape}")
    context = as_triple(context, "context", minimum=0)
    grid = tile_grid(block.shape, tile=tile, context=context, pool=pool, origin=origin)
    padded = pad_to_grid(np.asarray(block), grid, mode=pad_mode)
    scale_ = np.float32(scale)

    def network_input(parts: list[np.ndarray]) -> np.ndarray:
        x = np.stack(parts)[..., None].astype(np.float32, copy=False)  # stack: a new array
        if scale != 1:
            x *= scale_
        return x

    last = tuple(s[-1] for s in grid.starts)

    def weight_for(o: Triple) -> np.ndarray:
        """:func:`blend_weights` of the tile at ``o`` (its context cropped on the sides
        that have a neighbour), built from float32 profiles: one tile-sized array."""
        inner = [(crop_context and oi > 0, crop_context and oi < li) for oi, li in zip(o, last)]
        pz, py, px = (p.astype(np.float32) for p in _axis_weights(
            grid.tile, blend, [c if k[0] else 0 for c, k in zip(context, inner)],
            [c if k[1] else 0 for c, k in zip(context, inner)]))
        return pz[:, None, None] * py[None, :, None] * px[None, None, :]

    origins = grid.origins()
    if len(origins) == 1:  # one tile covers the block: nothing to stitch
        y = np.asarray(predict_batch(network_input([padded])), dtype=np.float32)
        if y.shape != (1, *padded.shape, 1):
            raise ShapeError(f"predict_batch returned shape {y.shape}; expected the input's "
                             f"{(1, *padded.shape, 1)}")
        return crop(y[0, ..., 0], grid.pad_before, grid.pad_after), 1
    if batch is None:
        batch = choose_batch(grid.tile, n_tiles=len(origins))
    batch = max(1, int(batch))
    num = np.zeros(grid.padded_shape, dtype=np.float32)
    den = np.zeros(grid.padded_shape, dtype=np.float32)
    for i in range(0, len(origins), batch):
        chunk = origins[i:i + batch]
        slices = [tuple(slice(o, o + t) for o, t in zip(org, grid.tile)) for org in chunk]
        x = network_input([padded[s] for s in slices])
        y = np.asarray(predict_batch(x), dtype=np.float32)
        if y.shape != x.shape:
            raise ShapeError(
                f"predict_batch returned shape {y.shape}; expected the input's {x.shape}"
            )
        for s, org, yi in zip(slices, chunk, y[..., 0]):
            w = weight_for(org)
            num[s] += w * yi
            den[s] += w
    out = np.divide(num, np.maximum(den, np.float32(1e-20), out=den), out=num)
    return crop(out, grid.pad_before, grid.pad_after), len(origins)
