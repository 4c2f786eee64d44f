"""The default intensity range of ``predict``: percentiles of the non-zero voxels.

Why (measured, see ``benchmarks/normalization.py`` and the model card): the paper's
(0, 99.99) percentiles let a handful of bright voxels set the top of the range, so a dim
membrane signal collapses into a few 8-bit grey levels; and volumes with zeros outside
the sample (cropped, masked or background-subtracted light-sheet data) put their low
percentiles at 0 whatever the sample looks like.  Percentiles (1, 99.5) of the non-zero
finite voxels keep the membrane/cytoplasm gap wide on every volume measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError
from chunkseg.ops.normalize import Histogram, check_percentiles, percentiles_from_histogram

__all__ = ["ROBUST_PERCENTILES", "model_percentiles", "range_from_histogram", "robust_range"]

#: default percentiles of the non-zero voxels
ROBUST_PERCENTILES: tuple[float, float] = (1.0, 99.5)


def model_percentiles(record: Mapping[str, Any] | None) -> tuple[tuple[float, float], bool]:
    """``(percentiles, ignore_zero)`` to compute for an input without a stored range.

    A model trained on robust ranges records ``{"method": "robust_percentiles",
    "percentiles": [...], "ignore_zero": ...}``; anything else (older models, no model
    record) gets the default :data:`ROBUST_PERCENTILES` of the non-zero voxels.
    """
    if isinstance(record, Mapping) and record.get("method") == "robust_percentiles":
        low, high = check_percentiles(record.get("percentiles", ROBUST_PERCENTILES))
        return (low, high), bool(record.get("ignore_zero", True))
    return ROBUST_PERCENTILES, True


def range_from_histogram(hist: Histogram, percentiles: Sequence[float] = ROBUST_PERCENTILES,
                         *, ignore_zero: bool = True) -> tuple[float, float]:
    """:func:`robust_range` from a histogram ``(values, counts)`` of the whole volume.

    Equal to :func:`robust_range` of the data for integer histograms (exact values);
    for binned float histograms, the bin whose value is 0 is the one left out.
    """
    values, counts = (np.asarray(a) for a in hist)
    if ignore_zero and np.any(counts[values != 0] > 0):
        keep = values != 0
        values, counts = values[keep], counts[keep]
    low, high = (float(v) for v in percentiles_from_histogram((values, counts), percentiles))
    return (low, low + 1.0) if not high > low else (low, high)


def robust_range(x: np.ndarray, percentiles: Sequence[float] = ROBUST_PERCENTILES, *,
                 ignore_zero: bool = True) -> tuple[float, float]:
    """``(low, high)`` percentiles of the finite (and, by default, non-zero) voxels of ``x``.

    Parameters
    ----------
    x : ndarray
        Any integer or float dtype.
    percentiles : (low, high)
        In [0, 100].
    ignore_zero : bool
        Leave out voxels equal to 0 (empty outside of the sample); when every voxel is 0
        all are used.

    Returns
    -------
    (float, float)
        ``high > low`` always: a constant volume gets ``(v, v + 1)``.

    Examples
    --------
    >>> x = np.zeros((4, 4, 4), np.uint16); x[1:3] = np.arange(32).reshape(2, 4, 4) + 10
    >>> robust_range(x, (0, 100))
    (10.0, 41.0)
    """
    ps = check_percentiles(percentiles)
    if len(ps) != 2:
        raise ParameterError(f"percentiles must be (low, high); got {tuple(percentiles)!r}")
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ParameterError(f"robust_range needs a numeric array; got dtype {a.dtype}")
    v = a[np.isfinite(a)] if a.dtype.kind == "f" else a.ravel()
    if ignore_zero and np.any(v != 0):
        v = v[v != 0]
    if v.size == 0:
        raise ParameterError("robust_range: the array has no finite voxel")
    low, high = (float(p) for p in np.percentile(v, ps))
    if not high > low:
        return low, low + 1.0
    return low, high
