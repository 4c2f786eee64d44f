"""Rendering kernel of :mod:`chunkseg.synth` (pure NumPy/SciPy; internal).

Exactness by construction: every voxel value is a fixed sequence of float operations
on global quantities (seed positions, the voxel's global index), never on which block
or sub-box it is computed in.

* Labels: the power distance ``p_j(x) = ((z - s_jz)^2 - w_j + (y - s_jy)^2) + (x - s_jx)^2``
  is separable, so a sub-box evaluates it for a few candidate seeds by broadcasting
  three 1D tables.  Candidates are pruned with exact bounds (``L_j`` / ``U_j``: the
  minimum / maximum of ``p_j`` over the sub-box); the argmin over an ascending list of
  global seed ids that contains the true winner is the true winner (ties: lowest id).
* Membranes: the face between the owner ``i`` and seed ``j`` contributes a blurred
  sheet wherever the distance to their bisector plane ``d = (p_j - p_i) / (2|s_j - s_i|)``
  is ``<= 4 sigma_n``; contributions are summed in ascending ``j``, skipped ones add
  nothing, so any superset of the contributing seeds gives the same float sum.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import ndtri

if TYPE_CHECKING:  # pragma: no cover
    from chunkseg.synth.params import SynthParams

__all__ = ["render", "seed_base", "seeds_at"]

#: faces contribute where the distance to their plane is <= CUT sigma_n
CUT = 4.0
#: fixed-point scale of face contributions (integer sums are exact in any order)
_FIX = float(2**32)
#: photons below which Poisson variates are drawn exactly (normal approximation above)
_EXACT_POISSON = 30.0


@functools.lru_cache(maxsize=4)
def seed_base(p: SynthParams) -> dict[str, np.ndarray]:
    """Seeds at t = 0, weights, motion, brightness, texture and blobs (global, cheap)."""
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
    out = dict(
        pos=pos, w=r * r,
        omega=rng.uniform(0.05, 0.2, size=(n, 3)),
        phase=rng.uniform(0.0, 2.0 * np.pi, size=(n, 3)),
        bright=np.exp(p.cell_contrast * rng.standard_normal(n)),
        # separable plane-wave products: membrane texture (~3 µm), haze (~25 µm)
        tex_k=rng.uniform(0.5, 1.5, size=(3, 3)) * (2.0 * np.pi / 3.0),
        tex_phi=rng.uniform(0.0, 2.0 * np.pi, size=(3, 3)),
        haze_k=rng.uniform(0.5, 1.5, size=3) * (2.0 * np.pi / 25.0),
        haze_phi=rng.uniform(0.0, 2.0 * np.pi, size=3),
    )
    nb = rng.poisson(p.blob_density * np.prod(p.extent) / 1000.0) if p.blobs else 0
    sxy = rng.uniform(0.4, 1.0, size=nb)
    out.update(
        blob_pos=rng.uniform(0.0, 1.0, size=(nb, 3)) * p.extent,
        blob_sigma=np.stack([2.5 * sxy, sxy, sxy], axis=1),
        blob_amp=rng.uniform(0.3, 1.0, size=nb) * p.membrane_photons,
        blob_vel=rng.normal(0.0, p.motion, size=(nb, 3)),
    )
    return out


@functools.lru_cache(maxsize=8)
def seeds_at(p: SynthParams, t: int) -> tuple[np.ndarray, cKDTree]:
    """Seed positions (µm) at time point ``t`` and their k-d tree."""
    b = seed_base(p)
    amp = p.motion / b["omega"]
    pos = b["pos"] + amp * (np.sin(b["omega"] * t + b["phase"]) - np.sin(b["phase"]))
    return pos, cKDTree(pos)


# ----------------------------------------------------------------------- noise
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
    low = np.flatnonzero(lam < _EXACT_POISSON)
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


def _counts(p: SynthParams, t: int, reg, photons: np.ndarray) -> np.ndarray:
    """Camera counts (uint16) from photons: Poisson, gain, read noise, offset."""
    if not p.noise:
        return np.clip(np.rint(p.offset + p.gain * photons), 0, 65535).astype(np.uint16)
    z, y, x = (np.arange(a, b, dtype=np.uint64) for a, b in reg)
    Z, Y, X = (np.uint64(s) for s in p.shape)
    index = (((np.uint64(t) * Z + z[:, None, None]) * Y + y[None, :, None]) * X + x).ravel()
    key = (p.seed << 8) & 0xFFFFFFFFFFFFFFFF
    shot = _poisson(photons.ravel(), _uniform(index, key + 1))
    read = p.read_noise * ndtri(_uniform(index, key + 2))
    counts = np.rint(p.offset + p.gain * shot + read).reshape(photons.shape)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def _add_blobs(p: SynthParams, t: int, reg, photons: np.ndarray) -> None:
    """Add the out-of-focus blobs overlapping ``reg`` to ``photons``."""
    b = seed_base(p)
    if not len(b["blob_amp"]):
        return
    vs = np.asarray(p.voxel_size)
    centre = b["blob_pos"] + b["blob_vel"] * t
    lo = np.ceil((centre - 4 * b["blob_sigma"]) / vs).astype(int)
    hi = np.floor((centre + 4 * b["blob_sigma"]) / vs).astype(int) + 1
    start = np.array([r[0] for r in reg])
    a, z = np.maximum(lo, start), np.minimum(hi, np.array([r[1] for r in reg]))
    for i in np.flatnonzero(np.all(a < z, axis=1)):
        g = [np.exp(-0.5 * np.square((np.arange(a[i, d], z[i, d]) * vs[d] - centre[i, d])
                                     / b["blob_sigma"][i, d])) for d in range(3)]
        g[0] = g[0] * np.exp(-(np.arange(a[i, 0], z[i, 0]) * vs[0]) / p.attenuation_length)
        sl = tuple(slice(a[i, d] - start[d], z[i, d] - start[d]) for d in range(3))
        photons[sl] += b["blob_amp"][i] * g[0][:, None, None] * g[1][None, :, None] * g[2]


# ----------------------------------------------------------------------- geometry
def _bounds(pos: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Min and max over the box [lo, hi] of the power distances of the seeds."""
    near = np.clip(pos, lo, hi)
    far = np.where(pos < 0.5 * (lo + hi), hi, lo)
    return ((pos - near) ** 2).sum(1) - w, ((pos - far) ** 2).sum(1) - w


