"""``chunkseg predict``: membrane probability of a whole time series, chunk by chunk.

Plan of a run (:func:`run_predict`):

1. open the input lazily (OME-Zarr, Zarr or TIFF), read the model's metadata (no
   TensorFlow in the client): pooling factor, receptive field, width
   (:func:`chunkseg.model.info.model_info`);
2. resolve ``halo`` ("auto" = receptive-field radius), block (= output shard), tile
   and batch (both from a memory budget for activations) into a frozen plan
   (:func:`chunkseg.engine.plan.plan_tiles`);
3. the intensity range: the input's stored ``normalization``, else the model's, else
   exact percentiles of the input (one streaming pass, recorded in the output);
4. per time point :func:`chunkseg.engine.predict.predict_array` (halo by
   ``map_overlap``, tiles inside), written shard by shard by
   :func:`chunkseg.engine.blocks.write_volume` (progress bar, resumable);
5. ``--threshold``: a binary mask store from the written probability;
6. a JSON-able summary (voxels, seconds, voxels/s, halo, tiles, workers, ...).

Steps 3, 5 and 6 are shared with the classical baseline
(:mod:`chunkseg.pipeline._probability`); ``method="acme"`` runs it instead of the
network.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from chunkseg.engine.acme import AcmeScorer
from chunkseg.engine.cluster import cpu_cores, get_client, memory_budget, model_layout
from chunkseg.engine.plan import UNetScorer, plan_tiles, resolve_halo
from chunkseg.errors import ParameterError
from chunkseg.io.store import Volume, open_volume
from chunkseg.model.info import model_info
from chunkseg.ops.slices import parse_timepoints
from chunkseg.ops.tiling import BLEND_MODES
from chunkseg.pipeline._probability import (
    check_outputs,
    mask_path_for,
    write_probability,
    write_threshold_mask,
)

__all__ = ["PREDICT_METHODS", "mask_path_for", "run_predict", "write_threshold_mask"]

#: ``method`` values: the U-Net, or the ACME-style classical baseline
PREDICT_METHODS = ("unet", "acme")


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
        Output block = shard = one task (default
        :data:`chunkseg.engine.plan.DEFAULT_BLOCK`, clipped).
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
        (:func:`chunkseg.pipeline.acme.run_acme` with its defaults; ``model``,
        ``halo``, ``tile``, ``batch``, ``blend``, ``memory_gib`` and ``threshold`` do
        not apply).
    client : distributed.Client, optional
        Run on this existing client (``scheduler``/``workers`` are then ignored).
    memory_gib : float, optional
        Activation memory of one network call (GiB); the default tile and batch are the
        cheapest that fit it (:func:`chunkseg.ops.tiling.choose_tile`).  Default
        (:func:`chunkseg.engine.cluster.memory_budget`): a quarter of this machine's RAM per worker
        process (1 GiB to 16 GiB) for the threads scheduler or a LocalCluster on CPU;
        1 GiB with GPUs, a remote ``scheduler`` or a given ``client``.

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
    t_start = time.perf_counter()
    _check_options(method, blend, dtype, threshold)
    vol = open_volume(in_path)
    t0, t1 = parse_timepoints(timepoints, vol.shape[0])
    if client is not None:
        session = contextlib.nullcontext(client)
    if method == "acme":
        scorer = AcmeScorer.plan(vol.shape[1:], vol.voxel_size, block=block)
        if client is None and scheduler is None:
            workers, threads_per_worker = workers or cpu_cores(), threads_per_worker or 1
    else:
        layout = model_layout(scheduler, workers, threads_per_worker)
        scorer = _unet_scorer(vol, model, halo=halo, block=block, tile=tile, batch=batch,
                              blend=blend, memory_gib=memory_gib, scheduler=scheduler,
                              client=client, layout=layout, timepoints=t1 - t0)
        workers, threads_per_worker = layout[:2]
    if client is None:
        env = ({"TF_NUM_INTRAOP_THREADS": str(scorer.threads), "TF_NUM_INTEROP_THREADS": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2"} if getattr(scorer, "threads", None) else None)
        session = get_client(scheduler, workers=workers, threads_per_worker=threads_per_worker,
                             timeout=connect_timeout, worker_env=env)
    with session as c:
        summary = write_probability(in_path, vol, scorer, out=out, timepoints=(t0, t1),
                                    dtype=dtype, threshold=threshold, mask_out=mask_out,
                                    client=c, resume=resume, overwrite=overwrite,
                                    progress=progress)
    summary["seconds"] = round(time.perf_counter() - t_start, 3)
    return summary


def _check_options(method: str, blend: str, dtype: str, threshold: float | None) -> None:
    if method not in PREDICT_METHODS:
        raise ParameterError(f"method must be one of {PREDICT_METHODS}; got {method!r}")
    if method == "acme" and threshold is not None:
        raise ParameterError("threshold is not available with method 'acme'; threshold "
                             "its output with 'chunkseg segment' or a second pass")
    check_outputs(dtype, threshold)
    if blend not in BLEND_MODES:
        raise ParameterError(f"blend must be one of {BLEND_MODES}; got {blend!r}")


def _unet_scorer(vol: Volume, model, *, halo, block, tile, batch, blend, memory_gib,
                 scheduler, client, layout, timepoints: int) -> UNetScorer:
    """The model's facts, the halo and the tile plan of a U-Net run."""
    info = model_info(model)
    halo_ = resolve_halo(halo, info.receptive)
    workers, _threads, backend_threads = layout
    budget = memory_budget(memory_gib, scheduler=scheduler, client=client, workers=workers)
    plan = plan_tiles(tuple(vol.shape[1:]), info, halo=halo_, block=block, tile=tile,
                      batch=batch, budget_bytes=budget, timepoints=timepoints)
    return UNetScorer(info, plan, halo_, blend=blend, budget_bytes=budget,
                      threads=None if client is not None else backend_threads)
