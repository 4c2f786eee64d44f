"""``chunkseg plan``: what a prediction run will cost, before it runs (no data needed).

For a real input (only its shape and dtype are read) or a described one
(``shape=(T, Z, Y, X)``), :func:`plan_run` resolves exactly what ``chunkseg predict``
would: the halo (:func:`~chunkseg.engine.plan.resolve_halo`), block, tile and
batch (:func:`~chunkseg.engine.plan.plan_tiles`, which counts the tiles and
network voxels of one time point with :func:`chunkseg.engine.predict.tile_stats`), and
multiplies by the number of time points -- nothing is enumerated per block, so a 10 TB
series is planned in milliseconds.  It reports blocks, tasks, network voxels (halo and
tile context included), memory per worker, and the expected time for ``workers``
workers from the throughput calibrated on a reference machine
(:data:`CALIBRATION`, ``chunkseg/models/default_throughput.json``: when and how it was
measured is stored in it), and how many workers reach ``target_hours``.

Time model: ``network_voxels / (v * workers) + blocks * overhead / workers`` with ``v``
the calibrated network-input voxels per second of one worker and ``overhead`` the
calibrated per-block cost outside the network (read, write, scheduling).  GPUs: give
the throughput of one GPU worker as ``voxels_per_s`` (this calibration is CPU-only).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.engine.cluster import memory_budget
from chunkseg.engine.memory import TRIM_THRESHOLD
from chunkseg.engine.plan import TilePlan, block_bytes, plan_tiles, resolve_halo
from chunkseg.errors import ParameterError
from chunkseg.model.info import ModelInfo, model_info

__all__ = ["CALIBRATION", "format_plan", "load_calibration", "plan_run"]

#: calibration of the packaged default model's throughput (see the module docstring)
CALIBRATION = Path(__file__).resolve().parent.parent / "models" / "default_throughput.json"


def load_calibration(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The calibration JSON (default :data:`CALIBRATION`)."""
    return json.loads(Path(path or CALIBRATION).read_text())


def _shape_of(in_path, shape, dtype) -> tuple[tuple[int, ...], np.dtype, str]:
    if (in_path is None) == (shape is None):
        raise ParameterError("plan needs either an input path or --shape T Z Y X; got "
                             + ("both" if shape is not None else "neither"))
    if in_path is not None:
        from chunkseg.io.store import open_volume

        vol = open_volume(in_path, verify=False)
        return tuple(vol.shape), np.dtype(vol.dtype), str(in_path)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ParameterError(f"shape must be 4 positive ints (T Z Y X); got {list(shape)}")
    return shape, np.dtype(dtype), "described"


def _memory(info: ModelInfo, plan: TilePlan, halo, budget: float, threads: int,
            in_itemsize: int, runtime: float) -> dict[str, float]:
    """Peak bytes of one worker: runtime + one network call + blocks held by its threads
    + the free memory its allocator may keep.

    A network call takes at most ``batch`` tiles of one block of one time point. Each
    thread holds one block task (:func:`chunkseg.engine.plan.block_bytes`: the haloed
    block read, scaled, padded, the sums of the tile blend, its float32 prediction;
    ``group`` of each when a task predicts several time points).  A worker with
    chunkseg's allocator settings keeps up to
    :data:`chunkseg.engine.memory.TRIM_THRESHOLD` of freed memory for the next block.
    """
    per_block = block_bytes(plan.block, halo, itemsize=in_itemsize, group=plan.group)
    tiles = min(plan.batch, plan.stats["block_tiles"])
    calls = min(budget, tiles * math.prod(plan.tile) * info.bytes_per_voxel)
    parts = {"runtime_gib": runtime, "network_call_gib": calls,
             "blocks_gib": threads * per_block, "allocator_gib": TRIM_THRESHOLD}
    out = {k: round(v / 2**30, 2) for k, v in parts.items()}
    out["total_gib"] = round(sum(parts.values()) / 2**30, 2)
    return out


