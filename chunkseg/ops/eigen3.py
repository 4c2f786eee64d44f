"""Closed-form eigen-decomposition of fields of symmetric 3×3 matrices (pure NumPy).

Element-wise and vectorised (no per-voxel LAPACK calls), so a block's result depends
only on its own voxels: the Hessian and voting-tensor fields of :mod:`chunkseg.ops.acme`
stay bit-identical between chunked and whole-volume runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["eigh3_values", "eigh3_vector"]


def eigh3_values(a: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues (descending) of symmetric 3×3 fields, closed form (Smith 1961).

    ``a`` = (a00, a11, a22, a01, a02, a12), arrays of one shape.
    """
    a00, a11, a22, a01, a02, a12 = a
    q = (a00 + a11 + a22) / 3.0
    p1 = a01 * a01 + a02 * a02 + a12 * a12
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p = np.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2.0 * p1) / 6.0)
    ok = p > 1e-6  # below: numerically isotropic, all three equal q
    safe = np.where(ok, p, 1.0)
    det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02)
           + a02 * (a01 * a12 - b11 * a02))
    r = np.clip(np.where(ok, det / (2.0 * safe**3), 0.0), -1.0, 1.0)
    phi = np.arccos(r) / 3.0
    e1 = q + 2.0 * p * np.cos(phi)
    e3 = q + 2.0 * p * np.cos(phi + 2.0 * np.pi / 3.0)
    e2 = 3.0 * q - e1 - e3
    return e1, e2, e3


def eigh3_vector(a: Sequence[np.ndarray], lam: np.ndarray) -> np.ndarray:
    """Unit eigenvector (last axis z, y, x) of symmetric 3×3 fields for eigenvalue ``lam``.

    The largest cross product of two rows of ``A - λI``; where the eigenvalue is
    repeated the vector is one of its eigenspace (or (1, 0, 0) where ``A = λI``).
    """
    a00, a11, a22, a01, a02, a12 = a
    r0 = np.stack([a00 - lam, a01, a02], axis=-1)
    r1 = np.stack([a01, a11 - lam, a12], axis=-1)
    r2 = np.stack([a02, a12, a22 - lam], axis=-1)
    cands = [np.cross(r0, r1), np.cross(r0, r2), np.cross(r1, r2)]
    norms = np.stack([np.einsum("...i,...i->...", c, c) for c in cands], axis=-1)
    best = np.argmax(norms, axis=-1)[..., None]
    vec = np.where(best == 0, cands[0], np.where(best == 1, cands[1], cands[2]))
    nrm = np.sqrt(np.take_along_axis(norms, best, axis=-1))
    fallback = np.zeros_like(vec)
    fallback[..., 0] = 1.0
    return np.where(nrm > 1e-30, vec / np.where(nrm > 1e-30, nrm, 1.0), fallback)
