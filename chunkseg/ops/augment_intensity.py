"""Intensity augmentations of training crops: window (percentile jitter, saturation),
sigmoid tone curve, gamma, contrast, offset and 8-bit requantization.

Pure NumPy.  They act on network input (the 8-bit normalised raw / 255, float32 in
[0, 1]) and never on the membrane mask or the geometry, so raw-mask alignment is
untouched.  Their purpose is a network that does not depend on how a user's volume was
scaled to 8 bit: a different percentile window is an affine change with clipping
(:func:`window`), a camera offset or background is a shift, a volume whose range is set
by a few bright outliers has its membranes squeezed into a few grey levels (a contrast
below 1 followed by :func:`quantize`), a microscope's or a camera's tone curve bends
the grey levels of broad wall shoulders and cytoplasm differently (:func:`sigmoid_curve`,
:func:`gamma`).

Order of :func:`apply_intensity`: window → sigmoid curve → gamma → contrast (about the
crop mean) → offset → clip to [0, 1] → quantize to 256 levels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError

__all__ = [
    "INTENSITY_RANGES",
    "IntensityParams",
    "apply_intensity",
    "contrast",
    "draw_intensity",
    "gamma",
    "quantize",
    "sigmoid_curve",
    "window",
]

#: default ranges drawn by :func:`draw_intensity` (uniform; gamma and curve_width
#: log-uniform); the sigmoid curve is drawn only with a probability ``curve_p`` > 0
INTENSITY_RANGES: dict[str, tuple[float, float]] = {
    "window_low": (-0.15, 0.2),
    "window_high": (0.6, 1.4),
    "gamma": (0.6, 1.7),
    "contrast": (0.15, 1.3),
    "offset": (-0.15, 0.15),
    "curve_centre": (0.25, 0.75),
    "curve_width": (0.05, 0.3),
}
_PROBABILITIES = {"p": 0.9, "curve_p": 0.0}


def window(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(x - low) / (high - low)`` clipped to [0, 1] (another percentile range).

    ``high < 1`` saturates the brightest voxels; ``low < 0`` / ``high > 1`` compress.
    """
    if not high > low:
        raise ParameterError(f"window needs high > low; got ({low}, {high})")
    out = (np.asarray(x, np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def gamma(x: np.ndarray, g: float) -> np.ndarray:
    """``x ** g`` for ``x`` in [0, 1] (float32)."""
    if not g > 0:
        raise ParameterError(f"gamma must be > 0; got {g}")
    return np.power(np.clip(np.asarray(x, np.float32), 0.0, 1.0), np.float32(g))


def sigmoid_curve(x: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Logistic tone curve through (0, 0) and (1, 1) for ``x`` in [0, 1] (float32).

    ``s(x) = 1 / (1 + exp(-(x - centre) / width))``, rescaled so that 0 and 1 stay put:
    values below ``centre`` are pushed down, values above it up, the steeper the smaller
    ``width`` (0.05: nearly a threshold; 0.5: nearly the identity).  Monotone increasing.
    """
    if not width > 0:
        raise ParameterError(f"curve width must be > 0; got {width}")
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0)
    s0, s1 = (1.0 / (1.0 + np.exp(-(v - centre) / width)) for v in (0.0, 1.0))
    y = 1.0 / (1.0 + np.exp(-(x - np.float32(centre)) / np.float32(width)))
    return np.clip((y - np.float32(s0)) / np.float32(s1 - s0), 0.0, 1.0).astype(np.float32)


def contrast(x: np.ndarray, c: float, *, centre: float | None = None) -> np.ndarray:
    """``centre + c * (x - centre)`` (float32, not clipped); ``centre`` default: mean of ``x``."""
    x = np.asarray(x, np.float32)
    m = np.float32(x.mean() if centre is None else centre)
    return m + np.float32(c) * (x - m)


def quantize(x: np.ndarray, levels: int = 256) -> np.ndarray:
    """Round ``x`` in [0, 1] to ``levels`` equally spaced grey levels (float32)."""
    if int(levels) < 2:
        raise ParameterError(f"levels must be >= 2; got {levels}")
    n = np.float32(int(levels) - 1)
    return np.floor(np.clip(np.asarray(x, np.float32), 0.0, 1.0) * n + 0.5) / n


@dataclass(frozen=True)
class IntensityParams:
    """One drawn intensity augmentation (identity by default; ``curve_width`` 0: no
    sigmoid curve)."""

    window_low: float = 0.0
    window_high: float = 1.0
    curve_centre: float = 0.5
    curve_width: float = 0.0
    gamma: float = 1.0
    contrast: float = 1.0
    offset: float = 0.0
    quantize: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _ranges(options: Mapping[str, Any] | bool | None) -> dict[str, tuple[float, float]]:
    if options is True or options is None:
        return dict(INTENSITY_RANGES)
    if not isinstance(options, Mapping):
        raise ParameterError(f"intensity must be true or a mapping of ranges; got {options!r}")
    unknown = sorted(set(options) - set(INTENSITY_RANGES) - set(_PROBABILITIES))
    if unknown:
        raise ParameterError(f"unknown intensity range(s) {unknown}; expected among "
                             f"{sorted(INTENSITY_RANGES)}")
    out = dict(INTENSITY_RANGES)
    for key, value in options.items():
        if key in _PROBABILITIES:
            continue
        lo, hi = (float(v) for v in value)
        if not lo <= hi:
            raise ParameterError(f"intensity range {key} must be (low, high), low <= high; "
                                 f"got {tuple(value)}")
        out[key] = (lo, hi)
    for key in ("gamma", "curve_width"):
        if not out[key][0] > 0:
            raise ParameterError(f"{key} range must be > 0; got {out[key]}")
    if not out["window_high"][0] > out["window_low"][1]:
        raise ParameterError(f"window_high {out['window_high']} must lie above window_low "
                             f"{out['window_low']}")
    return out


def _probabilities(options: Mapping[str, Any] | bool | None) -> dict[str, float]:
    given = options if isinstance(options, Mapping) else {}
    out = {k: float(given.get(k, v)) for k, v in _PROBABILITIES.items()}
    for key, v in out.items():
        if not 0.0 <= v <= 1.0:
            raise ParameterError(f"intensity {key} must be in [0, 1]; got {v}")
    return out


def draw_intensity(rng: np.random.Generator,
                   options: Mapping[str, Any] | bool | None = True) -> IntensityParams:
    """Draw one :class:`IntensityParams` from ``options`` (ranges, default
    :data:`INTENSITY_RANGES`; key ``p``: probability of changing anything, default 0.9;
    key ``curve_p``: probability, among the changed crops, of a :func:`sigmoid_curve`,
    default 0).

    Every draw with the same options uses the same number of random numbers, so a seed
    fixes the result; with ``curve_p`` 0 the draws are those of the options without it.
    """
    ranges, prob = _ranges(options), _probabilities(options)
    u = rng.random(6)
    c = rng.random(3) if prob["curve_p"] > 0 else None
    if u[0] >= prob["p"]:
        return IntensityParams()
    pick = lambda k, v: ranges[k][0] + v * (ranges[k][1] - ranges[k][0])  # noqa: E731
    logpick = lambda k, v: float(np.exp(  # noqa: E731
        np.log(ranges[k][0]) + v * (np.log(ranges[k][1]) - np.log(ranges[k][0]))))
    curve = ({"curve_centre": float(pick("curve_centre", c[1])),
              "curve_width": logpick("curve_width", c[2])}
             if c is not None and c[0] < prob["curve_p"] else {})
    return IntensityParams(
        window_low=float(pick("window_low", u[1])), window_high=float(pick("window_high", u[2])),
        gamma=logpick("gamma", u[3]), contrast=float(pick("contrast", u[4])),
        offset=float(pick("offset", u[5])), **curve)


def apply_intensity(x: np.ndarray, params: IntensityParams) -> np.ndarray:
    """Apply ``params`` to a crop ``x`` in [0, 1]; returns float32 in [0, 1] of ``x``'s shape.

    Examples
    --------
    >>> x = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 2, 2)
    >>> y = apply_intensity(x, IntensityParams(gamma=2.0, quantize=False))
    >>> bool(np.allclose(y, x ** 2))
    True
    """
    out = np.asarray(x, np.float32)
    if (params.window_low, params.window_high) != (0.0, 1.0):
        out = window(out, params.window_low, params.window_high)
    if params.curve_width > 0:
        out = sigmoid_curve(out, params.curve_centre, params.curve_width)
    if params.gamma != 1.0:
        out = gamma(out, params.gamma)
    if params.contrast != 1.0:
        out = contrast(out, params.contrast)
    if params.offset != 0.0:
        out = out + np.float32(params.offset)
    out = np.clip(out, 0.0, 1.0)
    return quantize(out) if params.quantize else out.astype(np.float32, copy=False)
