"""Random training crops from (raw, mask) volumes, and a ``tf.data`` pipeline over them.

:class:`CropSampler` draws crops across one or more (raw, membrane mask) pairs and their
time points.  It reads only the crop region (a zarr slice: the chunks intersecting the
crop, never a whole volume), converts the raw to network input (8-bit normalised / 255,
float32 in [0, 1]) and the mask to float32 0/1, and optionally favours crops that
contain membrane.  Crop ``i`` of a sampler with seed ``s`` depends only on ``(s, i)``
(each draw seeds its own :class:`numpy.random.Generator`), so parallel, out-of-order
reads stay deterministic.

:func:`make_dataset` wraps a sampler in a ``tf.data.Dataset`` of ``(x, y)`` batches
shaped ``(batch, z, y, x, 1)``, with parallel reads and prefetch.  TensorFlow is
imported only inside it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.errors import (
    DTypeError,
    InputError,
    InputNotFoundError,
    ParameterError,
    ShapeError,
)
from chunkseg.ops.augment import AugmentParams, apply_augment, draw_augment
from chunkseg.ops.augment_intensity import apply_intensity, draw_intensity
from chunkseg.ops.normalize import scale_to_uint8
from chunkseg.ops.tiling import as_triple

__all__ = ["DEFAULT_CROP", "Crop", "CropSampler", "make_dataset", "to_network_input"]

#: the paper's training crop, (z, y, x)
DEFAULT_CROP: tuple[int, int, int] = (64, 128, 128)

PathOrArray = str | os.PathLike | Any


def to_network_input(block: np.ndarray, *, normalization: tuple[float, float] | None) -> np.ndarray:
    """Convert a raw block to network input: float32 in [0, 1].

    ``normalization=None`` requires uint8 input (already 8-bit normalised): ``v / 255``.
    Otherwise ``scale_to_uint8(block, low, high) / 255``, the same scaling as
    ``chunkseg normalize`` and prediction.
    """
    if normalization is None:
        if block.dtype != np.uint8:
            raise DTypeError(
                f"raw block of dtype {block.dtype} needs a normalization range (low, high); "
                "only uint8 input is used as is"
            )
        return block.astype(np.float32) / np.float32(255)
    low, high = normalization
    return scale_to_uint8(block, low, high).astype(np.float32) / np.float32(255)


@dataclass
class _Source:
    """One opened volume: a zarr array (or lazy dask array for TIFF), read by slices."""

    name: str
    array: Any
    shape: tuple[int, int, int, int]
    attrs: dict[str, Any]
    voxel_size: tuple[float, float, float]
    is_zarr: bool

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def read(self, t: int, corner: Sequence[int], size: Sequence[int]) -> np.ndarray:
        sl = tuple(slice(c, c + s) for c, s in zip(corner, size))
        key = (t, *sl) if self.array.ndim == 4 else sl
        block = self.array[key]
        if not self.is_zarr:
            block = block.compute(scheduler="sync")
        return np.asarray(block)


def _open_source(obj: PathOrArray) -> _Source:
    """Open a path (chunkseg OME-Zarr, zarr array, TIFF) or wrap an opened zarr array."""
    from chunkseg.io.store import is_zarr, open_array, open_volume

    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not path.exists():
            raise InputNotFoundError(f"{path}: no such file or directory")
        vol = open_volume(path)  # checks completeness; lazy
        if is_zarr(path):
            return _Source(str(path), open_array(path), vol.shape, vol.attrs, vol.voxel_size, True)
        return _Source(str(path), vol.data, vol.shape, vol.attrs, vol.voxel_size, False)
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "chunks"):
        shape = tuple(int(s) for s in obj.shape)
        if len(shape) not in (3, 4):
            raise ShapeError(f"array {obj!r}: expected 3D (z, y, x) or 4D (t, z, y, x); got shape {shape}")
        name = f"<array {getattr(obj, 'path', '') or type(obj).__name__}>"
        return _Source(name, obj, shape if len(shape) == 4 else (1, *shape), {}, (1.0, 1.0, 1.0),
                       not hasattr(obj, "compute"))
    raise ParameterError(f"expected a path or a zarr array; got {type(obj).__name__}")


def _per_pair(normalization: Any, n: int) -> list[Any]:
    """``normalization`` as one range (or None) per pair."""
    if normalization is None or np.ndim(normalization[0]) == 0 and normalization[0] is not None:
        return [normalization] * n
    ranges = list(normalization)
    if len(ranges) != n:
        raise ParameterError(f"normalization: expected one range per pair ({n}); "
                             f"got {len(ranges)}")
    return ranges


def _pair_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` as ``n`` checked positive floats (all 1 when None)."""
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w) & (w > 0)):
        raise ParameterError(f"weights: expected one finite weight > 0 per pair ({n}); "
                             f"got {list(np.atleast_1d(weights))!r}")
    return w


