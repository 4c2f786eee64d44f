"""Training-crop augmentations: flips, 90° rotations in y-x, Gaussian noise, intensity.

Pure NumPy.  Arrays are ``(z, y, x)`` (any leading/trailing axes are not touched by the
geometric transforms, which act on the last three axes).  Geometric transforms are
applied *identically* to the raw crop and its membrane mask; noise and intensity
changes only to the raw crop.  Everything random is drawn from a caller-supplied
:class:`numpy.random.Generator`, so a seed fixes the result.

Rotations are by multiples of 90° in the y-x plane only: light-sheet voxels are
anisotropic in z, so z is never mixed with y or x.  A quarter turn swaps the y and x
extents, so odd quarter turns are only drawn when ``y == x`` (shapes are preserved).

Noise presets
-------------
Intensities are the network's input units: the 8-bit normalised raw divided by 255,
i.e. [0, 1] (one 8-bit grey level is 1/255 ≈ 0.0039).  The presets add zero-mean
Gaussian noise of standard deviation

==========  =====  ==============================
preset      σ      ≈ 8-bit grey levels (σ × 255)
==========  =====  ==============================
``low``     0.02   5
``medium``  0.05   13
``high``    0.10   26
==========  =====  ==============================

The paper offered user μ, σ or "pre-determined" levels without publishing the
values; these three are our choice (about 2 %, 5 % and 10 % of the intensity range).
A user μ shifts the mean (a background offset).  Results are clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError, ShapeError

__all__ = [
    "NOISE_PRESETS",
    "AugmentParams",
    "add_gaussian_noise",
    "apply_augment",
    "draw_augment",
    "flip",
    "random_augment",
    "resolve_noise",
    "rot90_yx",
    "scale_shift",
]

#: preset name -> (μ, σ), in units of the [0, 1] normalised intensity
NOISE_PRESETS: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "low": (0.0, 0.02),
    "medium": (0.0, 0.05),
    "high": (0.0, 0.10),
}

NoiseSpec = str | tuple[float, float] | Mapping[str, float] | None


def _check_3d(a: np.ndarray, name: str) -> None:
    if a.ndim < 3:
        raise ShapeError(f"{name} must have at least 3 axes (z, y, x); got shape {a.shape}")


def flip(a: np.ndarray, *, axis: int | Sequence[int]) -> np.ndarray:
    """Mirror ``a`` along ``axis`` (0 = z, 1 = y, 2 = x of the last three axes).

    Parameters
    ----------
    a : ndarray, at least 3D
    axis : int or sequence of int
        Spatial axes in ``(z, y, x)`` numbering.

    Returns
    -------
    ndarray
        A view of ``a``.
    """
    _check_3d(a, "array")
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    for ax in axes:
        if ax not in (0, 1, 2):
            raise ParameterError(f"flip axis must be 0 (z), 1 (y) or 2 (x); got {ax!r}")
    return np.flip(a, axis=tuple(a.ndim - 3 + ax for ax in axes))


def rot90_yx(a: np.ndarray, *, k: int = 1) -> np.ndarray:
    """Rotate ``a`` by ``k`` quarter turns in the y-x plane (z untouched).

    Odd ``k`` swaps the y and x extents.
    """
    _check_3d(a, "array")
    return np.rot90(a, k=int(k), axes=(a.ndim - 2, a.ndim - 1))


def resolve_noise(noise: NoiseSpec) -> tuple[float, float] | None:
    """Turn a noise specification into ``(μ, σ)`` or None (no noise).

    Parameters
    ----------
    noise : str, (μ, σ), {"mu": μ, "sigma": σ} or None
        A preset name of :data:`NOISE_PRESETS`, or explicit values in [0, 1]
        intensity units.

    Raises
    ------
    ParameterError
        Unknown preset, negative σ, or a malformed value.
    """
    if noise is None:
        return None
    if isinstance(noise, str):
        if noise not in NOISE_PRESETS:
            raise ParameterError(
                f"noise preset must be one of {sorted(NOISE_PRESETS)}; got {noise!r}"
            )
        mu, sigma = NOISE_PRESETS[noise]
    elif isinstance(noise, Mapping):
        try:
            mu, sigma = float(noise.get("mu", 0.0)), float(noise["sigma"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"noise must have a numeric 'sigma' (and 'mu'); got {noise!r}") from exc
    else:
        try:
            mu, sigma = (float(v) for v in noise)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"noise must be a preset name or (mu, sigma); got {noise!r}") from exc
    if not (np.isfinite(mu) and np.isfinite(sigma)) or sigma < 0:
        raise ParameterError(f"noise needs finite mu and sigma >= 0; got mu={mu}, sigma={sigma}")
    if mu == 0 and sigma == 0:
        return None
    return mu, sigma


def add_gaussian_noise(
    x: np.ndarray,
    *,
    mu: float,
    sigma: float,
    rng: np.random.Generator,
    clip: bool = True,
) -> np.ndarray:
    """Return ``x + N(μ, σ²)`` as float32, clipped to [0, 1] unless ``clip=False``."""
    if sigma < 0:
        raise ParameterError(f"sigma must be >= 0; got {sigma}")
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    out = np.asarray(x, dtype=np.float32) + (np.float32(sigma) * noise + np.float32(mu))
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


def scale_shift(x: np.ndarray, *, scale: float = 1.0, shift: float = 0.0,
                clip: bool = True) -> np.ndarray:
    """Return ``x * scale + shift`` as float32, clipped to [0, 1] unless ``clip=False``."""
    out = np.asarray(x, dtype=np.float32) * np.float32(scale) + np.float32(shift)
    return np.clip(out, 0.0, 1.0, out=out) if clip else out


@dataclass(frozen=True)
class AugmentParams:
    """One drawn augmentation (so it can be logged, replayed or tested).

    Attributes
    ----------
    flips : tuple of int
        Spatial axes (0 z, 1 y, 2 x) to mirror.
    rot_k : int
        Quarter turns in y-x (0-3).
    scale, shift : float
        Intensity change ``x * scale + shift`` (raw only).
    noise : (μ, σ) or None
        Gaussian noise added to the raw after the intensity change.
    """

    flips: tuple[int, ...] = ()
    rot_k: int = 0
    scale: float = 1.0
    shift: float = 0.0
    noise: tuple[float, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"flips": list(self.flips), "rot_k": self.rot_k, "scale": self.scale,
                "shift": self.shift, "noise": list(self.noise) if self.noise else None}


def draw_augment(
    rng: np.random.Generator,
    *,
    shape: Sequence[int],
    flip_axes: Sequence[int] = (0, 1, 2),
    rotate: bool = True,
    intensity_scale: tuple[float, float] = (0.85, 1.15),
    intensity_shift: tuple[float, float] = (-0.1, 0.1),
    noise: NoiseSpec = None,
    noise_p: float = 1.0,
) -> AugmentParams:
    """Draw one random augmentation for a crop of spatial ``shape`` (z, y, x).

    Each axis in ``flip_axes`` is mirrored with probability 1/2; with ``rotate`` a
    quarter-turn count is drawn from 0-3 when y == x, else from {0, 2}; the intensity
    scale and shift are uniform in their ranges (``(1, 1)`` / ``(0, 0)`` disables
    them); noise (see :func:`resolve_noise`) is used with probability ``noise_p``.
    """
    shape = tuple(int(s) for s in shape)[-3:]
    if len(shape) != 3:
        raise ShapeError(f"shape must be (z, y, x); got {shape!r}")
    if not 0.0 <= noise_p <= 1.0:
        raise ParameterError(f"noise_p must be in [0, 1]; got {noise_p}")
    for name, (lo, hi) in (("intensity_scale", intensity_scale), ("intensity_shift", intensity_shift)):
        if not lo <= hi:
            raise ParameterError(f"{name} must be (low, high) with low <= high; got {(lo, hi)}")
    mu_sigma = resolve_noise(noise)
    draws = rng.random(len(flip_axes))
    flips = tuple(int(ax) for ax, u in zip(flip_axes, draws) if u < 0.5)
    rot_k = 0
    if rotate:
        rot_k = int(rng.integers(4)) if shape[1] == shape[2] else 2 * int(rng.integers(2))
    scale = float(rng.uniform(*intensity_scale))
    shift = float(rng.uniform(*intensity_shift))
    use_noise = mu_sigma is not None and rng.random() < noise_p
    return AugmentParams(flips, rot_k, scale, shift, mu_sigma if use_noise else None)


def apply_augment(
    raw: np.ndarray,
    mask: np.ndarray | None,
    params: AugmentParams,
    *,
    rng: np.random.Generator | None = None,
    clip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply ``params``: geometry to ``raw`` and ``mask``, intensity and noise to ``raw``.

    Returns
    -------
    raw : float32 ndarray (contiguous)
    mask : ndarray of ``mask``'s dtype (contiguous), or None
    """
    _check_3d(raw, "raw")
    if mask is not None and mask.shape != raw.shape:
        raise ShapeError(f"raw and mask must have the same shape; got {raw.shape} and {mask.shape}")
    if params.noise is not None and rng is None:
        raise ParameterError("noise needs a random generator (rng)")

    def geometry(a: np.ndarray) -> np.ndarray:
        if params.flips:
            a = flip(a, axis=params.flips)
        if params.rot_k % 4:
            a = rot90_yx(a, k=params.rot_k)
        return np.ascontiguousarray(a)

    out = geometry(raw).astype(np.float32, copy=False)
    if params.scale != 1.0 or params.shift != 0.0:
        out = scale_shift(out, scale=params.scale, shift=params.shift, clip=clip)
    if params.noise is not None:
        out = add_gaussian_noise(out, mu=params.noise[0], sigma=params.noise[1], rng=rng, clip=clip)
    return out, (None if mask is None else geometry(mask))


def random_augment(
    raw: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw (:func:`draw_augment`, ``options``) and apply (:func:`apply_augment`) one augmentation.

    Parameters
    ----------
    raw : ndarray (z, y, x)
        Network-input intensities in [0, 1].
    mask : ndarray (z, y, x) or None
        Membrane mask; receives the same flips and rotations, nothing else.
    rng : numpy.random.Generator
    **options
        ``flip_axes``, ``rotate``, ``intensity_scale``, ``intensity_shift``, ``noise``,
        ``noise_p`` of :func:`draw_augment`, and ``clip`` of :func:`apply_augment`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> raw, mask = np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8)
    >>> r, m = random_augment(raw, mask, rng, noise="low")
    >>> r.shape, r.dtype, m.dtype
    ((4, 8, 8), dtype('float32'), dtype('uint8'))
    """
    clip = options.pop("clip", True)
    params = draw_augment(rng, shape=raw.shape, **options)
    return apply_augment(raw, mask, params, rng=rng, clip=clip)

