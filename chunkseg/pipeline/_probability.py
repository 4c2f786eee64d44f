"""The steps ``predict`` and ``acme`` share: write a membrane probability image.

Both commands read the same inputs, apply the same intensity scaling (the input's
stored range, else the model's, else exact (1, 99.5) percentiles of the non-zero voxels
(:mod:`chunkseg.ops.robust_range`), through ``scale_to_uint8``),
write the same kind of output (an OME-Zarr ``probability`` image, float32 / float16 /
uint8, shard-aligned through ``write_volume``, resumable) and return the same summary
keys; they differ only in the *scorer* that maps the (t, z, y, x) array and its
intensity range (scaled as the scorer reads it) to the probability
(:class:`chunkseg.engine.plan.UNetScorer`, :class:`chunkseg.engine.acme.AcmeScorer`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.defaults import CHUNKS
from chunkseg.engine.blocks import Series, write_volume
from chunkseg.engine.cluster import dashboard_url, worker_counts
from chunkseg.engine.stats import intensity_histogram
from chunkseg.errors import ParameterError
from chunkseg.io.fingerprint import fingerprint
from chunkseg.engine.pyramid import finish_image
from chunkseg.io.store import Volume, create_image, open_array, open_volume
from chunkseg.ops.probability import OUTPUT_DTYPES, OutputDtype, threshold_block, to_output_dtype
from chunkseg.ops.robust_range import model_percentiles, range_from_histogram

__all__ = [
    "check_outputs",
    "input_range",
    "mask_path_for",
    "shard_chunks",
    "write_probability",
    "write_threshold_mask",
]

Scorer = Callable[[da.Array], da.Array]


def check_outputs(dtype: str, threshold: float | None) -> None:
    """Refuse an unknown output dtype or a threshold outside [0, 1]."""
    if dtype not in OUTPUT_DTYPES:
        raise ParameterError(f"dtype must be one of {OUTPUT_DTYPES}; got {dtype!r}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ParameterError(f"threshold must be in [0, 1]; got {threshold!r}")


def mask_path_for(out: str | os.PathLike) -> Path:
    """Where ``--threshold`` writes its mask: ``prob.ome.zarr`` -> ``prob_mask.ome.zarr``."""
    out = Path(out)
    for suffix in (".ome.zarr", ".zarr"):
        if out.name.endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + "_mask" + suffix)
    return out.with_name(out.name + "_mask")


def shard_chunks(block: Sequence[int]) -> tuple[int, ...]:
    """Zarr chunks dividing the block (the shard): near the default chunks."""
    out = []
    for b, want in zip(block, CHUNKS[1:]):
        c = max(d for d in range(1, min(b, want) + 1) if b % d == 0)
        out.append(c if c * 4 >= min(b, want) else b)
    return tuple(out)


def input_range(vol: Volume, model_range: dict[str, Any] | None,
                client: Any) -> dict[str, Any] | None:
    """The intensity range for ``scale_to_uint8`` (None: input already 8-bit normalised)."""
    attrs = vol.attrs or {}
    if attrs.get("kind") == "normalized" and vol.dtype == np.uint8:
        return None
    for source, norm in (("input", attrs.get("normalization")), ("model", model_range)):
        if isinstance(norm, dict) and "low" in norm and "high" in norm:
            return {"low": float(norm["low"]), "high": float(norm["high"]), "source": source,
                    "method": norm.get("method", "stored")}
    ps, nonzero = model_percentiles(model_range)
    h = intensity_histogram(vol.data, client=client)
    low, high = range_from_histogram(h.hist, ps, ignore_zero=nonzero)
    return {"low": low, "high": high, "source": "computed",
            "method": f"percentiles {list(ps)} of the {'non-zero ' if nonzero else ''}voxels "
                      f"({h.method})"}


def write_threshold_mask(
    prob_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    threshold: float,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyramid: bool = True,
) -> str:
    """Write the binary mask ``p >= threshold`` of a probability store (same grid).

    uint8 probabilities are read as ``v / 255``; with ``pyramid`` the mask gets a
    multiscale pyramid.  Returns the mask path.
    """
    check_outputs("uint8", threshold)
    prob = open_volume(prob_path)
    arr = open_array(prob_path)
    scale = 1 / 255 if prob.dtype == np.uint8 else 1.0
    create_image(out, shape=prob.shape, dtype="uint8", voxel_size=prob.voxel_size,
                 chunks=arr.chunks, shards=arr.shards or arr.chunks,
                 attrs={"kind": "mask", "source": [str(prob_path)], "threshold": float(threshold),
                        "fingerprint": fingerprint(params={"p": prob.attrs.get("fingerprint"),
                                                           "t": float(threshold)})},
                 overwrite=overwrite, resume=resume, pyramid=pyramid)
    data = prob.data.map_blocks(threshold_block, float(threshold), scale, dtype=np.uint8)
    write_volume(data, out, client=client, resume=resume, progress=progress, desc="threshold")
    finish_image(out, client=client, resume=resume, progress=progress,
                 threshold=float(threshold))
    return str(out)


def _create(in_path, vol: Volume, out: Path, scorer, *, norm, t0: int, t1: int, dtype: str,
            overwrite: bool, resume: bool, pyramid: bool) -> None:
    """The output store, fingerprinted by the input, the scorer's settings and the range."""
    settings = {**scorer.settings(), "dtype": dtype, "timepoints": [t0, t1]}
    extra = scorer.attrs()
    attrs = {"kind": "probability", "source": [str(in_path)], **extra, "normalization": norm,
             "fingerprint": fingerprint(in_path, {**settings, **extra, "norm": norm},
                                        shape=vol.shape, dtype=vol.dtype),
             "predict": settings, "scale": 1 / 255 if dtype == "uint8" else 1.0}
    block = settings["block"]
    create_image(out, shape=(t1 - t0, *vol.shape[1:]), dtype=dtype, voxel_size=vol.voxel_size,
                 chunks=(1, *shard_chunks(block)), shards=(1, *block), attrs=attrs,
                 overwrite=overwrite, resume=resume, pyramid=pyramid)