def _raw_range(src: _Source, normalization: tuple[float, float] | None) -> tuple[float, float] | None:
    if normalization is not None:
        low, high = (float(v) for v in normalization)
    elif src.dtype == np.uint8:
        return None
    else:
        norm = src.attrs.get("normalization") or {}
        if "low" not in norm or "high" not in norm:
            raise ParameterError(
                f"{src.name}: raw of dtype {src.dtype} needs an intensity range; expected "
                "attribute chunkseg.normalization {low, high} (run `chunkseg normalize`) or "
                f"normalization=(low, high); found {norm or 'none'}"
            )
        low, high = float(norm["low"]), float(norm["high"])
    if not high > low:
        raise ParameterError(f"{src.name}: normalization range needs high > low; got ({low}, {high})")
    return low, high


def _check_mask(src: _Source, ignore_value: int | None = None) -> int | None:
    """A membrane mask is any integer volume of 0s and 1s (and ``ignore_value``), whatever
    wrote it; returns its number of membrane voxels (None when not read).

    ``binarize`` output (kind ``mask``) is 0/1 by construction and is not read; anything
    else (a mask converted from TIFF, a plain zarr array, sparse labels) has its values
    checked in one streaming pass (chunk by chunk; whole shards of a sharded store).
    """
    if not (np.issubdtype(src.dtype, np.integer) or src.dtype == np.bool_):
        raise DTypeError(f"{src.name}: expected an integer 0/1 membrane mask; found dtype {src.dtype}")
    kind = src.attrs.get("kind")
    if (kind == "mask" and ignore_value is None) or src.dtype == np.bool_:
        return None
    import dask.array as da

    data = src.array
    if not isinstance(data, da.Array):
        data = da.from_zarr(data, chunks=getattr(data, "shards", None) or data.chunks)
    allowed = [0, 1] + ([ignore_value] if ignore_value is not None else [])
    ok = da.isin(data, allowed)
    bad, ones, low, high = (int(v) for v in da.compute(
        (~ok).sum(), (data == 1).sum(), data.min(), data.max(), scheduler="threads"))
    what = "0/1 membrane mask" + (f" (ignore value {ignore_value})" if ignore_value is not None
                                  else "")
    if bad:
        hint = " (instance labels: run `chunkseg binarize` on them)" if high > 1 else ""
        raise InputError(f"{src.name}: expected a {what}; found values in [{low}, {high}]"
                         + (f" (kind {kind!r})" if kind else "")
                         + f", {bad} voxels outside {allowed}" + hint)
    return ones


@dataclass(frozen=True)
class Crop:
    """One sampled crop.

    Attributes
    ----------
    raw : ndarray, float32 (z, y, x)
        Network input in [0, 1] (augmented if asked).
    mask : ndarray, float32 (z, y, x)
        Membrane 0/1, with the same geometric transforms as ``raw``.
    index : int
        The draw index (with the seed it fixes everything below).
    pair, t : int
        Which (raw, mask) pair and time point.
    corner : tuple of int
        ``(z, y, x)`` of the crop's first voxel in the volume.
    membrane_fraction : float
        Mean of the mask crop.
    tries : int
        Positions tried (> 1 only for membrane-biased draws).
    augment : AugmentParams or None
        The augmentation applied.
    """

    raw: np.ndarray
    mask: np.ndarray
    index: int
    pair: int
    t: int
    corner: tuple[int, int, int]
    membrane_fraction: float
    tries: int
    augment: AugmentParams | None = None

    def info(self) -> dict[str, Any]:
        """JSON-friendly description (no voxels)."""
        return {"index": self.index, "pair": self.pair, "t": self.t, "corner": list(self.corner),
                "membrane_fraction": round(self.membrane_fraction, 6), "tries": self.tries,
                "augment": self.augment.as_dict() if self.augment else None}