def _select(pos, w, ids, lo, hi, delta):
    """Owner candidates and face candidates among ``ids`` (supersets of the true ones)."""
    L, U = _bounds(pos[ids], w[ids], lo, hi)
    eps = 1e-9 * (1.0 + np.abs(U).max())
    tau = U.min()
    centre = 0.5 * (lo + hi)
    dist = np.sqrt(((pos[ids] - centre) ** 2).sum(1))
    r_own = dist[L <= tau + eps].max()
    keep = L <= tau + 2.0 * delta * (dist + r_own) + eps
    # pairwise: p_j - p_i is linear in x; keep j if its minimum over the box is within
    # 2 delta |s_j - s_i| of some owner i (a face of i and j may then be within delta)
    owner, face = ids[L <= tau + eps], ids[keep]
    so, sf = pos[owner], pos[face]
    cst = (sf**2).sum(1) - w[face]
    diff = sf[None, :, :] - so[:, None, :]
    lin = np.minimum(-2.0 * diff * lo, -2.0 * diff * hi).sum(2)
    fmin = lin + cst[None, :] - ((so**2).sum(1) - w[owner])[:, None]
    tol = 1e-9 * (1.0 + np.abs(cst).max())
    near = fmin <= 2.0 * delta * np.sqrt((diff**2).sum(2)) + tol
    return owner, face[near.any(0)], tau, r_own, eps


def _block_margin(w: np.ndarray, delta: float) -> float:
    """Seeds farther than this from a block are only checked for, not listed (µm)."""
    return 4.0 * float(np.sqrt(w.max())) + 2.0 * delta


def _sub_shape(p: SynthParams) -> tuple[int, int, int]:
    return tuple(int(np.clip(round(0.75 * p.cell_diameter / v), 4, 64)) for v in p.voxel_size)