def write_probability(
    in_path: str | os.PathLike,
    vol: Volume,
    scorer: Any,
    *,
    out: str | os.PathLike,
    timepoints: tuple[int, int],
    dtype: OutputDtype,
    threshold: float | None = None,
    mask_out: str | os.PathLike | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyramid: bool = True,
) -> dict[str, Any]:
    """Scale the input, score it, write the probability image (and its mask); the summary.

    ``scorer`` has ``name``, ``normalization`` (a model's stored range or None),
    ``group`` (time points it scores per task), ``settings()``, ``attrs()``,
    ``summary(timepoints)``, ``warm(client)`` (futures that load what its tasks need)
    and maps a (t, z, y, x) dask array (``group`` time points at a time) and an
    intensity range (``(low, high)`` for :func:`chunkseg.ops.normalize.scale_to_uint8`,
    or None: already scaled) to a float32
    probability of the same shape.  With ``pyramid`` the probability (and the mask) get
    a multiscale pyramid.
    """
    t_start = time.perf_counter()
    out = Path(out)
    t0, t1 = timepoints
    loading = scorer.warm(client)  # the workers load the model while the range is taken
    norm = input_range(vol, scorer.normalization, client)
    _create(in_path, vol, out, scorer, norm=norm, t0=t0, t1=t1, dtype=dtype,
            overwrite=overwrite, resume=resume, pyramid=pyramid)

    scale = None if norm is None else (norm["low"], norm["high"])

    def slab(a: int, b: int):  # the graph of time points a:b, built when submitted
        return scorer(vol.data[t0 + a : t0 + b], scale).map_blocks(
            to_output_dtype, dtype, dtype=np.dtype(dtype), meta=np.empty((0,) * 4, np.dtype(dtype)))

    p = Series((t1 - t0, *vol.shape[1:]), np.dtype(dtype), slab, step=scorer.group)
    t_write = time.perf_counter()
    report = write_volume(p, out, client=client, resume=resume, progress=progress,
                          desc=scorer.name if scorer.name != "unet" else "predict")
    del loading  # held until every block ran
    seconds = time.perf_counter() - t_write
    n_workers, n_threads = worker_counts(client)
    voxels = int((t1 - t0) * math.prod(vol.shape[1:]))
    summary = {
        "input": str(in_path), "out": str(out), "voxels": voxels,
        "seconds": round(time.perf_counter() - t_start, 3), "predict_seconds": round(seconds, 3),
        "voxels_per_s": round(voxels / max(seconds, 1e-9), 1),
        **scorer.summary(t1 - t0),
        "blocks": report.n_blocks, "blocks_written": report.written,
        "blocks_skipped": report.skipped, "timepoints": [t0, t1], "dtype": dtype,
        "workers": n_workers, "threads": n_threads,
        "dashboard": dashboard_url(client) if client else None, "normalization": norm,
    }
    finish_image(out, client=client, resume=resume, progress=progress, summary=summary)
    if threshold is not None:
        summary["mask"] = write_threshold_mask(
            out, out=mask_out if mask_out is not None else mask_path_for(out),
            threshold=float(threshold), client=client, resume=resume, overwrite=overwrite,
            progress=progress, pyramid=pyramid)
        summary["threshold"] = float(threshold)
    return summary
