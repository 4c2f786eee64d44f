"""Planning helpers of ``chunkseg predict``: model facts, time points, range, layout.

Kept apart from :mod:`chunkseg.pipeline.predict` (which re-exports them) so that the
run function stays readable; ``run_acme`` and ``evaluate``/``segment`` reuse them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.errors import ModelError, ParameterError
from chunkseg.ops.normalize import DEFAULT_PERCENTILES
from chunkseg.ops.tiling import as_triple, choose_batch, choose_tile

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_PERCENTILES",
    "MEMORY_BUDGET",
    "ModelInfo",
    "OUTPUT_DTYPES",
    "PREDICT_METHODS",
    "memory_budget",
    "mask_path_for",
    "model_info",
    "parse_timepoints",
    "plan_tiles",
    "resolve_halo",
]

#: output block (= shard, = dask task) shape when none is given; clipped to the volume
DEFAULT_BLOCK = (128, 256, 256)
#: output dtypes of the probability
OUTPUT_DTYPES = ("uint8", "float16", "float32")
#: ``method`` values: the U-Net, or the ACME-style classical baseline
PREDICT_METHODS = ("unet", "acme")
#: activation memory per model call where the machine's memory is unknown (remote
#: cluster, GPU) -- the floor of :func:`memory_budget`
MEMORY_BUDGET = 1 << 30
#: share of the machine's physical memory one worker's network call may use by default
MEMORY_FRACTION = 0.25
#: ceiling of the default budget (beyond it the tile covers a default block anyway)
MEMORY_CEILING = 16 << 30


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs from a model's metadata (see :func:`model_info`)."""

    path: str
    sha256: str
    config: Any
    pool: tuple[int, int, int]
    receptive: tuple[int, int, int]
    flops_per_voxel: float
    bytes_per_voxel: float
    max_call_voxels: int
    normalization: dict[str, Any] | None
    metadata: dict[str, Any]


def model_info(model: str | os.PathLike = "default") -> ModelInfo:
    """Resolve a model and read what prediction needs, without loading TensorFlow.

    Returns
    -------
    ModelInfo
        ``path``, ``sha256``, ``pool``, ``receptive``, ``flops_per_voxel``,
        ``bytes_per_voxel`` (activation memory estimate), ``max_call_voxels`` (the most
        input voxels one network call may take), ``normalization``, ``metadata``.

    Raises
    ------
    ModelError
        Missing file, not a Keras archive, or no chunkseg model configuration.
    """
    from chunkseg.model import (
        UNetConfig,
        flops_per_voxel,
        pooling_factor,
        read_metadata,
        receptive_field,
        resolve_model,
    )

    path = resolve_model(model)
    meta = read_metadata(path)
    if not isinstance(meta.get("config"), dict):
        raise ModelError(f"model file {str(path)!r}: expected chunkseg metadata with a U-Net "
                         f"'config'; found keys {sorted(meta)}")
    try:
        config = UNetConfig.from_dict(meta["config"])
    except ParameterError as exc:
        raise ModelError(f"model file {str(path)!r}: bad U-Net configuration: {exc}") from None
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    # peak RSS growth of one network call (predict_on_batch), measured with TensorFlow
    # CPU for the default depth-3 base-8 model: 140-190 B per input voxel for tiles of
    # 1-11 M voxels (about 4.5 float32 maps of base_filters alive at full resolution)
    bytes_per_voxel = 4.0 * 5 * config.base_filters
    # TensorFlow CPU (oneDNN) aborts the whole process with std::bad_alloc once a call's
    # input reaches about 2**31 / (18 x base_filters) voxels (base 8: 14.6 M voxels ran,
    # 15.7 M aborted): an int32 element count inside a convolution.  Stay 20 % below.
    max_call_voxels = int(0.8 * 2**31 / (18 * config.base_filters))
    return ModelInfo(path=str(path), sha256=sha, config=config, pool=pooling_factor(config),
                     receptive=receptive_field(config), flops_per_voxel=flops_per_voxel(config),
                     bytes_per_voxel=bytes_per_voxel, max_call_voxels=max_call_voxels,
                     normalization=meta.get("normalization"),
                     metadata=meta)


