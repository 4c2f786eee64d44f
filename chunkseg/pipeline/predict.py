"""``chunkseg predict``: membrane probability of a whole time series, chunk by chunk.

Plan of a run (:func:`run_predict`):

1. open the input lazily (OME-Zarr, Zarr or TIFF), read the model's metadata (no
   TensorFlow in the client): pooling factor, receptive field, width
   (:func:`chunkseg.model.info.model_info`);
2. resolve ``halo`` ("auto" = receptive-field radius), block (= output shard), tile
   and batch (both from a memory budget for activations) into a frozen plan
   (:func:`chunkseg.engine.plan.plan_tiles`);
3. the intensity range: the input's stored ``normalization``, else the model's, else
   exact (1, 99.5) percentiles of the input's non-zero voxels
   (:mod:`chunkseg.ops.robust_range`; one streaming pass, recorded in the output;
   ``chunkseg normalize --percentiles 0 99.99`` first gives the paper's range);
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

import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Literal

from chunkseg.engine.acme import AcmeScorer
from chunkseg.engine.cluster import memory_budget
from chunkseg.engine.plan import UNetScorer, plan_tiles, resolve_halo
from chunkseg.errors import ParameterError
from chunkseg.io.store import Volume, open_volume
from chunkseg.model.info import model_info
from chunkseg.ops.probability import OutputDtype
from chunkseg.ops.slices import parse_timepoints
from chunkseg.ops.tiling import BLEND_MODES, BlendMode
from chunkseg.pipeline._probability import (
    check_outputs,
    mask_path_for,
    write_probability,
    write_threshold_mask,
)

__all__ = ["PREDICT_METHODS", "mask_path_for", "run_predict", "write_threshold_mask"]

#: ``method`` values: the U-Net, or the ACME-style classical baseline
PREDICT_METHODS = ("unet", "acme")
PredictMethod = Literal["unet", "acme"]


def run_predict(
    in_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    model: str | os.PathLike = "default",
    method: PredictMethod = "unet",
    halo: int | str | Sequence[int] = 10,
    block: int | Sequence[int] | None = None,
    tile: int | Sequence[int] | None = None,
    batch: int | None = None,
    blend: BlendMode = "gaussian",
    dtype: OutputDtype = "float32",
    timepoints: Any = None,
    threshold: float | None = None,
    mask_out: str | os.PathLike | None = None,
    memory_gib: float | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    resample: bool = True,
    voxel_size: Sequence[float] | None = None,
    precision: str = "float32",
    pyramid: bool = True,
) -> dict[str, Any]:
    """Predict the membrane probability of a volume / time series.

    Parameters
    ----------
    in_path : path
        OME-Zarr / Zarr (t, z, y, x) or (z, y, x), or a TIFF file.
    out : path
        Output OME-Zarr probability image (same voxel size, selected time points).
    model : path or "default"
        A chunkseg ``.keras`` model.
    method : {"unet", "acme"}
        ``"acme"``: the classical ACME-style filter baseline instead of the network
        (:func:`chunkseg.pipeline.acme.run_acme` with its defaults; ``model``,
        ``halo``, ``tile``, ``batch``, ``blend``, ``memory_gib`` and ``threshold`` do
        not apply).
    halo : int, 3 ints or "auto"
        Context voxels around each block; "auto" = the model's receptive-field radius,
        which makes the result equal to a whole-volume pass (seam-free).  At most the
        block on an axis split into several blocks; on an axis one block covers it is
        clipped to the volume (all of it is mirrored border there).
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
    memory_gib : float, optional
        Activation memory of one network call (GiB); the default tile and batch are the
        cheapest that fit it (:func:`chunkseg.ops.tiling.choose_tile`).  Default
        (:func:`chunkseg.engine.cluster.memory_budget`): a quarter of this machine's
        RAM per worker process (1 GiB to 16 GiB) for the threads scheduler or a
        LocalCluster on CPU; 1 GiB with GPUs or a remote cluster.
    client : distributed.Client, optional
        Run on this client (e.g. from :func:`chunkseg.engine.cluster.get_client`
        with ``layout="model"``, as the command line does); None: dask's current
        scheduler (threads by default).
    resume, overwrite : bool
        Continue an interrupted run / replace an existing output.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    progress : bool
        Show a progress bar over blocks.
    resample : bool
        Predict at the model's voxel size (metadata ``voxel_size``): each block is
        resampled to it with its halo (``halo`` then counts model voxels), predicted and
        resampled back (:mod:`chunkseg.engine.resample_predict`; seam-free as without).
        Only when some axis differs by more than 10 %; an input without a voxel size is
        predicted as it is, with a warning line.
    voxel_size : 3 floats, optional
        The input's voxel size (µm, z y x) when its metadata lacks or misstates it.
    precision : {"float32", "bfloat16"}
        Network compute precision; bfloat16 (:mod:`chunkseg.model.precision`) is faster on
        CPUs with AVX512-BF16 / AMX (probability 3e-4 off on average, at most 0.014 measured).

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
    """
    t_start = time.perf_counter()
    _check_options(method, blend, dtype, threshold)
    vol = open_volume(in_path)
    t0, t1 = parse_timepoints(timepoints, vol.shape[0])
    if method == "acme":
        scorer: Any = AcmeScorer.plan(vol.shape[1:], vol.voxel_size, block=block)
    else:
        scorer = _unet_scorer(vol, model, halo=halo, block=block, tile=tile, batch=batch,
                              blend=blend, memory_gib=memory_gib, client=client,
                              timepoints=t1 - t0, precision=precision,
                              scale=dict(path=in_path, enabled=resample, voxel_size=voxel_size))
    summary = write_probability(in_path, vol, scorer, out=out, timepoints=(t0, t1),
                                dtype=dtype, threshold=threshold, mask_out=mask_out,
                                client=client, resume=resume, overwrite=overwrite,
                                progress=progress, pyramid=pyramid)
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
                 client, timepoints: int, precision: str, scale: dict) -> UNetScorer:
    """The model's facts, the halo, the tile plan and the resampling of a U-Net run."""
    from chunkseg.model.precision import PRECISIONS
    from chunkseg.pipeline._predict_resample import resample_plan

    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {sorted(PRECISIONS)}; got {precision!r}")
    info = model_info(model)
    resampling = resample_plan(scale["path"], vol, info.metadata, enabled=scale["enabled"],
                               voxel_size=scale["voxel_size"])
    warning = resampling.pop("warning")
    if warning:
        print(f"chunkseg predict: warning: {warning}", file=sys.stderr)
    halo_ = resolve_halo(halo, info.receptive)
    budget = memory_budget(memory_gib, client=client)
    plan = plan_tiles(tuple(vol.shape[1:]), info, halo=halo_, block=block, tile=tile,
                      batch=batch, budget_bytes=budget, timepoints=timepoints)
    return UNetScorer(info, plan, plan.halo, blend=blend, budget_bytes=budget,
                      precision=precision, resampling=resampling)
