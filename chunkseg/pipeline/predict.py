"""``chunkseg predict``: membrane probability of a whole time series, chunk by chunk.

Plan of a run (:func:`run_predict`):

1. open the input lazily (OME-Zarr, Zarr or TIFF), read the model's metadata (no
   TensorFlow in the client): pooling factor, receptive field, width;
2. resolve ``halo`` ("auto" = receptive-field radius), block (= output shard), tile
   and batch (both from a memory budget for activations);
3. the intensity range: the input's stored ``normalization``, else the model's, else
   exact percentiles of the input (one streaming pass, recorded in the output);
4. per time point :func:`chunkseg.engine.predict.predict_array` (halo by
   ``map_overlap``, tiles inside), written shard by shard by
   :func:`chunkseg.engine.blocks.write_volume` (progress bar, resumable);
5. ``--threshold``: a binary mask store from the written probability;
6. a JSON-able summary (voxels, seconds, voxels/s, halo, tiles, workers, ...).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError
from chunkseg.ops.tiling import BLEND_MODES
from chunkseg.pipeline.predict_plan import (  # noqa: F401  (re-exported)
    DEFAULT_BLOCK,
    DEFAULT_PERCENTILES,
    MEMORY_BUDGET,
    OUTPUT_DTYPES,
    PREDICT_METHODS,
    ModelInfo,
    _chunks_for,
    _fingerprint,
    _input_range,
    _layout,
    _threshold,
    _to_dtype,
    _workers,
    memory_budget,
    mask_path_for,
    model_info,
    parse_timepoints,
    plan_tiles,
    resolve_halo,
)

__all__ = [
    "DEFAULT_BLOCK",
    "DEFAULT_PERCENTILES",
    "MEMORY_BUDGET",
    "ModelInfo",
    "OUTPUT_DTYPES",
    "PREDICT_METHODS",
    "mask_path_for",
    "model_info",
    "parse_timepoints",
    "run_predict",
    "write_threshold_mask",
]


def _time_frame(p: np.ndarray, dtype: str) -> np.ndarray:
    """A predicted block in the output dtype, with a leading time axis."""
    return _to_dtype(p, dtype)[None]


def write_threshold_mask(
    prob_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    threshold: float,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> str:
    """Write the binary mask ``p >= threshold`` of a probability store (same grid).

    uint8 probabilities are read as ``v / 255``.  Returns the mask path.
    """
    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete, open_array, open_volume

    if not 0.0 <= float(threshold) <= 1.0:
        raise ParameterError(f"threshold must be in [0, 1]; got {threshold!r}")
    prob = open_volume(prob_path)
    arr = open_array(prob_path)
    scale = 1 / 255 if prob.dtype == np.uint8 else 1.0
    create_image(out, shape=prob.shape, dtype="uint8", voxel_size=prob.voxel_size,
                 chunks=arr.chunks, shards=arr.shards or arr.chunks,
                 attrs={"kind": "mask", "source": [str(prob_path)], "threshold": float(threshold),
                        "fingerprint": _fingerprint(p=prob.attrs.get("fingerprint"),
                                                    t=float(threshold))},
                 overwrite=overwrite, resume=resume)
    data = prob.data.map_blocks(_threshold, float(threshold), scale, dtype=np.uint8)
    write_volume(data, out, client=client, resume=resume, progress=progress, desc="threshold")
    mark_complete(out, threshold=float(threshold))
    return str(out)


def run_predict(
    in_path: str | os.PathLike,
    *,
    model: str | os.PathLike = "default",
    out: str | os.PathLike,
    halo: int | str | Sequence[int] = 10,
    block: int | Sequence[int] | None = None,
    tile: int | Sequence[int] | None = None,
    batch: int | None = None,
    blend: str = "gaussian",
    dtype: str = "float32",
    timepoints: Any = None,
    threshold: float | None = None,
    mask_out: str | os.PathLike | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    connect_timeout: float = 10.0,
    progress: bool = True,
    method: str = "unet",
    client: Any = None,
    memory_gib: float | None = None,
    dashboard_address: str | None = None,
) -> dict[str, Any]:
    """Predict the membrane probability of a volume / time series.

    Parameters
    ----------
    in_path : path
        OME-Zarr / Zarr (t, z, y, x) or (z, y, x), or a TIFF file.
    model : path or "default"
        A chunkseg ``.keras`` model.
    out : path
        Output OME-Zarr probability image (same voxel size, selected time points).
    halo : int, 3 ints or "auto"
        Context voxels around each block; "auto" = the model's receptive-field radius,
        which makes the result equal to a whole-volume pass (seam-free).
    block : int or 3 ints, optional
        Output block = shard = one task (default :data:`DEFAULT_BLOCK`, clipped).
    tile : int or 3 ints, optional
        Network input shape, a multiple of the model's pooling factor (default: the
        tile spending the fewest network voxels per block that fits ``memory_gib``).
    batch : int, optional
        Tiles per network call (default: as many as fit ``memory_gib``; 1 when the
        tile alone fills it).
    blend : {"gaussian", "linear", "none"}
        Weights of overlapping tile outputs (used when ``halo`` < receptive field).
    dtype : {"float32", "float16", "uint8"}
        Output dtype (uint8 stores round(255 p)).
    timepoints : "A:B", optional
        Predict only these time points (the output holds just them).
    threshold : float, optional
        Also write a binary mask ``p >= threshold`` (to ``mask_out``).
    mask_out : path, optional
        Mask store (default :func:`mask_path_for`).
    scheduler : str, optional
        None: a LocalCluster sized to the machine; "threads"/"sync": no cluster;
        "tcp://host:port": an existing dask cluster.
    workers, threads_per_worker : int, optional
        LocalCluster layout (default one worker, TensorFlow on all cores).
    resume, overwrite : bool
        Continue an interrupted run / replace an existing output.
    connect_timeout : float
        Seconds to wait for a remote scheduler.
    progress : bool
        Show a progress bar over blocks.
    method : {"unet", "acme"}
        ``"acme"``: the classical ACME-style filter baseline instead of the network
        (:func:`chunkseg.baseline.run_acme`; ``model``, ``halo``, ``tile``, ``batch``,
        ``blend`` and ``threshold`` do not apply).
    client : distributed.Client, optional
        Run on this existing client (``scheduler``/``workers`` are then ignored).
    memory_gib : float, optional
        Activation memory of one network call (GiB); the default tile and batch are the
        cheapest that fit it (:func:`chunkseg.ops.tiling.choose_tile`).  Default
        (:func:`memory_budget`): a quarter of this machine's RAM per worker
        process (1 GiB to 16 GiB) for the threads scheduler or a LocalCluster on CPU;
        1 GiB with GPUs, a remote ``scheduler`` or a given ``client``.
    dashboard_address : str, optional
        Where a LocalCluster started here serves the dask dashboard (``":8787"``).

    Returns
    -------
    dict
        The run summary (also stored in the output's attributes).

    Raises
    ------
    InputNotFoundError, FormatError, ShapeError
        Bad input.
    ModelError
        Model missing or not a chunkseg model.
    ParameterError
        Halo larger than block, tile not a multiple of the pooling factor, bad dtype,
        blend or time points.
    OutputExistsError
        Output exists without ``overwrite`` / ``resume``.
    ClusterError
        Scheduler unreachable within ``connect_timeout``.
    """
    import dask.array as da
    from dask.base import tokenize

    from chunkseg.engine.blocks import Series, write_volume
    from chunkseg.engine.cluster import dashboard_url, get_client
    from chunkseg.engine.predict import ModelSpec, predict_array
    from chunkseg.io.store import create_image, mark_complete, open_volume
    from chunkseg.ops.normalize import scale_to_uint8

    if method not in PREDICT_METHODS:
        raise ParameterError(f"method must be one of {PREDICT_METHODS}; got {method!r}")
    if method == "acme":
        if threshold is not None:
            raise ParameterError("threshold is not available with method 'acme'; threshold "
                                 "its output with 'chunkseg segment' or a second pass")
        from chunkseg.baseline import run_acme

        return run_acme(in_path, out=out, block=block, dtype=dtype, timepoints=timepoints,
                        scheduler=scheduler, workers=workers,
                        threads_per_worker=threads_per_worker, resume=resume,
                        overwrite=overwrite, connect_timeout=connect_timeout, progress=progress)
    t_start = time.perf_counter()
    vol = open_volume(in_path)
    info = model_info(model)
    if dtype not in OUTPUT_DTYPES:
        raise ParameterError(f"dtype must be one of {OUTPUT_DTYPES}; got {dtype!r}")
    if blend not in BLEND_MODES:
        raise ParameterError(f"blend must be one of {BLEND_MODES}; got {blend!r}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ParameterError(f"threshold must be in [0, 1]; got {threshold!r}")
    t0, t1 = parse_timepoints(timepoints, vol.shape[0])
    shape = tuple(vol.shape[1:])
    halo_ = resolve_halo(halo, info.receptive)
    l_workers, l_threads, tf_threads = _layout(scheduler, workers, threads_per_worker)
    budget = memory_budget(memory_gib, scheduler=scheduler, client=client, workers=l_workers)
    plan = plan_tiles(shape, info, halo=halo_, block=block, tile=tile, batch=batch,
                      budget_bytes=budget, timepoints=t1 - t0)
    block_, tile_, batch, stats = plan["block"], plan["tile"], plan["batch"], plan["stats"]
    out = Path(out)
    mask_out = Path(mask_out) if mask_out is not None else mask_path_for(out)
    params = dict(halo=list(halo_), block=list(block_), tile=list(tile_), blend=blend,
                  dtype=dtype, timepoints=[t0, t1], batch_independent=True)
    env = {"TF_NUM_INTRAOP_THREADS": str(tf_threads), "TF_NUM_INTEROP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"} if tf_threads else None
    if client is not None:
        l_workers = l_threads = tf_threads = None
        session = contextlib.nullcontext(client)
    else:
        session = get_client(scheduler, workers=l_workers, threads_per_worker=l_threads,
                             timeout=connect_timeout, worker_env=env,
                             dashboard_address=dashboard_address)
    with session as client:
        norm = _input_range(vol, info, client)
        fingerprint = _fingerprint(input=str(Path(in_path).resolve()), shape=vol.shape,
                                   in_dtype=str(vol.dtype), model=info.sha256, norm=norm,
                                   **params)
        attrs = {"kind": "probability", "source": [str(in_path)], "model": info.path,
                 "model_sha256": info.sha256, "normalization": norm, "fingerprint": fingerprint,
                 "predict": params, "scale": 1 / 255 if dtype == "uint8" else 1.0}
        nt = t1 - t0
        create_image(out, shape=(nt, *shape), dtype=dtype, voxel_size=vol.voxel_size,
                     chunks=(1, *_chunks_for(block_)), shards=(1, *block_), attrs=attrs,
                     overwrite=overwrite, resume=resume)
        spec = ModelSpec(info.path, threads=tf_threads)

        def frame(t: int) -> da.Array:  # one time point's graph, built when submitted
            x = vol.data[t]
            if norm is not None:
                x = x.map_blocks(scale_to_uint8, norm["low"], norm["high"], dtype=np.uint8)
            p = predict_array(x, spec, block=block_, halo=halo_, tile=tile_, pool=info.pool,
                              receptive=info.receptive, blend=blend, batch=batch,
                              scale=1 / 255 if x.dtype == np.uint8 else 1.0)
            # one task per block, named for the dashboard: predict-network-t0042-...
            return p.map_blocks(_time_frame, dtype, new_axis=0, chunks=((1,), *p.chunks),
                                dtype=np.dtype(dtype),
                                name=f"predict-network-t{t:04d}-{tokenize(p.name, dtype)}")

        def frames(a: int, b: int) -> da.Array:
            parts = [frame(t) for t in range(t0 + a, t0 + b)]
            return parts[0] if len(parts) == 1 else da.concatenate(parts)

        t_predict = time.perf_counter()
        report = write_volume(Series((nt, *shape), np.dtype(dtype), frames), out,
                              client=client, resume=resume, progress=progress, desc="predict")
        predict_seconds = time.perf_counter() - t_predict
        n_workers, n_threads = _workers(client)
        voxels = int(nt * math.prod(shape))
        summary = {
            "input": str(in_path), "out": str(out), "model": info.path, "voxels": voxels,
            "seconds": round(time.perf_counter() - t_start, 3),
            "predict_seconds": round(predict_seconds, 3),
            "voxels_per_s": round(voxels / max(predict_seconds, 1e-9), 1),
            "halo": list(halo_), "receptive_field": list(info.receptive),
            "seam_free": all(h >= r for h, r in zip(halo_, info.receptive)),
            "block": list(block_), "tile": list(tile_), "batch": int(batch),
            "tiles": stats["tiles"] * nt,
            "memory_gib": round(budget / 2**30, 2),
            "tile_voxels": stats["tile_voxels"] * nt,
            "redundancy": round(stats["tile_voxels"] / math.prod(shape), 3),
            "blocks": report.n_blocks, "blocks_written": report.written,
            "blocks_skipped": report.skipped, "timepoints": [t0, t1], "dtype": dtype,
            "blend": blend, "workers": n_workers, "threads": n_threads,
            "tf_threads": tf_threads, "dashboard": dashboard_url(client) if client else None,
            "normalization": norm,
        }
        mark_complete(out, summary=summary)
        if threshold is not None:
            write_threshold_mask(out, out=mask_out, threshold=float(threshold), client=client,
                                 resume=resume, overwrite=overwrite, progress=progress)
            summary["mask"] = str(mask_out)
            summary["threshold"] = float(threshold)
    summary["seconds"] = round(time.perf_counter() - t_start, 3)
    return summary
