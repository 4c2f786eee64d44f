"""Fragments (an over-segmentation) of a membrane probability, by bounded rules (pure NumPy).

Fragments are the nodes of the region graph of the agglomerative segmentation
(:mod:`chunkseg.ops.rag`).  They must never cross a wall, not even one with a gap:
a gap in a wall is narrow, so the distance to the boundaries is small in it.

1. **Seeds** (:func:`fragment_seeds`) — the distance to the boundaries
   (``p >= boundary``), capped at ``radius`` µm by the exact windowed rule of
   :func:`chunkseg.ops.watershed.capped_sq_distance`, smoothed by a Gaussian of
   ``sigma`` µm (voxel-size aware, truncated at 2 sigma), and its local maxima
   (3 × 3 × 3 neighbourhood, plateaus included) inside the cell interior.  Where a cell is
   wider than ``2 * radius`` the seed is the plateau of its deep interior; smaller
   cells get one seed per maximum of the smoothed distance.  Every step has bounded
   support, so the seeds of a block read with :func:`fragment_seed_halo` equal the
   whole-volume seeds.  Connected seed voxels (6-connectivity) form one marker.
2. **Flood** — the bounded flood of :func:`chunkseg.ops.watershed.flood` from these
   markers, with the parameters of :meth:`FragmentParams.flood_params`: through the
   interior in ``interior_levels`` stages of rising probability (the clearest interior
   first, so a fragment does not run through a weak spot of a wall before the
   fragment on the other side has filled its own cell), ``2 * radius`` µm each, then
   into the membranes.

The blockwise engine (:mod:`chunkseg.engine.segment`) runs both steps block by block,
exactly as it runs the seeded flood; :func:`fragments` is the in-memory reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.watershed import (
    SegmentParams, as_probability, capped_sq_distance, flood, label_seeds,
)

__all__ = ["FragmentParams", "fragment_seed_halo", "fragment_seeds", "fragments"]

#: Gaussian support in standard deviations (scipy's ``truncate``)
_TRUNCATE = 2.0


@dataclass(frozen=True)
class FragmentParams:
    """Validated parameters of the fragments (lengths in µm).

    Parameters
    ----------
    boundary : float
        Boundary voxels are ``p >= boundary``; in (0, 1).
    radius : float
        Cap of the distance to the boundaries (µm, > 0); cells wider than twice this
        get their deep interior as one seed.
    sigma : float
        Smoothing of the distance (µm, >= 0).
    voxel_size : tuple of float
        ``(z, y, x)`` µm.
    membrane_reach : float
        Growth of the fragments per membrane level (µm, >= 0).
    levels : int
        Membrane levels of the flood.
    interior_levels : int
        Interior levels of the flood (the clearest interior is taken first).
    """

    boundary: float = 0.5
    radius: float = 1.0
    sigma: float = 0.3
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    membrane_reach: float = 0.5
    levels: int = 3
    interior_levels: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < float(self.boundary) < 1.0:
            raise ParameterError(f"boundary must lie in (0, 1); got {self.boundary!r}")
        if not float(self.radius) > 0:
            raise ParameterError(f"fragment radius must be > 0 µm; got {self.radius!r}")
        if not float(self.sigma) >= 0:
            raise ParameterError(f"fragment sigma must be >= 0 µm; got {self.sigma!r}")
        for name in ("boundary", "radius", "sigma", "membrane_reach"):
            object.__setattr__(self, name, float(getattr(self, name)))
        # the flood parameters validate voxel_size, membrane_reach and levels
        object.__setattr__(self, "voxel_size", self.flood_params().voxel_size)
        object.__setattr__(self, "levels", int(self.levels))
        object.__setattr__(self, "interior_levels", int(self.interior_levels))

    def flood_params(self) -> SegmentParams:
        """Parameters of the bounded flood that grows the fragments from their seeds."""
        return SegmentParams(threshold=self.boundary, seed_distance=self.radius, min_size=0.0,
                             voxel_size=self.voxel_size, reach=2.0 * self.radius,
                             membrane_reach=self.membrane_reach, levels=self.levels,
                             interior_levels=self.interior_levels)

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"boundary": self.boundary, "radius": self.radius, "sigma": self.sigma,
                "voxel_size": list(self.voxel_size), "membrane_reach": self.membrane_reach,
                "levels": self.levels, "interior_levels": self.interior_levels}

    def sigmas(self) -> tuple[float, ...]:
        """Gaussian standard deviation per axis, in voxels."""
        return tuple(self.sigma / s for s in self.voxel_size)


def fragment_seed_halo(params: FragmentParams) -> tuple[int, int, int]:
    """Halo (voxels per axis) that makes :func:`fragment_seeds` of a block exact.

    The distance window, plus the Gaussian's support, plus one voxel for the maxima.
    """
    return tuple(int(math.floor(params.radius / s)) + int(_TRUNCATE * g + 0.5) + 1
                 for s, g in zip(params.voxel_size, params.sigmas()))


def fragment_seeds(prob: np.ndarray, params: FragmentParams) -> np.ndarray:
    """Boolean seed mask: local maxima of the smoothed capped distance to the boundaries.

    Parameters
    ----------
    prob : ndarray of float32, (z, y, x)
        Membrane probability in [0, 1].
    params : FragmentParams

    Returns
    -------
    ndarray of bool
        Seeds; only interior voxels (``p < boundary``) with a boundary-free
        neighbourhood of at least one voxel are seeds.
    """
    if prob.ndim != 3:
        raise ShapeError(f"expected a 3D (z, y, x) probability block; got shape {prob.shape}")
    background = prob >= np.float32(params.boundary)
    d2 = capped_sq_distance(background, radius=params.radius, voxel_size=params.voxel_size)
    # no boundary in the window: farther than any distance seen in it, so a gap narrower
    # than the window never joins two plateaus
    far = sum((math.floor(params.radius / s) * s) ** 2 for s in params.voxel_size) + 1.0
    dist = _root32(d2, far)
    if params.sigma > 0:
        dist = ndimage.gaussian_filter(dist, params.sigmas(), mode="nearest",
                                       truncate=_TRUNCATE)
    return _maxima_inside(dist, background)


@numba.njit(cache=True, nogil=True)
def _root32(d2, far):
    """``float32(sqrt(d2))`` of a 3D float64 array in one pass, ``far`` in place of
    ``inf`` (the same numbers as NumPy's ``sqrt`` and ``astype``: both round once)."""
    nz, ny, nx = d2.shape
    out = np.empty(d2.shape, np.float32)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                v = d2[z, y, x]
                out[z, y, x] = np.sqrt(far if np.isinf(v) else v)
    return out


@numba.njit(cache=True, nogil=True)
def _maxima_inside(dist, background):
    """Voxels whose ``dist`` is at least that of every voxel of their 3 x 3 x 3
    neighbourhood (clipped to the array), that are not boundary and have no boundary
    face neighbour (no seed lies on the rim of a cell)."""
    nz, ny, nx = dist.shape
    out = np.zeros(dist.shape, np.bool_)
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if (background[z, y, x] or (z > 0 and background[z - 1, y, x])
                        or (z + 1 < nz and background[z + 1, y, x])
                        or (y > 0 and background[z, y - 1, x])
                        or (y + 1 < ny and background[z, y + 1, x])
                        or (x > 0 and background[z, y, x - 1])
                        or (x + 1 < nx and background[z, y, x + 1])):
                    continue
                out[z, y, x] = _is_peak(dist, z, y, x)
    return out


@numba.njit(cache=True, nogil=True)
def _is_peak(dist, z, y, x):
    """Whether no voxel of the clipped 3 x 3 x 3 neighbourhood exceeds ``dist[z, y, x]``."""
    nz, ny, nx = dist.shape
    v = dist[z, y, x]
    for c in range(max(z - 1, 0), min(z + 2, nz)):
        for b in range(max(y - 1, 0), min(y + 2, ny)):
            for a in range(max(x - 1, 0), min(x + 2, nx)):
                if dist[c, b, a] > v:
                    return False
    return True


def fragments(prob: np.ndarray, params: FragmentParams) -> np.ndarray:
    """Fragments of a whole (in-memory) probability volume: uint64 ids, 0 = unreached.

    The ids are the seed components' labels; the engine gives other ids to the same
    partition.
    """
    p = as_probability(prob)
    markers, _ = label_seeds(fragment_seeds(p, params))
    return flood(markers.astype(np.uint64), p, params.flood_params())
