"""The ACME-style baseline on dask: one overlap + map_blocks call with the computed halo.

:func:`acme_map` is the engine hook that ``chunkseg predict --method acme`` routes
to: it returns the lazy membrane score (float32 in [0, 1], same shape and chunks as
the input), which the prediction pipeline writes with
:func:`chunkseg.engine.blocks.write_volume` exactly as it writes U-Net
probabilities, so both methods pay the same I/O and orchestration costs.

Each block gets :func:`chunkseg.ops.acme.acme_halo` voxels of real context from
its neighbours; at the volume's faces the missing context is mirrored (NumPy
``"symmetric"`` padding), so the result equals
:func:`chunkseg.ops.acme.acme_score_reference` of the whole volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np

from chunkseg.errors import ShapeError
from chunkseg.ops.acme import AcmeParams, acme_halo, acme_score

__all__ = ["acme_map", "halo_of"]


def halo_of(voxel_size: Sequence[float], params: AcmeParams | None = None) -> tuple[int, int, int]:
    """The (z, y, x) halo of the score for these parameters (see :func:`acme_halo`)."""
    p = params or AcmeParams()
    return acme_halo(voxel_size, p.sigmas, median_radius=p.median_radius,
                     vote_sigma=p.vote_sigma, truncate=p.truncate)


def _starts(chunks: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    return [np.concatenate([[0], np.cumsum(c)[:-1]]).astype(int) for c in chunks]


def acme_map(
    data: da.Array,
    *,
    voxel_size: Sequence[float],
    params: AcmeParams | None = None,
    chunks: Sequence[int] | None = None,
) -> da.Array:
    """Lazy ACME membrane score of a (t, z, y, x) or (z, y, x) volume.

    Parameters
    ----------
    data : dask.array.Array
        The 8-bit normalised volume (uint8) or floats in [0, 1].
    voxel_size : (z, y, x) floats
        Physical voxel size (the filters resample to isotropic voxels).
    params : AcmeParams, optional
    chunks : (z, y, x) ints, optional
        Rechunk the input to these blocks first (give the output's shard shape so
        that :func:`write_volume` needs no rechunk).  Time is always one per block.

    Returns
    -------
    dask.array.Array
        float32 score in [0, 1], same shape as ``data``.

    Raises
    ------
    ShapeError
        ``data`` is not 3D or 4D.
    """
    if data.ndim not in (3, 4):
        raise ShapeError(f"ACME needs a (t, z, y, x) or (z, y, x) array; got shape {data.shape}")
    p = params or AcmeParams()
    halo = halo_of(voxel_size, p)
    lead = data.ndim - 3
    if chunks is not None:
        data = data.rechunk((1,) * lead + tuple(int(c) for c in chunks))
    elif lead:
        data = data.rechunk({0: 1})
    # every block must be at least one halo thick so that context comes from direct
    # neighbours only; axes held in one block take no overlap at all
    new = list(data.chunks)
    for ax, h in enumerate(halo, start=lead):
        if len(new[ax]) > 1:
            new[ax] = da.overlap.ensure_minimum_chunksize(h, new[ax])
    data = data.rechunk(tuple(new))
    depth = {ax: (h if len(data.chunks[ax]) > 1 else 0) for ax, h in enumerate(halo, start=lead)}
    depth.update({ax: 0 for ax in range(lead)})
    starts = _starts(data.chunks)
    nblocks = data.numblocks
    vs = tuple(float(v) for v in voxel_size)
    own = data.chunks

    def block_fn(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        pads, origin, crop = [], [], []
        for ax, h in enumerate(halo, start=lead):
            i = block_id[ax]
            got_lo = depth[ax] if i > 0 else 0
            got_hi = depth[ax] if i < nblocks[ax] - 1 else 0
            pads.append((h - got_lo, h - got_hi))
            origin.append(int(starts[ax][i]) - h)
            crop.append(slice(h, h + own[ax][i]))
        out = np.empty(block.shape[:lead] + tuple(s.stop - s.start for s in crop), np.float32)
        for t in np.ndindex(*block.shape[:lead]):
            vol = np.pad(block[t], pads, mode="symmetric")
            out[t] = acme_score(vol, voxel_size=vs, origin=origin, params=p)[tuple(crop)]
        return out

    g = da.overlap.overlap(data, depth=depth, boundary="none")
    return g.map_blocks(block_fn, chunks=data.chunks, dtype=np.float32,
                        meta=np.empty((0,) * data.ndim, np.float32))
