"""A wider synthetic domain: nuclei, vesicles, uneven illumination and stripes on top of
:mod:`chunkseg.synth`, and membrane images rendered from real cell labels.

:func:`wide_block` adds to a :func:`chunkseg.synth.synth_block` block (pure NumPy):

* bright nuclei: in a fraction of the cells, a smooth ball around the cell's seed
  (``nucleus_size`` × the cell radius), ``nucleus_photons`` × the cell's brightness;
* vesicles: bright spots of σ ``vesicle_sigma`` µm, at most one per lattice box of
  ``vesicle_spacing`` µm (present with probability ``vesicle_density``, at a hashed
  position), inside cells only;
* uneven illumination: a smooth multiplicative field ``1 + illumination · cos(...)``
  (period about the volume's extent);
* stripes: light-sheet shadows along x, ``1 - stripes · s(y, z)^4`` with a period of
  ``stripe_period`` µm in y.

Every added value is a function of the global voxel index, the cell seeds and hashes of
``(seed, index)``, so a block equals the same block of the whole volume exactly (noise of
the added photons included).  The options the base generator already has cover the rest
of the wider domain: low membrane/cytoplasm contrast (``cytoplasm`` up to 5 gives 1.2 : 1),
thick blurred walls and strong z blur (``psf_sigma``), empty background
(``background=True``), depth fall-off (``attenuation_length``), dim and bright cells side
by side (``cell_contrast``).

:func:`render_from_labels` renders a membrane image from any label volume (e.g. the real
cell geometry of ``tissue_labels.tif``): blurred interfaces, per-cell brightness,
cytoplasm, nuclei, haze, the same illumination and stripe fields, Poisson and read noise.
It is an in-memory function of a whole label volume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from chunkseg.errors import ParameterError
from chunkseg.ops.boundaries import membrane_mask
from chunkseg.synth.params import SynthParams
from chunkseg.synth.volume import synth_block
from chunkseg.synth.render import _poisson, _uniform, seed_base, seeds_at

__all__ = ["WideParams", "illumination_field", "render_from_labels", "wide_block"]


@dataclass(frozen=True)
class WideParams:
    """Additions of :func:`wide_block` (all off by default)."""

    nucleus_fraction: float = 0.0
    nucleus_size: float = 0.45
    nucleus_photons: float = 0.0
    vesicle_density: float = 0.0
    vesicle_spacing: float = 2.0
    vesicle_sigma: float = 0.2
    vesicle_photons: float = 0.0
    illumination: float = 0.0
    stripes: float = 0.0
    stripe_period: float = 6.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not float(value) >= 0:
                raise ParameterError(f"{name} must be >= 0; got {value!r}")
        for name in ("nucleus_fraction", "vesicle_density", "stripes"):
            if getattr(self, name) > 1:
                raise ParameterError(f"{name} must be <= 1; got {getattr(self, name)!r}")
        for name in ("nucleus_size", "vesicle_spacing", "vesicle_sigma", "stripe_period"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name} must be > 0; got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def illumination_field(coords: Sequence[np.ndarray], extent: Sequence[float], *, seed: int,
                       illumination: float, stripes: float,
                       stripe_period: float) -> np.ndarray:
    """Multiplicative illumination × stripe field on the grid ``coords`` (µm, z y x).

    A smooth product of cosines with periods 1-2 × ``extent`` (amplitude
    ``illumination``) times light-sheet stripes constant along x.
    """
    rng = np.random.default_rng([int(seed), 0x111])
    k = 2.0 * np.pi / (np.asarray(extent, float) * rng.uniform(1.0, 2.0, 3))
    phi = rng.uniform(0, 2 * np.pi, 4)
    z, y, x = (np.asarray(c, float) for c in coords)
    f = 1.0 + illumination * (np.cos(k[0] * z + phi[0])[:, None, None]
                              * np.cos(k[1] * y + phi[1])[None, :, None]
                              * np.cos(k[2] * x + phi[2])[None, None, :])
    if stripes:
        s = 0.5 + 0.5 * np.cos(2 * np.pi * y / stripe_period + phi[3]
                               + 0.3 * np.sin(0.2 * z)[:, None])
        f = f * (1.0 - stripes * s[:, :, None] ** 4)
    return np.maximum(f, 0.05)


def _vesicles(w: WideParams, seed: int, coords) -> np.ndarray:
    """Vesicle photons (before cell masking) on the grid ``coords`` (µm)."""
    d, sig = w.vesicle_spacing, w.vesicle_sigma
    reach = 4.0 * sig
    out = np.zeros(tuple(len(c) for c in coords))
    ranges = [np.arange(np.floor((c[0] - reach) / d), np.floor((c[-1] + reach) / d) + 1)
              .astype(np.int64) for c in coords]
    bz, by, bx = np.meshgrid(*ranges, indexing="ij")
    boxes = np.stack([bz.ravel(), by.ravel(), bx.ravel()], 1)
    index = ((boxes + (1 << 20)).astype(np.uint64) * np.uint64([1 << 42, 1 << 21, 1])).sum(1)
    key = (int(seed) << 8) + 17
    keep = _uniform(index, key) < w.vesicle_density
    centre = (boxes + np.stack([_uniform(index, key + a) for a in (1, 2, 3)], 1)) * d
    amp = w.vesicle_photons * (0.5 + _uniform(index, key + 4))
    for c, a in zip(centre[keep], amp[keep]):
        g = [np.exp(-0.5 * ((ci - cc) / sig) ** 2) for ci, cc in zip(coords, c)]
        if min(v.max() for v in g) < 1e-6:
            continue
        out += a * g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]
    return out


def _nuclei(p: SynthParams, w: WideParams, t: int, labels: np.ndarray, coords) -> np.ndarray:
    pos, _ = seeds_at(p, t)
    b = seed_base(p)
    ids = labels.astype(np.int64) - 1
    inside = ids >= 0
    cell = np.where(inside, ids, 0)
    has = _uniform(cell.astype(np.uint64), (p.seed << 8) + 29) < w.nucleus_fraction
    z, y, x = np.meshgrid(*coords, indexing="ij")
    s = pos[cell]
    dist = np.sqrt((z - s[..., 0]) ** 2 + (y - s[..., 1]) ** 2 + (x - s[..., 2]) ** 2)
    rad = w.nucleus_size * np.sqrt(b["w"][cell])
    ball = 1.0 / (1.0 + np.exp(np.clip((dist - rad) / (0.1 * rad + 1e-9), -50, 50)))
    return np.where(inside & has, w.nucleus_photons * b["bright"][cell] * ball, 0.0)


def wide_block(params: SynthParams, wide: WideParams, region: Sequence[Any] | None = None, *,
               t: int = 0) -> dict[str, np.ndarray]:
    """One block of the wide synthetic domain: ``{"raw", "labels", "mask"}``.

    ``raw`` (uint16) is :func:`chunkseg.synth.synth_block`'s raw with nuclei and
    vesicles added (with their own Poisson noise) and the signal above the camera
    offset scaled by :func:`illumination_field`; labels and mask are unchanged.  Exactly
    equal to the same block of the whole volume.
    """
    out = synth_block(params, region, t=t, outputs=("raw", "labels", "mask"))
    reg = [(0, s) for s in params.shape] if region is None else [
        (r.start or 0, s if r.stop is None else r.stop) if isinstance(r, slice) else r
        for r, s in zip(region, params.shape)]
    coords = [np.arange(a, b) * v for (a, b), v in zip(reg, params.voxel_size)]
    depth = np.exp(-coords[0] / params.attenuation_length)[:, None, None]
    extra = np.zeros(out["raw"].shape)
    if wide.nucleus_fraction and wide.nucleus_photons:
        extra += _nuclei(params, wide, t, out["labels"], coords)
    if wide.vesicle_density and wide.vesicle_photons:
        extra += _vesicles(wide, params.seed + 7919 * t, coords) * (out["labels"] > 0)
    signal = out["raw"].astype(np.float64) - params.offset
    if extra.any():
        z, y, x = (np.arange(a, b, dtype=np.uint64) for a, b in reg)
        Z, Y, X = (np.uint64(s) for s in params.shape)
        index = (((np.uint64(t) * Z + z[:, None, None]) * Y + y[None, :, None]) * X + x).ravel()
        u = _uniform(index, ((params.seed << 8) + 3) & 0xFFFFFFFFFFFFFFFF)
        lam = (extra * depth).ravel()
        signal += params.gain * _poisson(lam, u).reshape(extra.shape)
    if wide.illumination or wide.stripes:
        signal *= illumination_field(coords, params.extent, seed=params.seed,
                                     illumination=wide.illumination, stripes=wide.stripes,
                                     stripe_period=wide.stripe_period)
    out["raw"] = np.clip(np.rint(params.offset + signal), 0, 65535).astype(np.uint16)
    return out


def render_from_labels(labels: np.ndarray, *, seed: int = 0, voxel_size=(1.0, 1.0, 1.0),
                       psf_sigma=(1.5, 0.8, 0.8), membrane_photons: float = 200.0,
                       cytoplasm: float = 0.2, cell_contrast: float = 0.4,
                       nucleus_fraction: float = 0.5, nucleus_photons: float = 0.0,
                       haze_photons: float = 20.0, illumination: float = 0.3,
                       stripes: float = 0.0, offset: float = 100.0,
                       read_noise: float = 2.0) -> np.ndarray:
    """Render a membrane image (uint16 counts) from cell instance ``labels`` (0 = outside).

    Interfaces (:func:`chunkseg.ops.boundaries.membrane_mask`, width 1) blurred by a
    Gaussian of ``psf_sigma`` µm, scaled per cell by a log-normal brightness
    (``cell_contrast``); cytoplasm ``cytoplasm`` × the membrane level (``cytoplasm``
    5 gives a 1.2 : 1 contrast); nuclei in a fraction of the cells (the inner part by
    distance to the cell border); haze; illumination / stripes; Poisson + read noise.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ParameterError(f"labels must be 3D (z, y, x); got shape {labels.shape}")
    rng = np.random.default_rng([int(seed), 0xAB])
    vs = np.asarray(voxel_size, float)
    n = int(labels.max()) + 1
    bright = np.exp(cell_contrast * rng.standard_normal(n))
    bright[0] = 0.0
    sheet = membrane_mask(labels).astype(np.float64) * np.maximum(bright[labels], 0.3)
    sigma = np.asarray(psf_sigma, float) / vs
    photons = membrane_photons * ndi.gaussian_filter(sheet, sigma) * (sigma.prod() ** (1 / 3))
    photons += membrane_photons * cytoplasm * bright[labels]
    if nucleus_fraction and nucleus_photons:
        inner = ndi.distance_transform_edt(labels > 0, sampling=vs)
        far = ndi.maximum(inner, labels, np.arange(n))
        has = rng.random(n) < nucleus_fraction
        nuc = has[labels] & (inner > 0.55 * far[labels]) & (labels > 0)
        photons += ndi.gaussian_filter(nuc * nucleus_photons * bright[labels], sigma)
    coords = [np.arange(s) * v for s, v in zip(labels.shape, vs)]
    photons = (photons + haze_photons) * illumination_field(
        coords, np.asarray(labels.shape) * vs, seed=seed, illumination=illumination,
        stripes=stripes, stripe_period=6.0 * float(vs[1:].mean()) * 8)
    counts = rng.poisson(np.maximum(photons, 0)) + read_noise * rng.standard_normal(photons.shape)
    return np.clip(np.rint(offset + counts), 0, 65535).astype(np.uint16)