def memory_budget(memory_gib: float | None = None, *, scheduler: str | None = "threads",
                  client: Any = None, workers: int | None = None) -> float:
    """Activation memory (bytes) one network call may use in a ``run_predict`` run.

    ``memory_gib`` (``--memory``) when given.  Otherwise a quarter of this machine's
    physical memory (:data:`MEMORY_FRACTION`) shared by the worker processes that run
    the model at once (each admits one call at a time; ``workers`` of the LocalCluster
    when ``scheduler`` is None, else one process), between :data:`MEMORY_BUDGET`
    (1 GiB) and :data:`MEMORY_CEILING` (16 GiB).  Total, not available, memory: the
    plan (tile, hence the resume fingerprint) must not change with the momentary load.
    A remote ``scheduler``, a given ``client`` or GPUs (device memory is not host
    memory) get the 1 GiB floor.

    Examples
    --------
    >>> memory_budget(2.0) == 2 * 2**30
    True
    >>> memory_budget() >= 1 << 30
    True
    """
    if memory_gib is not None:
        if not memory_gib > 0:
            raise ParameterError(f"memory_gib must be > 0; got {memory_gib!r}")
        return float(memory_gib) * 2**30
    local = client is None and scheduler in (None, "threads", "sync")
    if not local or count_gpus():
        return float(MEMORY_BUDGET)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return float(MEMORY_BUDGET)
    processes = (workers or 1) if scheduler is None else 1
    share = total * MEMORY_FRACTION / max(1, int(processes))
    return float(min(MEMORY_CEILING, max(MEMORY_BUDGET, share)))


