"""``chunkseg normalize``: percentile contrast scaling of a whole time series to 8 bit.

The paper's preprocessing (Fig. 2B): choose ``RangeIn = (low, high)`` from the
intensity-versus-percentile curve (it took 0 → the 99.99th percentile) and map it to
``uint8`` with :func:`chunkseg.ops.normalize.scale_to_uint8`.  Here the percentiles come
from one streaming histogram pass over every chunk (exact for integer data, see
:mod:`chunkseg.engine.stats`), and the range used is stored in the output's
``normalization`` attribute so ``predict`` can scale new data identically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from chunkseg.engine.blocks import write_volume
from chunkseg.engine.stats import IntensityHistogram, intensity_histogram
from chunkseg.engine.volumes import scale_volume
from chunkseg.errors import ParameterError
from chunkseg.io.fingerprint import fingerprint
from chunkseg.engine.pyramid import finish_image
from chunkseg.io.store import create_image, open_volume
from chunkseg.ops.normalize import (
    DEFAULT_PERCENTILES,
    check_percentiles,
    check_range,
)
from chunkseg.ops.slices import compose_dropped, drop_slices as _drop

__all__ = ["FORMULA", "run_normalize"]

FORMULA = "uint8 = floor(clip(255 * (x - low) / (high - low), 0, 255) + 0.5)  (float64)"


def _ranges(h: IntensityHistogram, ps: tuple[float, float], n_t: int, per_timepoint: bool,
            where: str, check: bool) -> tuple[list[float], list[float], list[list[float]]]:
    per_t = [h.percentiles(ps, t).tolist() for t in range(n_t)] if per_timepoint else []
    pairs = per_t or [h.percentiles(ps).tolist()] * n_t
    for t, (lo, hi) in enumerate(pairs if check else []):
        if not lo < hi:
            what = f"time point {t}" if per_timepoint else "the volume"
            raise ParameterError(
                f"{where}percentiles {ps} of {what} give a zero intensity range "
                f"(low = high = {lo:g}); is it constant? Give --range LOW HIGH or other "
                "--percentiles"
            )
    return [p[0] for p in pairs], [p[1] for p in pairs], per_t


def run_normalize(
    in_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    range: Sequence[float] | None = None,  # noqa: A002 - the paper's "RangeIn"
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    per_timepoint: bool = False,
    plot: str | os.PathLike | None = None,
    drop_slices: str | Sequence[int] | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    pyramid: bool = True,
    client: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Scale a volume to uint8 between two intensity percentiles (or a given range).

    Parameters
    ----------
    in_path : path-like
        Input volume (chunkseg OME-Zarr, Zarr array or TIFF), any integer or float dtype.
    out : path-like, optional
        uint8 OME-Zarr to write.  Without it nothing is written: the percentiles are
        returned (and plotted with ``plot``) so a user can choose a range.
    range : (low, high), optional
        Fixed intensity range; the percentile pass is skipped unless ``plot`` asks for it.
    percentiles : (p_low, p_high)
        Percentiles giving the range, default the paper's (0, 99.99).  Exact for integer
        data; float data use a 2**20-bin histogram (error bound recorded).
    per_timepoint : bool
        One range per time point instead of one for the whole series.
    plot : path-like, optional
        PNG of intensity versus percentile with the chosen range dashed (Fig. 2B).
    drop_slices : str or sequence of int, optional
        Artifact z slices to remove first (``"3,17,40-45"``); recorded, in the original
        z numbering, in ``dropped_slices``.
    chunks : sequence of int, optional
        Output chunk shape (z, y, x); default :func:`chunkseg.io.store.default_chunks`.
    overwrite, resume : bool
        Replace an existing output / continue an interrupted one.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    client : distributed.Client, optional
        Cluster to run on; ``None`` uses dask's current scheduler.
    progress : bool
        Progress bar while writing.

    Returns
    -------
    dict
        ``low``, ``high``, ``percentiles``, ``per_timepoint`` ranges, ``method``,
        ``error_bound``, ``out``, ``plot``, ``seconds`` ...

    Raises
    ------
    ParameterError
        ``low >= high``, percentiles outside [0, 100] or reversed, a zero range (constant
        volume or time point), bad slice spec.
    InputError
        NaN/Inf in float input.
    """
    t0 = time.perf_counter()
    if range is not None and len(tuple(range)) != 2:
        raise ParameterError(f"range must be (low, high); got {tuple(range)}")
    fixed = check_range(*range) if range is not None else None
    if fixed is not None and per_timepoint:
        raise ParameterError(
            "per_timepoint (--per-timepoint) takes one range per time point from the "
            f"percentiles; got a fixed range {fixed} as well: give one or the other"
        )
    ps = check_percentiles(percentiles)
    if len(ps) != 2:
        raise ParameterError(f"percentiles must be two values (low, high); got {list(ps)}")
    vol = open_volume(in_path)
    where = f"{in_path}: "
    data, dropped = _drop(vol.data, drop_slices, name=str(in_path))
    n_t = data.shape[0]
    summary: dict[str, Any] = {"input": str(in_path), "shape": list(data.shape),
                               "dtype": str(data.dtype), "percentiles": list(ps)}
    hist = None
    if fixed is None or plot is not None:
        hist = intensity_histogram(data, per_timepoint=per_timepoint and fixed is None,
                                   client=client, name=str(in_path))
        summary.update(method=hist.method, error_bound=hist.error_bound, n_voxels=hist.n,
                       percentile_values=hist.percentiles(ps).tolist())
    if fixed is not None:
        lows, highs, per_t = [fixed[0]] * n_t, [fixed[1]] * n_t, []
        low, high = fixed
    else:
        lows, highs, per_t = _ranges(hist, ps, n_t, per_timepoint, where,
                                     check=out is not None)
        low, high = summary["percentile_values"]
    summary.update(low=low, high=high)
    if per_t:
        summary["per_timepoint"] = per_t
    if plot is not None:
        summary["plot"] = _plot(hist, plot, low, high, None if fixed else ps, in_path)
    if out is None:
        summary["seconds"] = round(time.perf_counter() - t0, 3)
        return summary
    normalization = {
        "low": low, "high": high, "method": "range" if fixed else "percentiles",
        "percentiles": None if fixed else list(ps), "per_timepoint": bool(per_t),
        "lows": lows if per_t else None, "highs": highs if per_t else None,
        "percentile_method": hist.method if hist else None,
        "error_bound": hist.error_bound if hist else None,
        "formula": FORMULA, "source_dtype": str(data.dtype),
    }
    summary.update(_write(in_path, vol, scale_volume(data, lows, highs), out,
                          normalization=normalization, dropped=dropped, chunks=chunks,
                          client=client, resume=resume, overwrite=overwrite,
                          progress=progress, pyramid=pyramid))
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    finish_image(out, client=client, resume=resume, progress=progress,
                 normalize_seconds=summary["seconds"])
    return summary