class CropSampler:
    """Random crops from (raw, mask) pairs, reading only the crop region.

    Parameters
    ----------
    pairs : sequence of (raw, mask)
        Paths of chunkseg OME-Zarr stores (full resolution at ``<group>/0``, axes
        t z y x), plain zarr arrays or TIFF files, or opened zarr arrays.  Raw and mask
        of a pair must have the same shape.
    crop : (z, y, x)
        Crop shape; every volume must be at least this large.
    seed : int
        Crop ``i`` depends only on ``(seed, i)``.
    membrane_bias : float in [0, 1]
        Probability that a draw is membrane-biased: up to ``max_tries`` positions are
        tried (only their mask crops are read) and the first with a membrane fraction of
        at least ``min_membrane`` is kept, else the one with the most membrane.
    min_membrane : float
        Membrane fraction a biased draw looks for.
    max_tries : int
        Bound on positions tried per biased draw.
    normalization : (low, high) or list of them, optional
        Intensity range of the raws, or one per pair (None in the list: that raw's
        own); default: the raw's ``chunkseg.normalization`` attribute.  uint8 raw
        without a range (``chunkseg normalize`` output) is used as ``v / 255``.
    timepoints : sequence of int, optional
        Restrict draws to these time points (e.g. to hold some out for validation).
    ignore_value : int, optional
        Mask value of unlabelled voxels (not 0 or 1).  Mask crops then keep it (through
        the augmentations too: they only flip and rotate the mask), and
        :func:`make_dataset` turns it into a weight of 0.
    weights : sequence of float, optional
        One weight > 0 per pair: a pair is drawn in proportion to its weight times its
        number of crop positions (balance groups of volumes without repeating pairs).

    Pairs are drawn in proportion to their number of crop positions (times ``weights``),
    time points and positions uniformly, so without ``weights`` every possible crop is
    equally likely (unbiased draws).

    Attributes
    ----------
    crop, seed : the arguments.
    ranges : list of (low, high) or None
        Per pair, the intensity range used for the raw (None: uint8 used as ``v / 255``);
        record it in a trained model's metadata.
    voxel_size : (z, y, x)
        Of the first raw volume, in µm.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[PathOrArray, PathOrArray]],
        *,
        crop: Sequence[int] = DEFAULT_CROP,
        seed: int = 0,
        membrane_bias: float = 0.5,
        min_membrane: float = 0.02,
        max_tries: int = 10,
        normalization: tuple[float, float] | Sequence[tuple[float, float] | None] | None = None,
        timepoints: Sequence[int] | None = None,
        ignore_value: int | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        pairs = list(pairs)
        if not pairs or any(not isinstance(p, (tuple, list)) or len(p) != 2 for p in pairs):
            raise ParameterError(f"pairs must be a non-empty list of (raw, mask); got {pairs!r}")
        crop = as_triple(crop, "crop")
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ParameterError(f"seed must be a non-negative int; got {seed!r}")
        if not 0.0 <= membrane_bias <= 1.0:
            raise ParameterError(f"membrane_bias must be in [0, 1]; got {membrane_bias}")
        if not 0.0 <= min_membrane <= 1.0:
            raise ParameterError(f"min_membrane must be in [0, 1]; got {min_membrane}")
        if int(max_tries) < 1:
            raise ParameterError(f"max_tries must be >= 1; got {max_tries}")
        self.crop, self.seed = crop, int(seed)
        self.membrane_bias, self.min_membrane = float(membrane_bias), float(min_membrane)
        self.max_tries = int(max_tries)
        if ignore_value is not None and (not float(ignore_value).is_integer()
                                         or int(ignore_value) in (0, 1)):
            raise ParameterError(f"ignore_value must be an integer other than 0 and 1; "
                                 f"got {ignore_value!r}")
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.raws: list[_Source] = []
        self.masks: list[_Source] = []
        self.ranges: list[tuple[float, float] | None] = []
        ones: list[int | None] = []
        for (raw_obj, mask_obj), rng in zip(pairs, _per_pair(normalization, len(pairs))):
            raw, mask = _open_source(raw_obj), _open_source(mask_obj)
            if raw.shape != mask.shape:
                raise ShapeError(f"{raw.name} has shape {raw.shape} but its mask {mask.name} has "
                                 f"{mask.shape}; expected equal (t, z, y, x)")
            if any(s < c for s, c in zip(raw.shape[1:], crop)):
                raise ParameterError(f"{raw.name}: volume (z, y, x) {raw.shape[1:]} is smaller than "
                                     f"the crop {crop} in some axis; expected every axis >= crop")
            ones.append(_check_mask(mask, self.ignore_value))
            self.ranges.append(_raw_range(raw, rng))
            self.raws.append(raw)
            self.masks.append(mask)
        if not any(ones) and None not in ones:
            raise InputError(f"{[m.name for m in self.masks]}: expected membrane masks with at "
                             "least one membrane voxel (1); found none in any")
        n_t = min(s.shape[0] for s in self.raws)
        if timepoints is None:
            self.timepoints = None
        else:
            self.timepoints = tuple(int(t) for t in timepoints)
            bad = [t for t in self.timepoints if not 0 <= t < n_t]
            if not self.timepoints or bad:
                raise ParameterError(f"timepoints must be a non-empty list within [0, {n_t}); "
                                     f"got {list(timepoints)!r}")
        counts = np.array([
            (len(self.timepoints) if self.timepoints else s.shape[0])
            * float(np.prod([n - c + 1 for n, c in zip(s.shape[1:], crop)]))
            for s in self.raws
        ]) * _pair_weights(weights, len(pairs))
        self._weights = counts / counts.sum()

    def __repr__(self) -> str:
        return (f"CropSampler({len(self.raws)} pairs, crop={self.crop}, seed={self.seed}, "
                f"membrane_bias={self.membrane_bias})")

    def reseeded(self, seed: int) -> CropSampler:
        """The same sampler (volumes, weights, options; masks not checked again) drawing
        with crop seed ``seed``."""
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ParameterError(f"seed must be a non-negative int; got {seed!r}")
        other = copy.copy(self)
        other.seed = int(seed)
        return other

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size (µm, z y x) of the first raw volume."""
        return self.raws[0].voxel_size

    def _position(self, rng: np.random.Generator) -> tuple[int, int, tuple[int, int, int]]:
        pair = int(rng.choice(len(self.raws), p=self._weights)) if len(self.raws) > 1 else 0
        shape = self.raws[pair].shape
        t = int(rng.choice(self.timepoints)) if self.timepoints else int(rng.integers(shape[0]))
        corner = tuple(int(rng.integers(n - c + 1)) for n, c in zip(shape[1:], self.crop))
        return pair, t, corner

    def _mask_crop(self, pair: int, t: int, corner: tuple[int, int, int]) -> np.ndarray:
        m = self.masks[pair].read(t, corner, self.crop)
        if self.ignore_value is None:
            return (m > 0).astype(np.float32)
        ignored = m == self.ignore_value
        return np.where(ignored, np.float32(self.ignore_value), m > 0).astype(np.float32)

    def sample(self, index: int, *, augment: bool = False, **augment_options: Any) -> Crop:
        """Read (and with ``augment`` augment) crop number ``index``.

        Parameters
        ----------
        index : int
            Non-negative draw index.
        augment : bool
            Apply :func:`chunkseg.ops.augment.draw_augment` /
            :func:`~chunkseg.ops.augment.apply_augment` with ``augment_options``
            (``noise``, ``noise_p``, ``flip_axes``, ``rotate``, ``intensity_scale``,
            ``intensity_shift``).  The crop position does not depend on it.

        Returns
        -------
        Crop
        """
        index = int(index)
        if index < 0:
            raise ParameterError(f"index must be >= 0; got {index}")
        rng = np.random.default_rng([self.seed, index, 0])
        biased = self.membrane_bias > 0 and rng.random() < self.membrane_bias
        best = None
        for tries in range(1, (self.max_tries if biased else 1) + 1):
            pair, t, corner = self._position(rng)
            mask = self._mask_crop(pair, t, corner)
            frac = float((mask == 1).mean())
            if best is None or frac > best[3]:
                best = (pair, t, corner, frac, mask)
            if not biased or frac >= self.min_membrane:
                break
        pair, t, corner, frac, mask = best
        raw = to_network_input(self.raws[pair].read(t, corner, self.crop),
                               normalization=self.ranges[pair])
        params = None
        if augment:
            options = dict(augment_options)
            intensity = options.pop("intensity", False)
            if intensity:  # window / gamma / contrast / offset (chunkseg.ops.augment_intensity)
                raw = apply_intensity(raw, draw_intensity(
                    np.random.default_rng([self.seed, index, 2]), intensity))
            arng = np.random.default_rng([self.seed, index, 1])
            params = draw_augment(arng, shape=self.crop, **options)
            raw, mask = apply_augment(raw, mask, params, rng=arng)
        return Crop(raw, mask, index, pair, t, corner, frac, tries, params)


