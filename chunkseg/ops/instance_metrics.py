"""Instance segmentation scores from a sparse contingency table (pure NumPy).

The table lists ``(truth id, predicted id, voxels)`` for every pair that overlaps.
It is built block by block (:func:`contingency` of each block, summed by
:func:`combine_contingency`), so scores of volumes larger than memory need memory
bounded by the number of overlapping pairs (about cells × their neighbours), never
by the number of voxels.

Conventions
-----------
* Truth label 0 means *unlabelled*: voxels with truth 0 are left out of the table,
  so nothing predicted there counts for or against the prediction (as
  ``ignore_labels=(0,)`` in scikit-image's metrics).
* Predicted 0 (voxels no cell claimed) is one segment for the Rand and VI scores,
  and never a cell for matching.
* Sizes in IoU are counted over labelled voxels (truth != 0) only.
* Adapted Rand error (SNEMI3D): ``1 - F`` of the pair precision / recall, equal to
  :func:`skimage.metrics.adapted_rand_error` (``rand_precision`` = pairs joined in both /
  pairs joined in the prediction; skimage's names for precision and recall are swapped).  VI split = H(pred | truth) (over-
  segmentation), VI merge = H(truth | pred) (under-segmentation), in bits, equal
  to :func:`skimage.metrics.variation_of_information`.
* Matching at IoU threshold ``τ >= 0.5``: a pair matches when ``IoU > τ`` (strictly;
  then matches are one-to-one).  ``precision = TP / n_pred``, ``recall = TP / n_truth``,
  ``f1 = 2 TP / (n_pred + n_truth)``, ``ap = TP / (TP + FP + FN)`` (the "average
  precision" of the cell-segmentation literature, e.g. StarDist / Cellpose).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.segstats import sum_pair_counts

__all__ = ["combine_contingency", "contingency", "instance_scores", "match_scores"]


def contingency(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Overlap counts of one block: (k, 3) uint64 rows ``(truth, pred, voxels)``, truth != 0."""
    if truth.shape != pred.shape:
        raise ShapeError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    keep = truth.ravel() != 0
    t = truth.ravel()[keep].astype(np.uint64)
    p = pred.ravel()[keep].astype(np.uint64)
    if t.size == 0:
        return np.zeros((0, 3), np.uint64)
    pairs, counts = np.unique(np.stack([t, p], 1), axis=0, return_counts=True)
    return np.concatenate([pairs, counts.astype(np.uint64)[:, None]], 1)


def combine_contingency(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Sum block tables into one (rows sorted by truth, then prediction)."""
    return sum_pair_counts(parts)


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    nz = x > 0
    out[nz] = x[nz] * np.log2(x[nz])
    return out


def match_scores(table: np.ndarray, *, iou: float = 0.5) -> dict[str, float]:
    """Cell matching at one IoU threshold (see the module notes)."""
    if not 0.5 <= iou < 1:
        raise ParameterError(f"iou threshold must lie in [0.5, 1) for one-to-one matching; "
                             f"got {iou!r}")
    t, p, n = (table[:, 0], table[:, 1], table[:, 2].astype(np.float64))
    tid, tinv = np.unique(t, return_inverse=True)
    tsize = np.bincount(tinv, weights=n)
    cells = p != 0
    pid, pinv = np.unique(p[cells], return_inverse=True)
    psize = np.bincount(pinv, weights=n[cells], minlength=pid.size)
    inter = n[cells]
    union = tsize[tinv[cells]] + psize[pinv] - inter
    good = inter / np.maximum(union, 1) > iou
    tp = int(good.sum())
    n_truth, n_pred = int(tid.size), int(pid.size)
    fp, fn = n_pred - tp, n_truth - tp
    return {
        "iou": float(iou), "tp": tp, "fp": fp, "fn": fn,
        "precision": tp / n_pred if n_pred else 0.0,
        "recall": tp / n_truth if n_truth else 0.0,
        "f1": 2 * tp / (n_pred + n_truth) if n_pred + n_truth else 0.0,
        "ap": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
        "mean_matched_iou": float((inter / union)[good].mean()) if tp else 0.0,
    }


def instance_scores(table: np.ndarray, *, ious: Sequence[float] = (0.5, 0.75)) -> dict:
    """Adapted Rand error, VI split / merge and matching scores of a contingency table.

    Returns
    -------
    dict
        ``adapted_rand_error``, ``rand_precision``, ``rand_recall``, ``vi_split``,
        ``vi_merge``, ``vi``, ``n_truth``, ``n_pred`` (predicted cells overlapping
        labelled voxels), ``voxels`` (labelled voxels scored), ``f1`` / ``ap`` /
        ``precision`` / ``recall`` at IoU 0.5 (when in ``ious``), and ``matching``:
        one dict per threshold.
    """
    table = np.asarray(table)
    if table.size == 0:
        raise ShapeError("no labelled truth voxels to score (the contingency table is empty)")
    t, p, n = table[:, 0], table[:, 1], table[:, 2].astype(np.float64)
    total = n.sum()
    _, tinv = np.unique(t, return_inverse=True)
    _, pinv = np.unique(p, return_inverse=True)
    a = np.bincount(tinv, weights=n)
    b = np.bincount(pinv, weights=n)
    sum_n2 = float(n @ n - total)
    sum_a2, sum_b2 = float(a @ a - total), float(b @ b - total)
    precision = sum_n2 / sum_b2 if sum_b2 else 1.0
    recall = sum_n2 / sum_a2 if sum_a2 else 1.0
    denom = 0.5 * sum_b2 + 0.5 * sum_a2
    are = 1.0 - (sum_n2 / denom if denom else 1.0)
    h_xy = _xlogx(n / total).sum()
    h_t_given_p = float(-(h_xy - _xlogx(b / total).sum()))
    h_p_given_t = float(-(h_xy - _xlogx(a / total).sum()))
    matching = [match_scores(table, iou=v) for v in ious]
    out = {
        "adapted_rand_error": are, "rand_precision": precision, "rand_recall": recall,
        "vi_split": h_p_given_t, "vi_merge": h_t_given_p, "vi": h_p_given_t + h_t_given_p,
        "n_truth": int(a.size), "n_pred": int(np.unique(p[p != 0]).size),
        "voxels": int(total), "matching": matching,
    }
    at_half = [m for m in matching if m["iou"] == 0.5]
    if at_half:
        out.update({k: at_half[0][k] for k in ("f1", "ap", "precision", "recall")})
    return out