def render(p: SynthParams, t: int, big, inner=None):
    """Labels (uint32) of region ``big`` and raw counts (uint16) of ``inner`` ⊆ ``big``.

    Regions are ``((z0, z1), (y0, y1), (x0, x1))`` in global voxel indices; ``inner``
    None computes no raw.  Work proceeds in sub-boxes of about a cell radius, so
    temporaries stay small whatever the block size.
    """
    pos, tree = seeds_at(p, t)
    b = seed_base(p)
    w, vs = b["w"], np.asarray(p.voxel_size)
    sig2 = np.square(p.psf_sigma)
    delta = CUT * float(np.sqrt(sig2.max()))
    start = np.array([r[0] for r in big])
    lo_b, hi_b = start * vs, (np.array([r[1] for r in big]) - 1) * vs
    margin = _block_margin(w, delta)
    half = float(np.linalg.norm(0.5 * (hi_b - lo_b)))
    block_ids = np.sort(np.asarray(
        tree.query_ball_point(0.5 * (lo_b + hi_b), half + margin), dtype=np.int64))
    every = np.arange(len(pos))
    labels = np.empty(tuple(e - s for s, e in big), np.uint32)
    raw = None if inner is None else np.empty(tuple(e - s for s, e in inner), np.uint16)
    sub = _sub_shape(p)
    for corner in itertools.product(*(range(s, e, n) for (s, e), n in zip(big, sub))):
        sreg = tuple((c, min(c + n, e)) for c, n, (_, e) in zip(corner, sub, big))
        lo = np.array([a for a, _ in sreg]) * vs
        hi = np.array([e - 1 for _, e in sreg]) * vs
        ids = block_ids if len(block_ids) else every
        owner, faces, tau, r_own, eps = _select(pos, w, ids, lo, hi, delta)
        diag = float(np.linalg.norm(hi - lo))
        if len(ids) < len(pos) and not (
            margin * margin - w.max() > tau + 2.0 * delta * (margin + diag + r_own) + eps
        ):  # a seed outside the block's list might matter: use all seeds
            owner, faces = _select(pos, w, every, lo, hi, delta)[:2]
        coords = [np.arange(a, e) * v for (a, e), v in zip(sreg, vs)]
        sc, wc = pos[owner], w[owner]
        P = (((coords[0][:, None] - sc[:, 0]) ** 2 - wc)[:, None, None, :]
             + ((coords[1][:, None] - sc[:, 1]) ** 2)[None, :, None, :]) \
            + ((coords[2][:, None] - sc[:, 2]) ** 2)[None, None, :, :]
        own = P.argmin(-1)
        sl_big = tuple(slice(a - s, e - s) for (a, e), s in zip(sreg, start))
        labels[sl_big] = owner[own] + 1
        if inner is None:
            continue
        ireg = tuple((max(a, ia), min(e, ie)) for (a, e), (ia, ie) in zip(sreg, inner))
        if any(a >= e for a, e in ireg):
            continue
        loc = tuple(slice(a - sa, e - sa) for (a, e), (sa, _) in zip(ireg, sreg))
        own = own[loc]
        pmin = np.take_along_axis(P[loc], own[..., None], -1)[..., 0]
        coords = [c[s] for c, s in zip(coords, loc)]
        membrane = _membrane(pos, w, b["bright"], owner[own], pmin, coords, sig2, faces, delta)
        photons = _photons(p, b, owner[own], membrane, coords, sig2)
        _add_blobs(p, t, ireg, photons)
        raw[tuple(slice(a - s, e - s) for (a, e), (s, _) in zip(ireg, inner))] = \
            _counts(p, t, ireg, photons)
    if p.background:
        labels[_ellipsoid(p, [np.arange(s, e) * v for (s, e), v in zip(big, vs)])[0] > 1.0] = 0
    return labels, raw


def _ellipsoid(p: SynthParams, coords):
    """rho (> 1 outside the embryo) and the squared gradient norm of rho * rho."""
    c, semi = p.extent / 2.0, p.extent * 0.48
    q = [(x - ci) / si for x, ci, si in zip(coords, c, semi)]
    rho2 = ((q[0] ** 2)[:, None, None] + (q[1] ** 2)[None, :, None]) + (q[2] ** 2)[None, None, :]
    g = [qi / si for qi, si in zip(q, semi)]
    return np.sqrt(rho2), g


