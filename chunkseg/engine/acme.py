"""The ACME-style baseline on dask: one overlap + map_blocks call with the computed halo.

:func:`acme_map` returns the lazy membrane score (float32 in [0, 1], same shape and
chunks as the input); :class:`AcmeScorer` is the plan of a run (filter parameters,
write block, compute block), which ``chunkseg predict --method acme`` hands to the
same probability writer as the U-Net's, so both methods pay the same I/O and
orchestration costs.

Each block gets :func:`chunkseg.ops.acme.acme_halo` voxels of real context from
its neighbours; at the volume's faces the missing context is mirrored (NumPy
``"symmetric"`` padding), so the result equals
:func:`chunkseg.ops.acme.acme_score_reference` of the whole volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.engine.geometry import Block
from chunkseg.engine.plan import DEFAULT_BLOCK
from chunkseg.engine.predict import scale_array
from chunkseg.errors import ShapeError
from chunkseg.ops.acme import AcmeParams, acme_halo, acme_score
from chunkseg.ops.tiling import as_triple

__all__ = ["ACME_BLOCK", "AcmeScorer", "acme_map", "compute_chunks", "halo_of"]

#: compute block of the filters (the write shard is the block): about 25 float32
#: temporaries of the isotropic, haloed block stay a few hundred MB
ACME_BLOCK = (32, 128, 128)


def compute_chunks(block: Sequence[int], want: Sequence[int] = ACME_BLOCK) -> tuple[int, ...]:
    """Compute chunks near ``want`` that tile ``block`` evenly (no straddling writes).

    Examples
    --------
    >>> compute_chunks((128, 256, 256))
    (32, 128, 128)
    """
    return tuple(math.ceil(b / math.ceil(b / min(w, b))) for b, w in zip(block, want))


def halo_of(voxel_size: Sequence[float], params: AcmeParams | None = None) -> tuple[int, int, int]:
    """The (z, y, x) halo of the score for these parameters (see :func:`acme_halo`)."""
    p = params or AcmeParams()
    return acme_halo(voxel_size, p.sigmas, median_radius=p.median_radius,
                     vote_sigma=p.vote_sigma, truncate=p.truncate)


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
    # the overlap hands each block its read region (Block.read: an axis held in one
    # block takes no overlap, its read region is the whole axis); the rest is mirrored
    depth = {ax: (h if len(data.chunks[ax]) > 1 else 0) for ax, h in enumerate(halo, start=lead)}
    depth.update({ax: 0 for ax in range(lead)})
    vs = tuple(float(v) for v in voxel_size)
    chunks3 = data.chunks[lead:]

    def block_fn(block: np.ndarray, block_id: tuple[int, ...] | None = None) -> np.ndarray:
        b = Block.of_chunks(block_id[lead:], chunks3, halo)
        out = np.empty(block.shape[:lead] + b.shape, np.float32)
        for t in np.ndindex(*block.shape[:lead]):
            vol = np.pad(block[t], b.missing, mode="symmetric")
            out[t] = acme_score(vol, voxel_size=vs, origin=b.origin, params=p)[b.padded_crop]
        return out

    g = da.overlap.overlap(data, depth=depth, boundary="none")
    return g.map_blocks(block_fn, chunks=data.chunks, dtype=np.float32,
                        meta=np.empty((0,) * data.ndim, np.float32))


@dataclass(frozen=True)
class AcmeScorer:
    """The ACME baseline as a probability scorer: ``scorer(x)`` is the lazy score.

    Make it with :meth:`plan`; ``settings`` go into the output's fingerprint and
    attributes, ``summary`` into the run summary.
    """

    voxel_size: tuple[float, float, float]
    params: AcmeParams
    block: tuple[int, int, int]
    compute_block: tuple[int, int, int]

    name = "acme"
    #: time points per task
    group = 1
    #: the intensity range a model would bring (the baseline has none)
    normalization = None

    @classmethod
    def plan(cls, shape: Sequence[int], voxel_size: Sequence[float], *,
             params: AcmeParams | dict | None = None, block: int | Sequence[int] | None = None,
             compute_block: Sequence[int] | None = None) -> AcmeScorer:
        """Resolve the parameters, the write block (clipped) and the compute block."""
        p = params if isinstance(params, AcmeParams) else AcmeParams(**(params or {}))
        block_ = tuple(min(b, s) for b, s in zip(as_triple(block or DEFAULT_BLOCK, "block"),
                                                   shape))
        return cls(tuple(float(v) for v in voxel_size), p, block_,
                   compute_chunks(block_, compute_block or ACME_BLOCK))

    @property
    def halo(self) -> tuple[int, int, int]:
        """Context voxels each block reads (:func:`halo_of`)."""
        return halo_of(self.voxel_size, self.params)

    def settings(self) -> dict[str, Any]:
        """What the output depends on, besides the input, dtype and time points."""
        return dict(method="acme", acme=self.params.to_dict(), halo=list(self.halo),
                    block=list(self.block), compute_block=list(self.compute_block))

    def attrs(self) -> dict[str, Any]:
        """Output attributes naming the method."""
        return {"method": "acme"}

    def warm(self, client: Any) -> list[Any]:
        """Nothing to load ahead (the filters need no model): no futures."""
        return []

    def summary(self, timepoints: int = 1) -> dict[str, Any]:
        """Run-summary entries of the method (the same for any number of time points)."""
        return {"method": "acme", "halo": list(self.halo), "block": list(self.block),
                "compute_block": list(self.compute_block), "acme": self.params.to_dict()}

    def __call__(self, x: da.Array,
                 intensity_range: tuple[float, float] | None = None) -> da.Array:
        """float32 score of a (t, z, y, x) array chunked for writing in ``block`` shards,
        scaled to uint8 by :func:`chunkseg.ops.normalize.scale_to_uint8` with
        ``intensity_range`` first when given."""
        return acme_map(scale_array(x, intensity_range), voxel_size=self.voxel_size,
                        params=self.params, chunks=self.compute_block)
