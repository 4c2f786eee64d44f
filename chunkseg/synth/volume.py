"""Synthetic lattice light-sheet membrane volumes with exact truth.

Pure NumPy/SciPy: no dask, no zarr.  Every voxel is a function of the global
parameters and its global index only, so any block ``(z0:z1, y0:y1, x0:x1)`` of any
time point can be generated on its own and equals the same block cut from the whole
volume *exactly* (labels, mask and raw, noise included).

The model
---------
Cells
    A Laguerre (power-weighted Voronoi) tessellation of seed points in physical
    space (micrometres, so anisotropic voxels are handled): voxel ``x`` belongs to
    the seed ``i`` minimising ``|x - s_i|^2 - w_i`` with ``w_i = r_i^2`` and radii
    ``r_i`` log-normal around ``cell_diameter / 2``.  Seeds are drawn once for the
    whole volume (plus a margin), spread by a few rounds of pairwise repulsion, and
    drift smoothly with ``t`` (a sinusoid per seed and axis, about ``motion`` µm per
    time point).  The power diagram is evaluated exactly in sub-boxes of about a
    cell radius over a pruned candidate list (see :mod:`chunkseg.synth.render`).
    Label of seed ``i`` is ``i + 1`` (uint32; the same cell
    keeps its label over time, seeds outside the volume leave gaps in the label
    numbers).  With ``background=True`` voxels outside an embryo-like ellipsoid are 0.
Mask
    uint8 membrane voxels: :func:`chunkseg.ops.boundaries.membrane_mask` of the labels
    with its defaults (the definition ``binarize`` uses: thick, width 1, 0 = background),
    computed on the block plus its halo.
Raw
    uint16 camera counts.  Each cell face is a thin sheet; its image under the
    anisotropic Gaussian PSF (``psf_sigma``, z > y = x) is rendered analytically:
    a plane with unit normal ``n`` blurred by a Gaussian of covariance ``S`` is a 1D
    Gaussian of the distance to the plane with variance ``n^T S n`` (and peak scaled
    by ``sigma_min / sigma_n``, so sheets facing z look dimmer and thicker, as in
    real light-sheet data; each face is drawn out to 4 sigma_n of its plane).  Faces get the geometric mean of the two cells' log-normal
    brightness, a smooth texture along the sheet and exponential fall-off with depth
    (``attenuation_length``); cells hold a dim cytoplasm; smooth background haze;
    optional out-of-focus blobs (anisotropic Gaussians) as distractors.  Photons
    become counts by Poisson noise (exact inversion below 30 photons, normal
    approximation above), gain, Gaussian read noise and a camera offset.  Noise
    uniforms come from a counter-based hash (splitmix64) of ``(seed, t, z, y, x)``.

Defaults imitate lattice light-sheet data: voxel size (0.4, 0.1, 0.1) µm (z steps
of 400 nm), PSF sigma (0.45, 0.12, 0.12) µm, cells of 4 µm, membrane peaks of a few
hundred to a few thousand counts over an offset of 100.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.boundaries import halo_for_width, membrane_mask
from chunkseg.synth.params import SynthParams
from chunkseg.synth.render import render

__all__ = [
    "SynthVolume",
    "synth_block",
    "synth_volume",
    "MASK_HALO",
]

#: halo (voxels) the membrane mask (binarize's default, width 1) needs around a block
MASK_HALO = halo_for_width(1)
#: voxels per z-slab inside a block (bounds the temporaries of large blocks)
_SLAB_VOXELS = 1 << 21


@dataclass
class SynthVolume:
    """One synthetic time point held in memory.

    Attributes
    ----------
    raw : ndarray of uint16, (z, y, x)
    labels : ndarray of uint32, (z, y, x)
    mask : ndarray of uint8, (z, y, x)
        Membrane voxels, :func:`chunkseg.ops.boundaries.membrane_mask` of ``labels``.
    params : SynthParams
    """

    raw: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    params: SynthParams


# --------------------------------------------------------------------------- helpers
def _region(p: SynthParams, region: Sequence[Any] | None) -> tuple[tuple[int, int], ...]:
    if region is None:
        return tuple((0, s) for s in p.shape)
    out = []
    for r, s in zip(region, p.shape):
        a, b = (r.start or 0, s if r.stop is None else r.stop) if isinstance(r, slice) else r
        if not 0 <= int(a) < int(b) <= s:
            raise ShapeError(f"region {tuple(region)!r} is not inside the volume {p.shape}")
        out.append((int(a), int(b)))
    if len(out) != 3:
        raise ShapeError(f"region must give 3 (start, stop) ranges (z, y, x); got {region!r}")
    return tuple(out)


# --------------------------------------------------------------------------- API
def _slab(params: SynthParams, t: int, reg, outputs) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    inner = reg if "raw" in outputs else None
    if "mask" in outputs:
        big = tuple((max(0, a - MASK_HALO), min(s, b + MASK_HALO))
                    for (a, b), s in zip(reg, params.shape))
        labels, out["raw"] = render(params, t, big, inner)
        crop = tuple(slice(a - ba, b - ba) for (a, b), (ba, _) in zip(reg, big))
        out["mask"] = membrane_mask(labels)[crop]
        out["labels"] = labels[crop]
    else:
        out["labels"], out["raw"] = render(params, t, reg, inner)
    return {k: out[k] for k in outputs}


def synth_block(
    params: SynthParams,
    region: Sequence[Any] | None = None,
    *,
    t: int = 0,
    outputs: Sequence[str] = ("raw", "labels", "mask"),
) -> dict[str, np.ndarray]:
    """Generate one block of one time point.

    Parameters
    ----------
    params : SynthParams
        The series (shape, seed, ...).
    region : sequence of 3 slices or (start, stop) pairs, optional
        The block ``(z, y, x)`` in global voxel indices; ``None`` is the whole volume.
    t : int
        Time point (``>= 0``).
    outputs : sequence of {"raw", "labels", "mask"}
        What to compute (``"labels"`` alone is much cheaper than ``"raw"``).

    Returns
    -------
    dict
        ``{"raw": uint16, "labels": uint32, "mask": uint8}`` (the requested keys), each
        of the block's shape; exactly equal to the same block of the whole volume.
    """
    reg = _region(params, region)
    outputs = tuple(outputs)
    bad = set(outputs) - {"raw", "labels", "mask"}
    if bad or not outputs:
        raise ParameterError(f"outputs must be among 'raw', 'labels', 'mask'; got {outputs!r}")
    if int(t) < 0:
        raise ParameterError(f"time point t must be >= 0; got {t!r}")
    t = int(t)
    dtypes = {"raw": np.uint16, "labels": np.uint32, "mask": np.uint8}
    out = {k: np.empty(tuple(b - a for a, b in reg), dtypes[k]) for k in outputs}
    (z0, z1), ry, rx = reg
    step = max(1, _SLAB_VOXELS // ((ry[1] - ry[0]) * (rx[1] - rx[0])))
    for za in range(z0, z1, step):  # z-slabs bound the temporaries of big blocks
        slab = ((za, min(za + step, z1)), ry, rx)
        for k, v in _slab(params, t, slab, outputs).items():
            out[k][za - z0:slab[0][1] - z0] = v
    return out


def synth_volume(
    shape: Sequence[int],
    *,
    seed: int = 0,
    t: int = 0,
    **params: Any,
) -> SynthVolume:
    """Generate one synthetic time point in memory (for tests and examples).

    Parameters
    ----------
    shape : sequence of 3 int
        ``(z, y, x)`` voxels.
    seed : int
        Random seed; the same seed gives the same volume.
    t : int
        Time point; cells drift slowly with ``t``.
    **params
        Other :class:`SynthParams` fields (``voxel_size``, ``cell_diameter``,
        ``blobs``, ``background``, ``noise``, ...).

    Returns
    -------
    SynthVolume

    Examples
    --------
    >>> v = synth_volume((32, 64, 64), seed=1)
    >>> v.raw.dtype, v.labels.dtype, v.mask.dtype
    (dtype('uint16'), dtype('uint32'), dtype('uint8'))
    """
    p = SynthParams(shape=shape, seed=seed, **params)
    if int(np.prod(p.shape)) <= _CACHE_VOXELS:  # tests ask for the same small volumes often
        out = _cached_block(p, int(t))
        return SynthVolume(out["raw"].copy(), out["labels"].copy(), out["mask"].copy(), p)
    out = synth_block(p, None, t=t)
    return SynthVolume(out["raw"], out["labels"], out["mask"], p)


_CACHE_VOXELS = 1 << 20


@functools.lru_cache(maxsize=16)
def _cached_block(p: SynthParams, t: int) -> dict[str, np.ndarray]:
    return synth_block(p, None, t=t)
