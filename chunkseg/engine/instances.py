"""Instance metrics of a label volume against truth, accumulated block by block.

Memory is bounded by one block of each volume per task plus the contingency table
(pairs of overlapping cells); see :mod:`chunkseg.ops.instance_metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

from chunkseg.engine.submit import compute_windowed
from chunkseg.errors import DTypeError, ShapeError
from chunkseg.io.store import open_volume
from chunkseg.ops.instance_metrics import combine_contingency, contingency, instance_scores
from chunkseg.ops.slices import parse_timepoints

__all__ = ["instance_report"]


def _contingency_task(pred, truth):
    return contingency(np.asarray(truth), np.asarray(pred))


def instance_report(
    pred_labels_path: str | os.PathLike,
    truth_labels_path: str | os.PathLike,
    *,
    timepoints: Any = None,
    ious: Sequence[float] = (0.5, 0.75),
    client: Any = None,
) -> dict[str, Any]:
    """Instance metrics of predicted cell labels against truth labels, out of core.

    Truth 0 is *unlabelled* and left out (see :mod:`chunkseg.ops.instance_metrics`).
    Each time point is scored on its own.  Memory: one block of each volume per
    task plus the contingency table (pairs of overlapping cells).

    Parameters
    ----------
    pred_labels_path, truth_labels_path : path-like
        Integer label volumes of equal shape (OME-Zarr, Zarr or TIFF).
    timepoints : "A:B", optional
        Time points of both volumes to score.
    ious : sequence of float
        IoU thresholds of the matching scores (>= 0.5).

    Returns
    -------
    dict
        ``per_timepoint``: list of score dicts (adapted Rand error, VI split / merge,
        F1 / AP / precision / recall at IoU 0.5, ``matching`` per threshold); the
        top level repeats the first time point's scores when there is one, else the
        means of ``f1``, ``ap``, ``adapted_rand_error``, ``vi_split``, ``vi_merge``.

    Raises
    ------
    ShapeError, DTypeError
    """
    pred, truth = open_volume(pred_labels_path), open_volume(truth_labels_path)
    for vol, name in ((pred, pred_labels_path), (truth, truth_labels_path)):
        if vol.dtype.kind not in "iub":
            raise DTypeError(f"{name}: labels must be integers; got dtype {vol.dtype}")
    if pred.shape != truth.shape:
        raise ShapeError(f"{pred_labels_path}: labels shape {pred.shape} differs from the "
                         f"truth {truth_labels_path} shape {truth.shape}")
    t0, t1 = parse_timepoints(timepoints, pred.shape[0])
    task = dask.delayed(_contingency_task, pure=True)

    def timepoint(t: int):  # one graph per time point, submitted in a sliding window
        p = pred.data[t]
        pb, tb = p.to_delayed().ravel(), truth.data[t].rechunk(p.chunks).to_delayed().ravel()
        return dask.delayed(combine_contingency)([task(a, b) for a, b in zip(pb, tb)])

    tables = compute_windowed((timepoint(t) for t in range(t0, t1)), client=client,
                              name=lambda i: f"evaluate-t{t0 + i:04d}")
    per_t = [{"t": t0 + k, **instance_scores(table, ious=ious)}
             for k, table in enumerate(tables)]
    out: dict[str, Any] = {"pred": str(pred_labels_path), "truth": str(truth_labels_path),
                           "timepoints": [t0, t1], "unlabelled": "truth 0 voxels excluded",
                           "per_timepoint": per_t}
    if len(per_t) == 1:
        out.update({k: v for k, v in per_t[0].items() if k != "t"})
    else:
        for key in ("f1", "ap", "adapted_rand_error", "vi_split", "vi_merge"):
            out[key] = float(np.mean([s[key] for s in per_t]))
    return out
