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
    time point).  The power diagram is found exactly with one k-d tree over lifted
    4D points ``(s_i, sqrt(W - w_i))``: the Euclidean nearest lifted point is the
    power-nearest seed.  Label of seed ``i`` is ``i + 1`` (uint32; the same cell
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
    real light-sheet data).  Faces get the geometric mean of the two cells' log-normal
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
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtri

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.boundaries import halo_for_width, membrane_mask

__all__ = [
    "SynthParams",
    "SynthVolume",
    "synth_block",
    "synth_volume",
    "MASK_HALO",
]

#: neighbours examined per voxel (the own cell + faces to the next K - 1 seeds)
K_NEAREST = 5
#: halo (voxels) the membrane mask (binarize's default, width 1) needs around a block
MASK_HALO = halo_for_width(1)
#: voxels evaluated at once inside a block (bounds the float64 temporaries)
_PIECE = 1 << 19


@dataclass(frozen=True)
class SynthParams:
    """Every parameter of a synthetic series (hashable; stored in the output attrs).

    Lengths are micrometres, axes ``(z, y, x)``; intensities are photons.
    """

    shape: tuple[int, int, int]
    seed: int = 0
    voxel_size: tuple[float, float, float] = (0.4, 0.1, 0.1)
    cell_diameter: float = 4.0
    size_variation: float = 0.15
    psf_sigma: tuple[float, float, float] = (0.45, 0.12, 0.12)
    membrane_photons: float = 500.0
    cell_contrast: float = 0.35
    cytoplasm: float = 0.04
    haze_photons: float = 30.0
    attenuation_length: float = 60.0
    blobs: bool = True
    blob_density: float = 2.0
    background: bool = False
    motion: float = 0.1
    offset: float = 100.0
    gain: float = 1.0
    read_noise: float = 2.0
    noise: bool = True

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ParameterError(f"shape must be 3 positive integers (z, y, x); got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        for name in ("voxel_size", "psf_sigma"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3 or any(not x > 0 for x in v):
                raise ParameterError(f"{name} must be 3 positive numbers (z, y, x); got {v!r}")
            object.__setattr__(self, name, v)
        for name in ("cell_diameter", "attenuation_length", "gain"):
            if not float(getattr(self, name)) > 0:
                raise ParameterError(f"{name} must be > 0; got {getattr(self, name)!r}")
        for name in ("size_variation", "membrane_photons", "cell_contrast", "cytoplasm",
                     "haze_photons", "blob_density", "motion", "offset", "read_noise"):
            if not float(getattr(self, name)) >= 0:
                raise ParameterError(f"{name} must be >= 0; got {getattr(self, name)!r}")
        if int(self.seed) < 0:
            raise ParameterError(f"seed must be a non-negative integer; got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the parameters."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def extent(self) -> np.ndarray:
        """Physical size of the volume in µm ``(z, y, x)``."""
        return np.asarray(self.shape, float) * np.asarray(self.voxel_size)


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


# --------------------------------------------------------------------------- seeds
@functools.lru_cache(maxsize=4)
def _seed_base(p: SynthParams) -> dict[str, np.ndarray]:
    """Seed positions at t = 0, radii, motion parameters, blobs (global, cheap)."""
    rng = np.random.default_rng([p.seed, 0x5EED])
    d = p.cell_diameter
    margin = d + 2.0 * p.motion * 10.0
    lo, hi = -margin * np.ones(3), p.extent + margin
    n = max(2, int(round(np.prod(hi - lo) / (np.pi / 6.0 * d**3))))
    pos = rng.uniform(lo, hi, size=(n, 3))
    s = p.size_variation
    r = 0.5 * d * np.exp(s * rng.standard_normal(n) - 1.5 * s * s)
    for _ in range(12):  # pairwise repulsion: polydisperse, roughly packed seeds
        pairs = cKDTree(pos).query_pairs(0.85 * 2.0 * r.max(), output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        delta = pos[j] - pos[i]
        dist = np.maximum(np.linalg.norm(delta, axis=1), 1e-9)
        overlap = np.maximum(0.0, 0.85 * (r[i] + r[j]) - dist)
        push = (0.5 * overlap / dist)[:, None] * delta
        np.add.at(pos, i, -push)
        np.add.at(pos, j, push)
        np.clip(pos, lo, hi, out=pos)
    omega = rng.uniform(0.05, 0.2, size=(n, 3))
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(n, 3))
    bright = np.exp(p.cell_contrast * rng.standard_normal(n))
    waves = rng.standard_normal((8, 3)) * (2.0 * np.pi / 3.0)  # membrane texture, ~3 µm
    haze_waves = rng.standard_normal((4, 3)) * (2.0 * np.pi / 25.0)
    wave_phase = rng.uniform(0.0, 2.0 * np.pi, size=12)
    nb = rng.poisson(p.blob_density * np.prod(p.extent) / 1000.0) if p.blobs else 0
    blob_pos = rng.uniform(0.0, 1.0, size=(nb, 3)) * p.extent
    sxy = rng.uniform(0.4, 1.0, size=nb)
    blob_sigma = np.stack([2.5 * sxy, sxy, sxy], axis=1)
    blob_amp = rng.uniform(0.3, 1.0, size=nb) * p.membrane_photons
    blob_vel = rng.normal(0.0, p.motion, size=(nb, 3))
    return dict(pos=pos, w=r * r, omega=omega, phase=phase, bright=bright, waves=waves,
                haze_waves=haze_waves, wave_phase=wave_phase, blob_pos=blob_pos,
                blob_sigma=blob_sigma, blob_amp=blob_amp, blob_vel=blob_vel)


@functools.lru_cache(maxsize=8)
def _seeds_at(p: SynthParams, t: int) -> tuple[np.ndarray, cKDTree]:
    """Seed positions at time ``t`` and the k-d tree of their lifted 4D points."""
    b = _seed_base(p)
    amp = p.motion / b["omega"]
    pos = b["pos"] + amp * (np.sin(b["omega"] * t + b["phase"]) - np.sin(b["phase"]))
    lift = np.sqrt(b["w"].max() - b["w"])
    return pos, cKDTree(np.column_stack([pos, lift]))


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


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(index: np.ndarray, key: int) -> np.ndarray:
    """Uniform (0, 1) from a counter-based hash of the global voxel index."""
    h = _splitmix64(index ^ _splitmix64(np.asarray([key], dtype=np.uint64))[0])
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def _poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson variates by inversion of ``u`` (exact below 30, normal approx above)."""
    out = np.floor(lam + np.sqrt(lam) * ndtri(u) + 0.5)
    low = np.flatnonzero(lam < 30.0)
    if low.size:
        lm, ul = lam[low], u[low]
        k = np.zeros_like(lm)
        pk = np.exp(-lm)
        cdf = pk.copy()
        for n in range(1, 100):
            more = ul > cdf
            if not more.any():
                break
            k += more
            pk = pk * lm / n
            cdf += pk
        out[low] = k
    return np.maximum(out, 0.0)


def _piece_values(p: SynthParams, t: int, zz, yy, xx, raw_rows: np.ndarray | None):
    """Labels of voxels with global indices zz, yy, xx (1D int arrays), and the photons
    of the voxels selected by the boolean ``raw_rows`` (None: no photons)."""
    b = _seed_base(p)
    pos, tree = _seeds_at(p, t)
    vs = np.asarray(p.voxel_size)
    x = np.column_stack([zz * vs[0], yy * vs[1], xx * vs[2], np.zeros(zz.size)])
    dist, idx = tree.query(x, k=K_NEAREST)
    labels = (idx[:, 0] + 1).astype(np.uint32)
    x = x[:, :3]
    if p.background:
        c, semi = p.extent / 2.0, p.extent * 0.48
        q = (x - c) / semi
        rho = np.sqrt((q * q).sum(1))
        labels[rho > 1.0] = 0
    if raw_rows is None:
        return labels, None
    dist, idx, x = dist[raw_rows], idx[raw_rows], x[raw_rows]
    if p.background:
        q, rho = q[raw_rows], rho[raw_rows]
    sig2 = np.square(p.psf_sigma)
    smin = float(np.sqrt(sig2.min()))
    own = idx[:, 0]
    d2 = dist * dist
    membrane = np.zeros(len(x))
    for k in range(1, K_NEAREST):
        other = idx[:, k]
        delta = pos[other] - pos[own]
        norm = np.sqrt((delta * delta).sum(1))
        n = delta / norm[:, None]
        sn2 = (n * n) @ sig2
        dface = (d2[:, k] - d2[:, 0]) / (2.0 * norm)
        face = np.sqrt(b["bright"][own] * b["bright"][other])
        membrane += face * (smin / np.sqrt(sn2)) * np.exp(-0.5 * dface * dface / sn2)
    phase = b["wave_phase"]
    texture = 1.0 + 0.35 * np.cos(x @ b["waves"].T + phase[:8]).mean(1) * np.sqrt(8)
    membrane *= np.clip(texture, 0.2, None)
    cyto = p.cytoplasm * b["bright"][own]
    haze = p.haze_photons * (1.0 + 0.4 * np.cos(x @ b["haze_waves"].T + phase[8:]).mean(1))
    if p.background:
        grad = (q / semi) / np.maximum(rho, 1e-9)[:, None]
        gnorm = np.maximum(np.sqrt((grad * grad).sum(1)), 1e-9)
        n = grad / gnorm[:, None]
        sn2 = np.maximum((n * n) @ sig2, sig2.min())
        dsurf = (rho - 1.0) / gnorm
        inside = 1.0 / (1.0 + np.exp(np.clip(dsurf / smin, -50, 50)))
        membrane = membrane * inside + (smin / np.sqrt(sn2)) * np.exp(-0.5 * dsurf**2 / sn2)
        cyto = cyto * inside
        haze = haze * (0.3 + 0.7 * inside)
    depth = np.exp(-x[:, 0] / p.attenuation_length)
    photons = depth * p.membrane_photons * (membrane + cyto) + haze
    return labels, photons


def _add_blobs(p: SynthParams, t: int, reg, photons: np.ndarray) -> None:
    """Add the out-of-focus blobs overlapping ``reg`` to ``photons`` (block array)."""
    b = _seed_base(p)
    if not len(b["blob_amp"]):
        return
    vs = np.asarray(p.voxel_size)
    centre = b["blob_pos"] + b["blob_vel"] * t
    lo = np.ceil((centre - 4 * b["blob_sigma"]) / vs).astype(int)
    hi = np.floor((centre + 4 * b["blob_sigma"]) / vs).astype(int) + 1
    start = np.array([r[0] for r in reg])
    stop = np.array([r[1] for r in reg])
    a, z = np.maximum(lo, start), np.minimum(hi, stop)
    for i in np.flatnonzero(np.all(a < z, axis=1)):
        axes = [
            np.exp(-0.5 * np.square((np.arange(a[i, d], z[i, d]) * vs[d] - centre[i, d])
                                    / b["blob_sigma"][i, d]))
            for d in range(3)
        ]
        g = b["blob_amp"][i] * axes[0][:, None, None] * axes[1][None, :, None] * axes[2]
        sl = tuple(slice(a[i, d] - start[d], z[i, d] - start[d]) for d in range(3))
        photons[sl] += g * np.exp(-(np.arange(a[i, 0], z[i, 0]) * vs[0])
                                  / p.attenuation_length)[:, None, None]


def _evaluate(p: SynthParams, t: int, big, inner):
    """Labels (uint32) of region ``big`` and raw counts (uint16) of region ``inner``
    (inside ``big``, or None), z-slab by z-slab so temporaries stay bounded."""
    shape = tuple(b - a for a, b in big)
    labels = np.empty(shape, np.uint32)
    raw = None if inner is None else np.empty(tuple(b - a for a, b in inner), np.uint16)
    plane = shape[1] * shape[2]
    step = max(1, _PIECE // plane)
    yy, xx = np.meshgrid(np.arange(*big[1]), np.arange(*big[2]), indexing="ij")
    yy, xx = yy.ravel(), xx.ravel()
    if inner is not None:
        rows = ((yy >= inner[1][0]) & (yy < inner[1][1])
                & (xx >= inner[2][0]) & (xx < inner[2][1]))
    for z0 in range(0, shape[0], step):
        zs = np.arange(big[0][0] + z0, big[0][0] + min(z0 + step, shape[0]))
        zin = np.zeros(zs.size, bool) if inner is None else (
            (zs >= inner[0][0]) & (zs < inner[0][1]))
        sel = (np.repeat(zin, plane) & np.tile(rows, zs.size)) if zin.any() else None
        lab, ph = _piece_values(p, t, np.repeat(zs, plane), np.tile(yy, zs.size),
                                np.tile(xx, zs.size), sel)
        labels[z0:z0 + zs.size] = lab.reshape(zs.size, *shape[1:])
        if ph is not None:
            preg = ((int(zs[zin][0]), int(zs[zin][-1]) + 1), inner[1], inner[2])
            ph = ph.reshape(tuple(b - a for a, b in preg))
            _add_blobs(p, t, preg, ph)
            raw[preg[0][0] - inner[0][0]:preg[0][1] - inner[0][0]] = _counts(p, t, preg, ph)
    return labels, raw


def _counts(p: SynthParams, t: int, reg, photons: np.ndarray) -> np.ndarray:
    """Camera counts (uint16) from photons: Poisson, gain, read noise, offset."""
    if not p.noise:
        return np.clip(np.rint(p.offset + p.gain * photons), 0, 65535).astype(np.uint16)
    z, y, x = (np.arange(a, b, dtype=np.uint64) for a, b in reg)
    Z, Y, X = (np.uint64(s) for s in p.shape)
    index = ((np.uint64(t) * Z + z[:, None, None]) * Y + y[None, :, None]) * X + x
    key = (p.seed << 8) & 0xFFFFFFFFFFFFFFFF
    shot = _poisson(photons.ravel(), _uniform(index.ravel(), key + 1))
    read = p.read_noise * ndtri(_uniform(index.ravel(), key + 2))
    counts = np.rint(p.offset + p.gain * shot + read).reshape(photons.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


# --------------------------------------------------------------------------- API
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
    out: dict[str, np.ndarray] = {}
    inner = reg if "raw" in outputs else None
    if "mask" in outputs:
        big = tuple((max(0, a - MASK_HALO), min(s, b + MASK_HALO))
                    for (a, b), s in zip(reg, params.shape))
        labels, raw = _evaluate(params, t, big, inner)
        crop = tuple(slice(a - ba, b - ba) for (a, b), (ba, _) in zip(reg, big))
        out["mask"] = np.ascontiguousarray(membrane_mask(labels)[crop])
        labels = np.ascontiguousarray(labels[crop])
    else:
        labels, raw = _evaluate(params, t, reg, inner)
    out["labels"] = labels
    out["raw"] = raw
    return {k: out[k] for k in outputs}


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
    if isinstance(shape, (int, np.integer)) or len(tuple(shape)) != 3:
        raise ParameterError(f"shape must be 3 positive integers (z, y, x); got {shape!r}")
    p = SynthParams(shape=tuple(shape), seed=seed, **params)
    if int(np.prod(p.shape)) <= _CACHE_VOXELS:  # tests ask for the same small volumes often
        out = _cached_block(p, int(t))
        return SynthVolume(out["raw"].copy(), out["labels"].copy(), out["mask"].copy(), p)
    out = synth_block(p, None, t=t)
    return SynthVolume(out["raw"], out["labels"], out["mask"], p)


_CACHE_VOXELS = 1 << 20


@functools.lru_cache(maxsize=16)
def _cached_block(p: SynthParams, t: int) -> dict[str, np.ndarray]:
    return synth_block(p, None, t=t)