def _membrane(pos, w, bright, own, pmin, coords, sig2, faces, delta):
    """Blurred cell-face sheets at the voxels of a sub-box (``own``: global owner ids).

    Voxels are grouped by owner ``i``; only seeds ``j`` whose bisector with ``i`` passes
    within ``delta`` of the owner's voxels are evaluated.  Each contribution is rounded
    to fixed point so that the per-voxel sum is exact in any order.
    """
    grids = np.meshgrid(*coords, indexing="ij")
    zf, yf, xf = (g.ravel() for g in grids)
    own_f, pmin_f = own.ravel(), pmin.ravel()
    order = np.argsort(own_f, kind="stable")
    ids, first = np.unique(own_f[order], return_index=True)
    out = np.zeros(own_f.size)
    smin = float(np.sqrt(sig2.min()))
    for i, a, e in zip(ids, first, [*first[1:], own_f.size]):
        vox = order[a:e]
        z, y, x = zf[vox], yf[vox], xf[vox]
        lo = np.array([z.min(), y.min(), x.min()])
        hi = np.array([z.max(), y.max(), x.max()])
        J = faces[faces != i]
        diff = pos[J] - pos[i]
        fmin = (np.minimum(-2.0 * diff * lo, -2.0 * diff * hi).sum(1)
                + ((pos[J] ** 2).sum(1) - w[J]) - ((pos[i] ** 2).sum() - w[i]))
        tol = 1e-9 * (1.0 + float((pos[J] ** 2).sum(1).max(initial=0.0)))
        n2 = (diff**2).sum(1)
        reach = CUT * np.sqrt((diff**2 @ sig2) / np.maximum(n2, 1e-300)) * 1.000001
        J = J[fmin <= 2.0 * reach * np.sqrt(n2) + tol]  # per-pair delta: CUT sigma_n
        if not len(J):
            continue
        sj = pos[J]
        dz, dy, dx = (sj - pos[i]).T
        d2 = (dz * dz + dy * dy) + dx * dx
        sn2 = ((dz * dz * sig2[0] + dy * dy * sig2[1]) + dx * dx * sig2[2]) / d2
        kq = 0.25 / (d2 * sn2)  # q = (d / sigma_n)^2 with d = D / (2 |s_j - s_i|)
        coef = np.sqrt(bright[i] * bright[J]) * (smin / np.sqrt(sn2)) * _FIX
        D = ((((z[:, None] - sj[:, 0]) ** 2 - w[J]) + (y[:, None] - sj[:, 1]) ** 2)
             + (x[:, None] - sj[:, 2]) ** 2) - pmin_f[vox][:, None]
        q = D * D * kq
        r, c = np.nonzero(q <= CUT * CUT)
        if r.size:  # integer-valued float64 sums (< 2**53) are exact in any order
            val = np.rint(coef[c] * np.exp(-0.5 * q[r, c]))
            out[vox] += np.bincount(r, weights=val, minlength=len(vox))
    return (out / _FIX).reshape(own.shape)


def _photons(p, b, own, membrane, coords, sig2):
    """Expected photons of a sub-box: membranes, cytoplasm, haze, depth fall-off."""
    z, y, x = coords
    tex = np.zeros(own.shape)
    for k, phi in zip(b["tex_k"], b["tex_phi"]):
        tex += (np.cos(k[0] * z + phi[0])[:, None, None] * np.cos(k[1] * y + phi[1])[:, None]) \
            * np.cos(k[2] * x + phi[2])
    membrane *= np.maximum(1.0 + 0.6 * tex, 0.2)
    cyto = p.cytoplasm * b["bright"][own]
    hk, hp = b["haze_k"], b["haze_phi"]
    haze = p.haze_photons * (1.0 + 0.4 * (np.cos(hk[0] * z + hp[0])[:, None, None]
                                          * np.cos(hk[1] * y + hp[1])[:, None])
                             * np.cos(hk[2] * x + hp[2]))
    if p.background:
        rho, g = _ellipsoid(p, coords)
        g2 = ((g[0] ** 2)[:, None, None] + (g[1] ** 2)[None, :, None]) + (g[2] ** 2)
        sn = (((g[0] ** 2 * sig2[0])[:, None, None] + (g[1] ** 2 * sig2[1])[None, :, None])
              + g[2] ** 2 * sig2[2]) / np.maximum(g2, 1e-30)
        sn = np.maximum(sn, sig2.min())
        dsurf = (rho - 1.0) * rho / np.sqrt(np.maximum(g2, 1e-30))
        smin = float(np.sqrt(sig2.min()))
        inside = 1.0 / (1.0 + np.exp(np.clip(dsurf / smin, -50, 50)))
        membrane = membrane * inside + (smin / np.sqrt(sn)) * np.exp(-0.5 * dsurf**2 / sn)
        cyto = cyto * inside
        haze = haze * (0.3 + 0.7 * inside)
    depth = np.exp(-z / p.attenuation_length)[:, None, None]
    return depth * p.membrane_photons * (membrane + cyto) + haze
