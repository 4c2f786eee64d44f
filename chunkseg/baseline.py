"""The ACME-style classical baseline as a command: ``chunkseg predict --method acme``.

:func:`run_acme` is :func:`chunkseg.pipeline.predict.run_predict`'s twin for the
classical filter pipeline (:mod:`chunkseg.ops.acme`, on dask by
:func:`chunkseg.engine.acme.acme_map`).  It reads the same inputs, applies the same
intensity scaling (the input's stored range, else exact percentiles, through
``scale_to_uint8``), writes the same kind of output (an OME-Zarr ``probability``
image, float32 / float16 / uint8, shard-aligned through ``write_volume``, resumable)
and returns the same summary keys, so ``evaluate``, ``segment`` (ACME's
``membraneSegmentation`` step is the shared seeded watershed,
:mod:`chunkseg.ops.watershed`) and the benchmark treat both methods alike.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError
from chunkseg.ops.acme import AcmeParams

__all__ = ["ACME_BLOCK", "compute_chunks", "run_acme"]

#: compute block of the filters (the write shard is ``block``): about 25 float32
#: temporaries of the isotropic, haloed block stay a few hundred MB
ACME_BLOCK = (32, 128, 128)


def compute_chunks(block: Sequence[int], want: Sequence[int] = ACME_BLOCK) -> tuple[int, ...]:
    """Compute chunks near ``want`` that tile ``block`` evenly (no straddling writes)."""
    return tuple(math.ceil(b / math.ceil(b / min(w, b))) for b, w in zip(block, want))


def run_acme(
    in_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    params: AcmeParams | dict | None = None,
    block: int | Sequence[int] | None = None,
    compute_block: Sequence[int] | None = None,
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
    pyramid: bool = True,
) -> dict[str, Any]:
    """ACME-style membrane score of a volume / time series (see the module docstring).

    Parameters
    ----------
    in_path : path
        OME-Zarr / Zarr (t, z, y, x) or (z, y, x), or a TIFF file.
    out : path
        Output OME-Zarr score image, float in [0, 1] (kind ``probability``).
    params : AcmeParams or dict, optional
        Filter parameters (defaults: :class:`~chunkseg.ops.acme.AcmeParams`).
    block : int or 3 ints, optional
        Output shard (write unit); default ``run_predict``'s block, clipped.
    compute_block : 3 ints, optional
        Filter block (dask task); default near :data:`ACME_BLOCK`, dividing ``block``.
    dtype, timepoints, threshold, mask_out, scheduler, workers, threads_per_worker,
    resume, overwrite, connect_timeout, progress, pyramid
        As in :func:`chunkseg.pipeline.predict.run_predict`.  Without a scheduler a
        LocalCluster of one single-threaded worker process per core is used (the
        filters are NumPy/SciPy code that holds the GIL part of the time).

    Returns
    -------
    dict
        Run summary (``voxels``, ``seconds``, ``predict_seconds``, ``voxels_per_s``,
        ``halo``, ``block``, ``workers``, ...), also stored in the output's attributes.

    Raises
    ------
    ParameterError
        Bad dtype, threshold, time points or filter parameters.
    InputNotFoundError, FormatError, ShapeError, OutputExistsError, ClusterError
        As for ``run_predict``.
    """
    from chunkseg.engine.acme import acme_map, halo_of
    from chunkseg.engine.blocks import write_volume
    from chunkseg.engine.cluster import dashboard_url, get_client
    from chunkseg.engine.pyramid import finish_image
    from chunkseg.io.store import create_image, open_volume
    from chunkseg.ops.normalize import scale_to_uint8
    from chunkseg.ops.tiling import as_triple
    from chunkseg.pipeline import predict as pp

    t_start = time.perf_counter()
    p = params if isinstance(params, AcmeParams) else AcmeParams(**(params or {}))
    if dtype not in pp.OUTPUT_DTYPES:
        raise ParameterError(f"dtype must be one of {pp.OUTPUT_DTYPES}; got {dtype!r}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ParameterError(f"threshold must be in [0, 1]; got {threshold!r}")
    vol = open_volume(in_path)
    t0, t1 = pp.parse_timepoints(timepoints, vol.shape[0])
    shape = tuple(vol.shape[1:])
    block_ = tuple(min(b, s) for b, s in zip(as_triple(block or pp.DEFAULT_BLOCK, "block"), shape))
    chunks_ = compute_chunks(block_, compute_block or ACME_BLOCK)
    halo = halo_of(vol.voxel_size, p)
    out = Path(out)
    settings = dict(method="acme", acme=p.to_dict(), halo=list(halo), block=list(block_),
                    compute_block=list(chunks_), dtype=dtype, timepoints=[t0, t1])
    if scheduler is None and workers is None and threads_per_worker is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers, threads_per_worker = cores or 1, 1
    with get_client(scheduler, workers=workers, threads_per_worker=threads_per_worker,
                    timeout=connect_timeout) as client:
        norm = pp._input_range(vol, SimpleNamespace(normalization=None), client)
        fingerprint = pp._fingerprint(input=str(Path(in_path).resolve()), shape=vol.shape,
                                      in_dtype=str(vol.dtype), norm=norm, **settings)
        attrs = {"kind": "probability", "source": [str(in_path)], "method": "acme",
                 "normalization": norm, "fingerprint": fingerprint, "predict": settings,
                 "scale": 1 / 255 if dtype == "uint8" else 1.0}
        nt = t1 - t0
        create_image(out, shape=(nt, *shape), dtype=dtype, voxel_size=vol.voxel_size,
                     chunks=(1, *pp._chunks_for(block_)), shards=(1, *block_), attrs=attrs,
                     overwrite=overwrite, resume=resume, pyramid=pyramid)
        x = vol.data[t0:t1]
        if norm is not None:
            x = x.map_blocks(scale_to_uint8, norm["low"], norm["high"], dtype=np.uint8)
        score = acme_map(x, voxel_size=vol.voxel_size, params=p, chunks=chunks_)
        score = score.map_blocks(pp._to_dtype, dtype, dtype=np.dtype(dtype))
        t_write = time.perf_counter()
        report = write_volume(score, out, client=client, resume=resume, progress=progress,
                              desc="acme")
        seconds = time.perf_counter() - t_write
        n_workers, n_threads = pp._workers(client)
        voxels = int(nt * math.prod(shape))
        summary = {
            "input": str(in_path), "out": str(out), "method": "acme", "voxels": voxels,
            "predict_seconds": round(seconds, 3),
            "voxels_per_s": round(voxels / max(seconds, 1e-9), 1),
            "halo": list(halo), "block": list(block_), "compute_block": list(chunks_),
            "blocks": report.n_blocks, "blocks_written": report.written,
            "blocks_skipped": report.skipped, "timepoints": [t0, t1], "dtype": dtype,
            "workers": n_workers, "threads": n_threads, "acme": p.to_dict(),
            "dashboard": dashboard_url(client) if client else None, "normalization": norm,
            "seconds": round(time.perf_counter() - t_start, 3),
        }
        finish_image(out, client=client, resume=resume, progress=progress, summary=summary)
        if threshold is not None:
            summary["mask"] = pp.write_threshold_mask(
                out, out=mask_out if mask_out is not None else pp.mask_path_for(out),
                threshold=float(threshold), client=client, resume=resume, overwrite=overwrite,
                progress=progress, pyramid=pyramid)
            summary["threshold"] = float(threshold)
    summary["seconds"] = round(time.perf_counter() - t_start, 3)
    return summary