def _write(in_path, vol, scaled, out, *, normalization: dict[str, Any], dropped: list[int],
           chunks, client, resume: bool, overwrite: bool, progress: bool,
           pyramid: bool) -> dict[str, Any]:
    """Create the uint8 store (range, dropped slices, fingerprint) and write it."""
    all_dropped = compose_dropped(vol.attrs.get("dropped_slices") or [], dropped)
    attrs = {"kind": "normalized", "source": [str(in_path)], "normalization": normalization,
             "dropped_slices": all_dropped,
             "fingerprint": fingerprint(in_path, {"norm": normalization, "dropped": all_dropped,
                                                  "chunks": chunks},
                                        shape=vol.shape, dtype=vol.dtype)}
    create_image(out, shape=scaled.shape, dtype=np.uint8, voxel_size=vol.voxel_size,
                 chunks=chunks, attrs=attrs, overwrite=overwrite, resume=resume,
                 pyramid=pyramid)
    report = write_volume(scaled, out, client=client, resume=resume, progress=progress,
                          desc="normalize")
    return {"out": str(out), "blocks_written": report.written,
            "blocks_skipped": report.skipped, "dropped_slices": all_dropped}


def _plot(hist: IntensityHistogram, path, low, high, ps, in_path) -> str:
    from chunkseg.plots.percentiles import CURVE_PERCENTILES, plot_percentile_curve

    curve = hist.percentiles(CURVE_PERCENTILES)
    note = (f"{hist.n:,} voxels, {hist.dtype}, "
            + ("exact percentiles" if hist.method == "exact"
               else f"binned percentiles (error <= {hist.error_bound:.3g})"))
    return plot_percentile_curve(
        CURVE_PERCENTILES, curve, path, low=low, high=high,
        p_low=ps[0] if ps else None, p_high=ps[1] if ps else None,
        title=f"pixel intensity versus percentile: {os.path.basename(str(in_path).rstrip('/'))}",
        note=note)