def plan_tiles(shape: Sequence[int], info: ModelInfo, *, halo: Sequence[int],
               block: int | Sequence[int] | None = None,
               tile: int | Sequence[int] | None = None, batch: int | None = None,
               budget_bytes: float = MEMORY_BUDGET, timepoints: int = 1) -> dict[str, Any]:
    """Block, tile and batch of a prediction of one ``shape`` volume per time point.

    The block (default :data:`DEFAULT_BLOCK`) is clipped to the volume.  Unless given,
    the tile is the cheapest that fits ``budget_bytes`` of activations and the model's
    ``max_call_voxels`` (:func:`chunkseg.ops.tiling.choose_tile`) and the batch as many
    tiles as fit both (:func:`chunkseg.ops.tiling.choose_batch`).  A given tile is
    clipped to one haloed block; a tile x batch above ``max_call_voxels`` is refused.

    Returns
    -------
    dict
        ``block``, ``tile``, ``batch`` and ``stats``
        (:func:`chunkseg.engine.predict.tile_stats` of one time point).
    """
    from chunkseg.engine.predict import tile_stats

    block_ = tuple(min(b, s) for b, s in zip(as_triple(block or DEFAULT_BLOCK, "block"), shape))
    if tile is None:
        tile_ = choose_tile(block_, halo=halo, pool=info.pool,
                            context=[min(h, r) for h, r in zip(halo, info.receptive)],
                            bytes_per_voxel=info.bytes_per_voxel, budget_bytes=budget_bytes,
                            max_voxels=info.max_call_voxels)
    else:  # never larger than a haloed block (tile_grid would shrink it anyway)
        tile_ = tuple(t if t % p else min(t, -(-(b + 2 * h + p - 1) // p) * p)
                      for t, b, h, p in zip(as_triple(tile, "tile"), block_, halo, info.pool))
    stats = tile_stats(shape, block=block_, halo=halo, tile=tile_, pool=info.pool,
                       receptive=info.receptive)
    if batch is None:
        batch = choose_batch(tile_, n_tiles=stats["tiles"] * timepoints,
                             bytes_per_voxel=info.bytes_per_voxel, budget_bytes=budget_bytes,
                             max_voxels=info.max_call_voxels)
    if int(batch) * math.prod(tile_) > info.max_call_voxels:
        raise ParameterError(
            f"--tile {list(tile_)} x --batch {batch} = {int(batch) * math.prod(tile_):,} voxels "
            f"per network call; model {str(info.path)!r} takes at most "
            f"{info.max_call_voxels:,} (TensorFlow's CPU convolutions abort above about "
            f"2**31 / (18 x {info.config.base_filters} filters)): use a smaller tile or batch")
    return {"block": block_, "tile": tile_, "batch": int(batch), "stats": stats}


def parse_timepoints(spec: Any, n: int) -> tuple[int, int]:
    """``"A:B"``, ``"A"``, ``(A, B)`` or None -> a half-open range inside ``[0, n)``."""
    if spec is None:
        return 0, n
    try:
        if isinstance(spec, str):
            parts = spec.split(":")
            if len(parts) == 1:
                a = int(parts[0])
                a, b = a, a + 1
            elif len(parts) == 2:
                a = int(parts[0]) if parts[0].strip() else 0
                b = int(parts[1]) if parts[1].strip() else n
            else:
                raise ValueError
        elif isinstance(spec, int):
            a, b = spec, spec + 1
        else:
            a, b = (int(v) for v in spec)
    except (TypeError, ValueError):
        raise ParameterError(f"timepoints must look like A:B (e.g. 0:10); got {spec!r}") from None
    if not 0 <= a < b <= n:
        raise ParameterError(f"timepoints {a}:{b} must satisfy 0 <= A < B <= {n} "
                             f"(the input has {n} time points)")
    return a, b


def mask_path_for(out: str | os.PathLike) -> Path:
    """Where ``--threshold`` writes its mask: ``prob.ome.zarr`` -> ``prob_mask.ome.zarr``."""
    out = Path(out)
    for suffix in (".ome.zarr", ".zarr"):
        if out.name.endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + "_mask" + suffix)
    return out.with_name(out.name + "_mask")


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


def _chunks_for(block: Sequence[int]) -> tuple[int, ...]:
    """Zarr chunks dividing the block (the shard): near 32 x 256 x 256."""
    out = []
    for b, want in zip(block, (32, 256, 256)):
        c = max(d for d in range(1, min(b, want) + 1) if b % d == 0)
        out.append(c if c * 4 >= min(b, want) else b)
    return tuple(out)


def _input_range(vol, info: ModelInfo, client: Any) -> dict[str, Any] | None:
    """The intensity range for ``scale_to_uint8`` (None: input already 8-bit normalised)."""
    attrs = vol.attrs or {}
    if attrs.get("kind") == "normalized" and vol.dtype == np.uint8:
        return None
    for source, norm in (("input", attrs.get("normalization")), ("model", info.normalization)):
        if isinstance(norm, dict) and "low" in norm and "high" in norm:
            return {"low": float(norm["low"]), "high": float(norm["high"]), "source": source,
                    "method": norm.get("method", "stored")}
    from chunkseg.engine.stats import intensity_histogram
    from chunkseg.ops.robust_range import model_percentiles, range_from_histogram

    ps, nonzero = model_percentiles(info.normalization)
    h = intensity_histogram(vol.data, client=client)
    low, high = range_from_histogram(h.hist, ps, ignore_zero=nonzero)
    return {"low": low, "high": high, "source": "computed",
            "method": f"percentiles {list(ps)} of the {'non-zero ' if nonzero else ''}voxels "
                      f"({h.method})"}


def _to_dtype(p: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.floor(np.clip(p, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return p.astype(dtype, copy=False)


def _threshold(block: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    return (block.astype(np.float32) * np.float32(scale) >= threshold).astype(np.uint8)


def _fingerprint(**items: Any) -> str:
    text = json.dumps(items, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def count_gpus() -> int:
    """NVIDIA GPUs visible to this process (``nvidia-smi -L``; 0 without a driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    n = _nvidia_smi_gpus()
    if visible:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return n


@functools.lru_cache(maxsize=1)
def _nvidia_smi_gpus() -> int:
    """GPUs ``nvidia-smi -L`` lists, asked once per process."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _layout(scheduler, workers, threads_per_worker) -> tuple[int | None, int | None, int | None]:
    """LocalCluster workers/threads and TensorFlow threads per worker.

    Default: one worker (one per GPU when there are GPUs) with two dask threads, and
    TensorFlow's intra-op pool on the worker's share of the cores.
    """
    if scheduler is not None:
        return workers, threads_per_worker, None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = workers or max(1, count_gpus())  # one worker per GPU
    tf_threads = max(1, (cores or 1) // workers)
    # two dask threads: one in the model (the per-model lock admits one call), one reading
    # and preparing the next block meanwhile; more would only hold more blocks in memory
    return workers, threads_per_worker or 2, tf_threads


def _workers(client: Any) -> tuple[int, int]:
    if client is None:
        return 1, os.cpu_count() or 1
    info = client.scheduler_info()["workers"]
    return len(info), sum(int(w.get("nthreads", 0)) for w in info.values())
