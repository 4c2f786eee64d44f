"""The prediction plan: halo, block, tile and batch of a run, settled before any work.

Like MONAI's ``SlidingWindowInferer`` the settings are apart from the call: a
:class:`TilePlan` (frozen) is made once from the volume shape, the model's
:class:`~chunkseg.model.info.ModelInfo` and a memory budget; a :class:`UNetScorer`
holds it with the model and maps a (t, z, y, x) array to its probability through
:func:`chunkseg.engine.predict.predict_array`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da

from chunkseg.defaults import PREDICT_BLOCK
from chunkseg.engine.cluster import MEMORY_BUDGET
from chunkseg.engine.predict import (ModelSpec, check_halo, clip_halo, predict_array,
                                     scale_array, tile_stats)
from chunkseg.engine.resample_predict import predict_array_resampled, resampled_halo
from chunkseg.errors import ParameterError
from chunkseg.model.info import ModelInfo
from chunkseg.ops.tiling import BlendMode, as_triple, choose_batch, choose_tile

__all__ = ["BLOCK_BYTES_PER_VOXEL", "DEFAULT_BLOCK", "GROUP_VOXELS", "TilePlan", "UNetScorer",
           "block_bytes", "group_timepoints", "plan_tiles", "resolve_halo"]

#: output block (= shard, = dask task) shape of a prediction when none is given;
#: clipped to the volume
DEFAULT_BLOCK = PREDICT_BLOCK
#: bytes a predict task holds per haloed block voxel besides the input's own itemsize
#: and the network call: the uint8 block read, its copy padded to the pooling grid and
#: the two float32 sums of the tile blend (:func:`chunkseg.ops.tiling.predict_tiled`)
BLOCK_BYTES_PER_VOXEL = 1 + 1 + 4 + 4
#: network input voxels of one predict task up to which it takes the same block of
#: several time points (tiny time points: a task and a network call then cost more than
#: the voxels; ``benchmarks/results/block_cost.md``)
GROUP_VOXELS = 2**20


def group_timepoints(stats: dict[str, int], blocks: int, timepoints: int) -> int:
    """Time points per predict task: as many as keep its network input within
    :data:`GROUP_VOXELS` (1 for blocks that exceed it alone), at most ``timepoints``.

    ``stats`` is :func:`chunkseg.engine.predict.tile_stats` of one time point of
    ``blocks`` blocks.
    """
    per_block = stats["tile_voxels"] / max(1, blocks)
    return int(max(1, min(timepoints, GROUP_VOXELS // max(per_block, 1.0))))


def block_bytes(block: Sequence[int], halo: Sequence[int], *, itemsize: int = 2,
                group: int = 1) -> int:
    """Peak bytes one predict task holds besides the network call: per haloed voxel the
    input read (``itemsize``) and :data:`BLOCK_BYTES_PER_VOXEL`, per owned voxel its
    float32 prediction; ``group`` time points at a time."""
    haloed = math.prod(int(b) + 2 * int(h) for b, h in zip(block, halo))
    owned = math.prod(int(b) for b in block)
    return int(group) * (haloed * (int(itemsize) + BLOCK_BYTES_PER_VOXEL) + owned * 4)


@dataclass(frozen=True)
class TilePlan:
    """Block, tile and batch of a prediction of one volume per time point.

    Attributes
    ----------
    shape : 3 ints
        The (z, y, x) volume planned for.
    block : 3 ints
        Output block = shard = one dask task.
    halo : 3 ints
        The halo blocks use (the requested one clipped to the volume on axes one
        block covers: :func:`chunkseg.engine.predict.clip_halo`).
    tile : 3 ints
        Network input shape.
    batch : int
        Tiles per network call.
    stats : dict
        :func:`chunkseg.engine.predict.tile_stats` of one time point (``tiles``,
        ``tile_voxels``, ...).
    group : int
        Time points per predict task (:func:`group_timepoints`).
    """

    shape: tuple[int, int, int]
    block: tuple[int, int, int]
    halo: tuple[int, int, int]
    tile: tuple[int, int, int]
    batch: int
    stats: dict[str, int]
    group: int = 1


def _tile_for(block, tile, halo, info: ModelInfo, budget_bytes: float) -> tuple[int, int, int]:
    if tile is None:
        return choose_tile(block, halo=halo, pool=info.pool,
                           context=[min(h, r) for h, r in zip(halo, info.receptive)],
                           bytes_per_voxel=info.bytes_per_voxel, budget_bytes=budget_bytes,
                           max_voxels=info.max_call_voxels)
    # never larger than a haloed block (tile_grid would shrink it anyway)
    return tuple(t if t % p else min(t, -(-(b + 2 * h + p - 1) // p) * p)
                 for t, b, h, p in zip(as_triple(tile, "tile"), block, halo, info.pool))


def plan_tiles(shape: Sequence[int], info: ModelInfo, *, halo: Sequence[int],
               block: int | Sequence[int] | None = None,
               tile: int | Sequence[int] | None = None, batch: int | None = None,
               budget_bytes: float = MEMORY_BUDGET, timepoints: int = 1) -> TilePlan:
    """Plan the prediction of one ``shape`` volume per time point.

    The block (default :data:`DEFAULT_BLOCK`) is clipped to the volume.  Unless given,
    the tile is the cheapest that fits ``budget_bytes`` of activations and the model's
    ``max_call_voxels`` (:func:`chunkseg.ops.tiling.choose_tile`) and the batch as many
    tiles as fit both (:func:`chunkseg.ops.tiling.choose_batch`), at most the tiles of
    one block: a network call never mixes blocks or time points.  A given tile is
    clipped to one haloed block; a tile x batch above ``max_call_voxels`` is refused.
    Tiny blocks of a series are predicted ``group`` time points per task
    (:func:`group_timepoints`).

    Returns
    -------
    TilePlan

    Raises
    ------
    ParameterError
        A halo larger than the block on an axis split into several blocks
        (:func:`chunkseg.engine.predict.check_halo`); tile x batch above the model's
        ``max_call_voxels``.
    """
    block_ = tuple(min(b, s) for b, s in zip(as_triple(block or DEFAULT_BLOCK, "block"), shape))
    check_halo(halo, block_, shape)  # before any work, whatever the block came from
    halo = clip_halo(halo, block_, shape)
    tile_ = _tile_for(block_, tile, halo, info, budget_bytes)
    stats = tile_stats(shape, block=block_, halo=halo, tile=tile_, pool=info.pool,
                       receptive=info.receptive)
    if batch is None:
        batch = choose_batch(tile_, n_tiles=stats["block_tiles"],
                             bytes_per_voxel=info.bytes_per_voxel, budget_bytes=budget_bytes,
                             max_voxels=info.max_call_voxels)
    if int(batch) * math.prod(tile_) > info.max_call_voxels:
        raise ParameterError(
            f"--tile {list(tile_)} x --batch {batch} = {int(batch) * math.prod(tile_):,} voxels "
            f"per network call; model {str(info.path)!r} takes at most "
            f"{info.max_call_voxels:,} (TensorFlow's CPU convolutions abort above about "
            f"2**31 / (18 x {info.config.base_filters} filters)): use a smaller tile or batch")
    blocks = math.prod(-(-int(s) // b) for s, b in zip(shape, block_))
    return TilePlan(shape=tuple(int(s) for s in shape), block=block_, halo=halo, tile=tile_,
                    batch=int(batch), stats=stats,
                    group=group_timepoints(stats, blocks, timepoints))


def resolve_halo(halo: Any, receptive: tuple[int, int, int]) -> tuple[int, int, int]:
    """``--halo``: voxels (int, 3 ints or their string) or "auto" = ``receptive``."""
    if isinstance(halo, str):
        if halo.strip().lower() == "auto":
            return tuple(receptive)
        try:
            halo = int(halo)
        except ValueError:
            raise ParameterError(f"halo must be 'auto' or voxels >= 0; got {halo!r}") from None
    return as_triple(halo, "halo", minimum=0)


@dataclass(frozen=True)
class UNetScorer:
    """A U-Net run as a probability scorer: ``scorer(x)`` is the lazy probability.

    Attributes
    ----------
    info : ModelInfo
    plan : TilePlan
    halo : 3 ints
    blend : str
    budget_bytes : float
        The activation memory the plan was made for.
    precision : {"float32", "bfloat16"}
        Network compute precision (:mod:`chunkseg.model.precision`).
    resampling : dict, optional
        How the input meets the model's voxel size (``factor``: model / input voxel
        size per axis, or None to predict as it is; see
        :func:`chunkseg.pipeline._predict_resample.resample_plan`).  With a factor each
        block is predicted by :func:`chunkseg.engine.resample_predict.predict_array_resampled`
        and ``halo`` counts model voxels.

    The backend's thread count is the worker's (``TF_NUM_INTRAOP_THREADS`` of a
    cluster opened with ``layout="model"``, see :class:`~chunkseg.engine.predict.ModelSpec`).
    """

    info: ModelInfo
    plan: TilePlan
    halo: tuple[int, int, int]
    blend: BlendMode = "gaussian"
    budget_bytes: float = MEMORY_BUDGET
    precision: str = "float32"
    resampling: dict[str, Any] | None = None

    name = "unet"

    @property
    def group(self) -> int:
        """Time points per predict task (1 when resampling: per time point there)."""
        return 1 if self.factor else self.plan.group

    @property
    def factor(self) -> tuple[float, float, float] | None:
        """Zoom factors to the model's voxel size, or None (no resampling)."""
        factor = (self.resampling or {}).get("factor")
        return tuple(factor) if factor else None

    @property
    def normalization(self) -> dict[str, Any] | None:
        """The intensity range stored with the model."""
        return self.info.normalization

    def settings(self) -> dict[str, Any]:
        """What the output depends on, besides the input, model, dtype and time points."""
        return dict(halo=list(self.halo), block=list(self.plan.block),
                    tile=list(self.plan.tile), blend=self.blend, batch_independent=True,
                    resample=list(self.factor) if self.factor else None,
                    precision=self.precision)

    def attrs(self) -> dict[str, Any]:
        """Output attributes naming the model."""
        return {"model": self.info.path, "model_sha256": self.info.sha256}

    def summary(self, timepoints: int = 1) -> dict[str, Any]:
        """Run-summary entries of the method for ``timepoints`` time points."""
        info, plan = self.info, self.plan
        voxels = plan.stats["tile_voxels"]
        return {
            "model": info.path, "halo": list(self.halo), "receptive_field": list(info.receptive),
            "seam_free": all(h >= r for h, r in zip(self.halo, info.receptive)),
            "block": list(plan.block), "tile": list(plan.tile), "batch": plan.batch,
            "group": self.group,
            "tiles": plan.stats["tiles"] * timepoints,
            "memory_gib": round(self.budget_bytes / 2**30, 2),
            "tile_voxels": voxels * timepoints,
            "redundancy": round(voxels / math.prod(plan.shape), 3), "blend": self.blend,
            "precision": self.precision,
            "resample": {**(self.resampling or {}), "input_halo": list(
                resampled_halo(self.halo, self.factor)) if self.factor else None},
        }

    def warm(self, client: Any) -> list[Any]:
        """Start loading the model on every worker of ``client`` (None: nothing to do).

        Importing the backend and loading the model take seconds of one core per
        worker; started here they overlap the work before the first block (the input's
        intensity histogram).  Returns the futures: hold them until the blocks are
        submitted.
        """
        if client is None:
            return []
        load = ModelSpec(self.info.path, precision=self.precision).load
        return [client.submit(load, workers=[w], allow_other_workers=False, pure=False)
                for w in client.scheduler_info()["workers"]]

    def __call__(self, x: da.Array,
                 intensity_range: tuple[float, float] | None = None) -> da.Array:
        """float32 probability of a (t, z, y, x) array, scaled to uint8 by
        :func:`chunkseg.ops.normalize.scale_to_uint8` with ``intensity_range`` when given
        (uint8 inputs are read as v / 255)."""
        spec = ModelSpec(self.info.path, precision=self.precision)
        uint8 = intensity_range is not None or x.dtype == "uint8"
        kw = dict(tile=self.plan.tile, pool=self.info.pool, receptive=self.info.receptive,
                  blend=self.blend, batch=self.plan.batch, scale=1 / 255 if uint8 else 1.0)
        if self.factor:
            x = scale_array(x, intensity_range)
            return da.stack([predict_array_resampled(x[i], spec, factor=self.factor,
                                                     block=self.plan.block, context=self.halo,
                                                     **kw) for i in range(x.shape[0])])
        return predict_array(x, spec, block=self.plan.block, halo=self.halo, group=self.group,
                             intensity_range=intensity_range, **kw)