def make_dataset(
    source: CropSampler | Sequence[tuple[PathOrArray, PathOrArray]],
    *,
    batch: int = 2,
    crop: Sequence[int] | None = None,
    seed: int | None = None,
    augment: bool = True,
    noise: Any = None,
    n: int | None = None,
    start: int = 0,
    num_parallel: int | None = None,
    prefetch: int | None = None,
    augment_options: dict[str, Any] | None = None,
    **sampler_options: Any,
):
    """A ``tf.data.Dataset`` of ``(x, y)`` float32 batches ``(batch, z, y, x, 1)``.

    With a sampler's ``ignore_value`` the batches are ``(x, y, w)``: ``y`` is 0 and
    ``w`` (the Keras sample weight) is 0 where the mask holds the ignore value, else 1.

    Parameters
    ----------
    source : CropSampler or list of (raw, mask)
        A sampler, or pairs to build one from (with ``crop``, ``seed`` and
        ``sampler_options`` such as ``membrane_bias``).
    batch : int
        Crops per batch.
    crop, seed :
        For a new sampler (defaults :data:`DEFAULT_CROP`, 0); with a given sampler they
        must be None or equal to its own.
    augment : bool
        Random flips / y-x rotations / intensity (and ``noise``) per crop; use False for
        validation data.
    noise : str, (μ, σ) or None
        Noise preset or values (see :mod:`chunkseg.ops.augment`); only with ``augment``.
    n : int, optional
        Number of crops (indices ``start .. start + n - 1``; the last batch may be short);
        default: endless (use ``steps_per_epoch`` in ``model.fit``).
    start : int
        First draw index.
    num_parallel : int, optional
        Crops read in parallel (default ``tf.data.AUTOTUNE``).
    prefetch : int, optional
        Batches prefetched (default ``tf.data.AUTOTUNE``).
    augment_options : dict, optional
        More options of :func:`chunkseg.ops.augment.draw_augment`.

    Returns
    -------
    tf.data.Dataset
        Deterministic: the same arguments give the same batches in the same order.
    """
    import tensorflow as tf

    if isinstance(source, CropSampler):
        if sampler_options:
            raise ParameterError(f"sampler options {sorted(sampler_options)} need pairs, not a sampler")
        if crop is not None and as_triple(crop, "crop") != source.crop:
            raise ParameterError(f"crop {tuple(crop)} differs from the sampler's crop {source.crop}")
        if seed is not None and seed != source.seed:
            raise ParameterError(f"seed {seed} differs from the sampler's seed {source.seed}")
        sampler = source
    else:
        sampler = CropSampler(source, crop=DEFAULT_CROP if crop is None else crop,
                              seed=0 if seed is None else seed, **sampler_options)
    if int(batch) < 1:
        raise ParameterError(f"batch must be >= 1; got {batch}")
    if n is not None and int(n) < 1:
        raise ParameterError(f"n must be >= 1 or None (endless); got {n}")
    if int(start) < 0:
        raise ParameterError(f"start must be >= 0; got {start}")
    options = dict(augment_options or {})
    if noise is not None:
        options["noise"] = noise
    if augment:  # validate the options now, not inside a tf.data worker
        if options.get("intensity"):
            draw_intensity(np.random.default_rng(0), options["intensity"])
        draw_augment(np.random.default_rng(0), shape=sampler.crop,
                     **{k: v for k, v in options.items() if k != "intensity"})
    shape = (*sampler.crop, 1)

    ignore = sampler.ignore_value

    def load(i):
        c = sampler.sample(int(i), augment=augment, **options)
        if ignore is None:
            return c.raw[..., None], c.mask[..., None]
        known = c.mask != ignore
        return (c.raw[..., None], (c.mask == 1).astype(np.float32)[..., None],
                known.astype(np.float32)[..., None])

    def read(i):
        out = tf.numpy_function(load, [i], (tf.float32,) * (2 if ignore is None else 3),
                                stateful=False)
        for a in out:
            a.set_shape(shape)
        return tuple(out)

    auto = tf.data.AUTOTUNE
    indices = (tf.data.Dataset.counter(int(start)) if n is None
               else tf.data.Dataset.range(int(start), int(start) + int(n)))
    ds = indices.map(read, num_parallel_calls=num_parallel or auto, deterministic=True)
    ds = ds.batch(int(batch), drop_remainder=n is None)
    return ds.prefetch(prefetch or auto)