def plan_run(
    in_path: str | os.PathLike | None = None,
    *,
    shape: Sequence[int] | None = None,
    dtype: str = "uint16",
    model: str | os.PathLike = "default",
    halo: int | str | Sequence[int] = 10,
    block: int | Sequence[int] | None = None,
    tile: int | Sequence[int] | None = None,
    batch: int | None = None,
    memory_gib: float | None = None,
    workers: int = 1,
    threads_per_worker: int = 2,
    voxels_per_s: float | None = None,
    target_hours: float | None = None,
    calibration: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Plan a ``chunkseg predict`` run without running it.

    Parameters
    ----------
    in_path : path-like, optional
        A real input (its shape and dtype are read, no voxels).
    shape : 4 ints (T, Z, Y, X), optional
        A described input instead (3 ints: one time point).
    dtype : str
        Voxel dtype of a described input.
    model, halo, block, tile, batch, memory_gib
        As :func:`chunkseg.pipeline.predict.run_predict`.
    workers, threads_per_worker : int
        Cluster layout to plan for.
    voxels_per_s : float, optional
        Network-input voxels per second of one worker (e.g. measured on a GPU);
        default: the calibration's.
    target_hours : float, optional
        Also report the workers needed to finish within this time.
    calibration : path-like, optional
        Another calibration JSON.

    Returns
    -------
    dict
        ``shape``, ``bytes``, ``block``, ``tile``, ``batch``, ``halo``,
        ``blocks``, ``tasks``, ``group`` (time points per predict task), ``graphs``,
        ``network_voxels``, ``redundancy``, ``memory_per_worker``,
        ``voxels_per_s_per_worker``, ``expected_hours``, ``workers_for_target``, ...

    Raises
    ------
    ParameterError
        Neither or both of ``in_path`` and ``shape``; bad counts.
    """
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if int(value) < 1:
            raise ParameterError(f"{name} must be >= 1; got {value}")
    if target_hours is not None and not target_hours > 0:
        raise ParameterError(f"target_hours must be > 0; got {target_hours}")
    shape4, dt, source = _shape_of(in_path, shape, dtype)
    cal = load_calibration(calibration)
    info = model_info(model)
    halo_ = resolve_halo(halo, info.receptive)
    budget = memory_budget(memory_gib)
    tiles = plan_tiles(shape4[1:], info, halo=halo_, block=block, tile=tile, batch=batch,
                       budget_bytes=budget, timepoints=shape4[0])
    halo_ = tiles.halo
    n_t, vol3 = shape4[0], math.prod(shape4[1:])
    per_t = math.prod(math.ceil(s / b) for s, b in zip(shape4[1:], tiles.block))
    blocks, graphs = n_t * per_t, math.ceil(n_t / tiles.group)
    net_voxels = n_t * tiles.stats["tile_voxels"]
    v = float(voxels_per_s or cal["network_voxels_per_s"])
    overhead = float(cal["block_overhead_s"])
    one_worker_s = net_voxels / v + blocks * overhead
    plan = {
        "input": source, "shape": list(shape4), "dtype": dt.name,
        "bytes": int(n_t * vol3 * dt.itemsize), "model": info.path,
        "halo": list(halo_), "receptive_field": list(info.receptive),
        "seam_free": all(h >= r for h, r in zip(halo_, info.receptive)),
        "block": list(tiles.block), "tile": list(tiles.tile), "batch": tiles.batch,
        # a task per block written, a task per block of ``group`` time points predicted
        # (read with halo + network + output dtype, fused)
        "blocks_per_timepoint": per_t, "blocks": blocks, "tasks": blocks + graphs * per_t,
        "group": tiles.group, "graphs": graphs, "tiles": n_t * tiles.stats["tiles"],
        "network_voxels": net_voxels,
        "redundancy": round(tiles.stats["tile_voxels"] / vol3, 3),
        "workers": int(workers), "threads_per_worker": int(threads_per_worker),
        "memory_per_worker": _memory(info, tiles, halo_, budget, threads_per_worker,
                                     dt.itemsize,
                                     float(cal["worker_runtime_bytes"])),
        "voxels_per_s_per_worker": v, "block_overhead_s": overhead,
        "throughput_source": "given" if voxels_per_s else
        f"calibrated {cal['measured'][:10]} on {cal['machine']['cpu']}"
        + (f" ({cal['machine']['cpu_id']})" if "cpu_id" in cal["machine"] else "") + ", "
        f"{cal['machine']['usable_cores']} cores"
        + (", from CPU time: the machine was loaded"
           if cal.get("network", {}).get("estimated_from_cpu_time") else ""),
        "expected_hours": round(one_worker_s / int(workers) / 3600, 4),
    }
    if target_hours is not None:
        plan["target_hours"] = float(target_hours)
        plan["workers_for_target"] = math.ceil(one_worker_s / (float(target_hours) * 3600))
    return plan


def _human(n: float, unit: str = "") -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".rstrip()


def format_plan(plan: dict[str, Any]) -> str:
    """A short human-readable summary of :func:`plan_run`'s result."""
    mem = plan["memory_per_worker"]
    hours = plan["expected_hours"]
    lines = [
        f"input            {plan['input']}: {' x '.join(map(str, plan['shape']))} "
        f"{plan['dtype']} ({_human(plan['bytes'], 'B')})",
        f"block / halo     {plan['block']} / {plan['halo']} (receptive field "
        f"{plan['receptive_field']}, seam-free: {plan['seam_free']})",
        f"tile x batch     {plan['tile']} x {plan['batch']}",
        f"blocks           {plan['blocks']:,} ({plan['blocks_per_timepoint']:,} per time "
        f"point), tasks {plan['tasks']:,}, one graph per "
        + ("time point" if plan["group"] == 1 else f"{plan['group']} time points")
        + f" ({plan['graphs']:,})",
        f"network voxels   {_human(plan['network_voxels'])} (halo and tile context: "
        f"x{plan['redundancy']} the volume)",
        f"memory / worker  {mem['total_gib']} GiB = runtime {mem['runtime_gib']} + network "
        f"call {mem['network_call_gib']} + blocks {mem['blocks_gib']} "
        f"({plan['threads_per_worker']} threads) + kept free {mem['allocator_gib']}",
        f"throughput       {_human(plan['voxels_per_s_per_worker'], 'voxels/s')} per worker "
        f"({plan['throughput_source']}) + {plan['block_overhead_s']} s per block",
        f"expected time    {hours:.3g} h on {plan['workers']} worker(s)"
        + (f" ({hours * 3600:.3g} s)" if hours < 1 / 60 else
           f" ({hours * 60:.3g} min)" if hours < 1 else ""),
    ]
    if "target_hours" in plan:
        lines.append(f"target           {plan['target_hours']} h needs "
                     f"{plan['workers_for_target']:,} worker(s)")
    return "\n".join(lines)
