"""Membrane-probability metrics from per-block histograms (pure NumPy/SciPy).

Everything is derived from small integer histograms that a block fills and that add
across blocks, so a volume of any size is scored exactly in one streaming pass.

Conventions
-----------
* **Threshold semantics.** At threshold ``t`` a voxel is *predicted membrane* when
  ``p >= t``.  Probabilities are float in [0, 1]; uint8 stores mean ``p = v / 255``
  computed in float64 (``scale=255``), a 0/1 mask store ``scale=1``.
* **The probability grid** ``grid`` (float64, ascending, holds every threshold and
  0).  A voxel's *grid index* is the number of grid points ``<= p``
  (``np.searchsorted(grid, p, side="right")``, comparisons in float64, so float32 /
  float16 values are compared exactly, never through float arithmetic).  At grid
  point ``grid[j]`` the predicted voxels are those with index ``> j``.
* **Confusion histogram** ``hist[c, i]``: voxels with truth ``c`` (0/1) and grid
  index ``i`` (shape ``(2, len(grid) + 1)``).  TP/FP/FN/TN at every grid point are
  suffix sums of it, exact.
* **ECDF**: ``F(x) = fraction of voxels with p < x`` at each grid point (= one minus
  the predicted fraction at threshold ``x``), over all voxels and split by truth.
* **Boundary-tolerant scores** at tolerance ``r`` voxels (footprint: the
  ``connectivity``-ball of :func:`scipy.ndimage.generate_binary_structure`, iterated
  ``r`` times; ``connectivity=3`` is the 3x3x3 cube for ``r = 1``): precision = fraction
  of predicted voxels that lie within the footprint of a true membrane voxel, recall
  = fraction of true membrane voxels within the footprint of a predicted voxel.  At
  all grid points at once: a true voxel is near a voxel with ``p >= t`` exactly when
  the footprint maximum of the grid index exceeds ``j``.
* **Distance** to the nearest true membrane voxel in physical units
  (:func:`scipy.ndimage.distance_transform_edt` with ``sampling=voxel_size``), capped:
  every distance ``> max_distance`` is one overflow class.  A block with a halo of
  :func:`distance_halo` voxels gives every distance ``<= max_distance`` exactly.
* Scores with a zero denominator are NaN (``None`` in JSON).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from chunkseg.errors import ParameterError

__all__ = [
    "SCORES",
    "EvalSpec",
    "auc_scores",
    "block_statistics",
    "boundary_scores",
    "confusion_at",
    "distance_halo",
    "ecdf",
    "grid_index",
    "probability_grid",
    "scores_from_counts",
    "best_thresholds",
    "sum_statistics",
    "threshold_array",
    "truth_distance",
    "volume_statistics",
]

#: score arrays returned by :func:`scores_from_counts`
SCORES = ("iou", "dice", "accuracy", "precision", "recall", "specificity")


def threshold_array(thresholds: int | Sequence[float] = 101) -> np.ndarray:
    """Validated thresholds: ``n`` (>= 2) → ``linspace(0, 1, n)``, or values in [0, 1]."""
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        if thresholds < 2:
            raise ParameterError(f"need at least 2 thresholds; got {thresholds}")
        return np.linspace(0.0, 1.0, int(thresholds))
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if t.size == 0 or not np.all(np.isfinite(t)) or t.min() < 0 or t.max() > 1:
        raise ParameterError(f"thresholds must be finite values in [0, 1]; got {t.tolist()[:8]}")
    return np.unique(t)


def probability_grid(thresholds: np.ndarray, *, levels: int | None = None,
                     fine: int = 1000) -> np.ndarray:
    """The grid: thresholds, ``k / fine`` and (uint8) the stored levels ``v / levels``."""
    parts = [np.asarray(thresholds, np.float64), np.arange(fine + 1) / fine]
    if levels:
        parts.append(np.arange(levels + 1) / levels)
    return np.unique(np.concatenate(parts))


def distance_halo(voxel_size: Sequence[float], max_distance: float) -> tuple[int, int, int]:
    """Halo (voxels per axis) that makes every distance ``<= max_distance`` exact.

    A membrane voxel at distance ``d <= D`` lies within ``floor(D / s)`` voxels along
    an axis of spacing ``s``; one voxel more covers float rounding.
    """
    if not max_distance > 0:
        raise ParameterError(f"max_distance must be > 0 (physical units); got {max_distance!r}")
    return tuple(int(np.floor(max_distance / float(s))) + 1 for s in voxel_size)


@dataclass(frozen=True)
class EvalSpec:
    """What a block needs to compute its statistics (see the module notes).

    Attributes
    ----------
    grid : ndarray
        Probability grid (float64, ascending, contains 0 and every threshold).
    scale : float or None
        Integer stores: ``p = v / scale``; ``None`` for float probabilities.
    voxel_size : (z, y, x) float
        Physical voxel size (µm).
    max_distance : float
        Distance cap (µm); ``dist_edges[-1]``.
    dist_edges, prob_edges : ndarray
        Bin edges of the heat map (distance bins, then one overflow bin ``> cap``;
        probability bins ``[e_i, e_{i+1})``, the last one closed).
    tolerance, connectivity : int
        Boundary-tolerant footprint.
    """

    grid: np.ndarray
    scale: float | None
    voxel_size: tuple[float, float, float]
    max_distance: float
    dist_edges: np.ndarray
    prob_edges: np.ndarray
    tolerance: int = 1
    connectivity: int = 3

    @property
    def footprint(self) -> np.ndarray:
        base = ndi.generate_binary_structure(3, self.connectivity)
        return ndi.iterate_structure(base, self.tolerance) if self.tolerance > 1 else base

    @property
    def halo_prob(self) -> tuple[int, int, int]:
        """Halo of the probability block (the tolerance footprint)."""
        return (self.tolerance,) * 3

    @property
    def halo_truth(self) -> tuple[int, int, int]:
        """Halo of the truth block (distance cap and footprint)."""
        return tuple(max(h, self.tolerance)
                     for h in distance_halo(self.voxel_size, self.max_distance))

    @classmethod
    def make(cls, *, thresholds: np.ndarray, dtype: Any, voxel_size: Sequence[float],
             max_distance: float | None = None, prob_bins: int = 50,
             dist_bin: float | None = None, tolerance: int = 1, connectivity: int = 3,
             mask: bool = False) -> EvalSpec:
        """Build a spec; defaults: cap = 20 finest voxels, distance bins one finest voxel."""
        dtype = np.dtype(dtype)
        vs = tuple(float(s) for s in voxel_size)
        if len(vs) != 3 or min(vs) <= 0:
            raise ParameterError(f"voxel_size must be 3 positive numbers; got {voxel_size!r}")
        if mask and dtype.kind in "iub":
            scale = 1.0
        elif dtype == np.uint8:
            scale = 255.0
        elif dtype.kind == "f":
            scale = None
        else:
            raise ParameterError(f"probabilities must be float in [0, 1] or uint8 (v / 255), "
                                 f"or a 0/1 mask; got dtype {dtype}")
        if int(prob_bins) < 1:
            raise ParameterError(f"prob_bins must be >= 1; got {prob_bins!r}")
        prob_edges = np.linspace(0.0, 1.0, int(prob_bins) + 1)
        grid = probability_grid(np.concatenate([thresholds, prob_edges]),
                                levels=int(scale) if scale else None)
        step = min(vs) if dist_bin is None else float(dist_bin)
        cap = 20 * min(vs) if max_distance is None else float(max_distance)
        distance_halo(vs, cap)
        if not step > 0:
            raise ParameterError(f"distance bin width must be > 0; got {dist_bin!r}")
        n = max(1, int(np.ceil(cap / step - 1e-9)))
        if int(tolerance) < 1 or int(connectivity) not in (1, 2, 3):
            raise ParameterError(f"tolerance must be >= 1 and connectivity 1, 2 or 3; got "
                                 f"{tolerance!r}, {connectivity!r}")
        return cls(grid, scale, vs, cap, np.minimum(np.arange(n + 1) * step, cap),
                   prob_edges, int(tolerance), int(connectivity))


def grid_index(prob: np.ndarray, spec: EvalSpec) -> np.ndarray:
    """Grid index (int32) of each voxel: the number of grid points ``<= p``."""
    if spec.scale is not None:
        prob = prob.astype(np.int64, copy=False) if prob.dtype == bool else prob
        lut = np.searchsorted(spec.grid, np.arange(int(spec.scale) + 1) / spec.scale,
                              side="right").astype(np.int32)
        return lut[np.minimum(prob, int(spec.scale))]
    return np.searchsorted(spec.grid, prob, side="right").astype(np.int32)


def _bad_prob(prob: np.ndarray, spec: EvalSpec) -> int:
    if spec.scale is not None:
        return int(np.count_nonzero(prob > spec.scale))
    return int(prob.size - np.count_nonzero((prob >= 0) & (prob <= 1)))


def truth_distance(truth: np.ndarray, *, voxel_size: Sequence[float],
                   max_distance: float) -> np.ndarray:
    """Distance (float64, physical units) to the nearest true voxel, capped.

    Distances above ``max_distance`` (and every voxel when there is no true voxel)
    are ``inf``.
    """
    truth = np.asarray(truth) != 0
    if not truth.any():
        return np.full(truth.shape, np.inf)
    d = ndi.distance_transform_edt(~truth, sampling=tuple(float(s) for s in voxel_size))
    d[d > max_distance] = np.inf
    return d


def _crop(a: np.ndarray, halo: Sequence[int]) -> np.ndarray:
    return a[tuple(slice(h, a.shape[i] - h) for i, h in enumerate(halo))]


def block_statistics(prob_ext: np.ndarray, truth_ext: np.ndarray, spec: EvalSpec
                     ) -> dict[str, np.ndarray]:
    """Histograms of one block (the core), given the block extended by its halos.

    ``prob_ext`` carries :attr:`EvalSpec.halo_prob`, ``truth_ext``
    :attr:`EvalSpec.halo_truth` voxels on every side (zeros outside the volume).

    Returns
    -------
    dict of int64 arrays
        ``hist`` (2, G+1) confusion histogram; ``near_truth`` (G+1) grid indices of
        voxels within tolerance of a true voxel; ``truth_near_pred`` (G+1) footprint
        maximum of the grid index at true voxels; ``heat`` (prob bins, distance bins
        + 1) 2D histogram; ``bad`` [probabilities outside [0, 1] or NaN, truth
        values other than 0/1]; ``voxels``.
    """
    g = spec.grid.size + 1
    idx_ext = grid_index(prob_ext, spec)
    idx = _crop(idx_ext, spec.halo_prob)
    prob = _crop(prob_ext, spec.halo_prob)
    truth_raw = _crop(truth_ext, spec.halo_truth)
    bad_truth = int(np.count_nonzero(truth_raw > 1))
    t_ext = truth_ext != 0
    truth = _crop(t_ext, spec.halo_truth)
    hist = np.bincount(idx.ravel() + g * truth.ravel(), minlength=2 * g).reshape(2, g)
    fp = spec.footprint
    inner = tuple(h - spec.tolerance for h in spec.halo_truth)
    near = ndi.binary_dilation(_crop(t_ext, inner), structure=fp)
    near = _crop(near, (spec.tolerance,) * 3)
    near_truth = np.bincount(idx[near], minlength=g)
    idx_max = _crop(ndi.maximum_filter(idx_ext, footprint=fp, mode="constant", cval=0),
                    spec.halo_prob)
    truth_near_pred = np.bincount(idx_max[truth], minlength=g)
    dist = _crop(truth_distance(t_ext, voxel_size=spec.voxel_size,
                                max_distance=spec.max_distance), spec.halo_truth)
    nd = spec.dist_edges.size - 1
    dbin = np.searchsorted(spec.dist_edges, dist, side="right") - 1
    dbin[dist == spec.max_distance] = nd - 1
    dbin = np.minimum(dbin, nd)
    # prob_edges are grid points, so a voxel's heat-map row follows from its grid index
    np_ = spec.prob_edges.size - 1
    row = np.clip(np.searchsorted(spec.prob_edges, spec.grid, side="right") - 1, 0, np_ - 1)
    pbin = row[np.maximum(idx - 1, 0)]
    heat = np.bincount((pbin * (nd + 1) + dbin).ravel(),
                       minlength=np_ * (nd + 1)).reshape(np_, nd + 1)
    return {"hist": hist.astype(np.int64), "near_truth": near_truth.astype(np.int64),
            "truth_near_pred": truth_near_pred.astype(np.int64), "heat": heat.astype(np.int64),
            "bad": np.array([_bad_prob(prob, spec), bad_truth], np.int64),
            "voxels": np.array([idx.size], np.int64)}


def sum_statistics(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Add block statistics key by key."""
    parts = list(parts)
    return {k: np.sum([p[k] for p in parts], axis=0) for k in parts[0]}


def volume_statistics(prob: np.ndarray, truth: np.ndarray, spec: EvalSpec
                      ) -> dict[str, np.ndarray]:
    """In-memory reference: :func:`block_statistics` of a whole (z, y, x) volume."""
    pad = lambda a, h: np.pad(a, [(k, k) for k in h])  # noqa: E731
    return block_statistics(pad(prob, spec.halo_prob), pad(truth, spec.halo_truth), spec)


def _suffix(counts: np.ndarray) -> np.ndarray:
    """``out[..., j]`` = voxels with grid index > j (predicted at ``grid[j]``)."""
    s = np.cumsum(counts[..., ::-1], axis=-1)[..., ::-1]
    return s[..., 1:]


def confusion_at(hist: np.ndarray, grid: np.ndarray, thresholds: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """TP, FP, FN, TN (int64) at each threshold (each must be a grid point)."""
    j = np.searchsorted(grid, thresholds)
    if np.any(j >= grid.size) or np.any(grid[np.minimum(j, grid.size - 1)] != thresholds):
        raise ParameterError("every threshold must be a point of the probability grid")
    pos = _suffix(hist)[:, j]
    n0, n1 = hist.sum(axis=1)
    return {"tp": pos[1], "fp": pos[0], "fn": n1 - pos[1], "tn": n0 - pos[0]}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def scores_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """IoU (Jaccard), Dice (= F1), accuracy, precision, recall, specificity (float64)."""
    tp, fp, fn, tn = (np.asarray(a, np.int64) for a in (tp, fp, fn, tn))
    return {"iou": _ratio(tp, tp + fp + fn), "dice": _ratio(2 * tp, 2 * tp + fp + fn),
            "accuracy": _ratio(tp + tn, tp + fp + fn + tn), "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp)}


def best_thresholds(thresholds: np.ndarray, scores: Mapping[str, np.ndarray],
                    keys: Sequence[str] = ("iou", "dice")) -> dict[str, dict[str, float]]:
    """The threshold maximising each score (the lowest one on ties; NaN scores skipped)."""
    out = {}
    for k in keys:
        s = np.asarray(scores[k])
        if np.all(np.isnan(s)):
            out[k] = {"threshold": None, "value": None}
            continue
        i = int(np.nanargmax(s))
        out[k] = {"threshold": float(thresholds[i]), "value": float(s[i])}
    return out


def auc_scores(hist: np.ndarray) -> dict[str, float | None]:
    """ROC AUC and average precision of the grid-quantised probability.

    Voxels with the same grid index are ties (half credit in the AUC, one step in the
    precision-recall curve), so for uint8 stores these equal the scores of the stored
    values.  ``roc_auc`` = P(index of a membrane voxel > that of a background voxel)
    + 1/2 P(equal); ``average_precision`` = sum over thresholds of (recall step) x
    precision, from the highest threshold down (scikit-learn's definition).
    """
    h0, h1 = (np.asarray(h, np.float64) for h in hist)
    n0, n1 = h0.sum(), h1.sum()
    if n0 == 0 or n1 == 0:
        return {"roc_auc": None, "average_precision": None}
    below0 = np.cumsum(h0) - h0  # background voxels with a lower index
    auc = float(np.sum(h1 * (below0 + 0.5 * h0)) / (n0 * n1))
    tp, fp = np.cumsum(h1[::-1]), np.cumsum(h0[::-1])  # predicted from the top index down
    keep = h1[::-1] > 0  # where recall steps up, tp > 0, so tp + fp > 0
    ap = float(np.sum(h1[::-1][keep] / n1 * tp[keep] / (tp[keep] + fp[keep])))
    return {"roc_auc": auc, "average_precision": ap}


def ecdf(hist: np.ndarray, grid: np.ndarray) -> dict[str, np.ndarray]:
    """``F(x) = P(p < x)`` at every grid point: ``all``, ``membrane``, ``background``."""
    c = np.cumsum(hist, axis=-1)[:, : grid.size]
    n = hist.sum(axis=-1)
    return {"x": grid, "all": _ratio(c.sum(0), n.sum()), "membrane": _ratio(c[1], n[1]),
            "background": _ratio(c[0], n[0])}


def boundary_scores(stats: Mapping[str, np.ndarray], grid: np.ndarray,
                    thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Boundary-tolerant precision, recall and F1 at each threshold (see module notes)."""
    j = np.searchsorted(grid, thresholds)
    pred = _suffix(stats["hist"].sum(0))[j]
    good_pred = _suffix(stats["near_truth"])[j]
    n_truth = stats["hist"][1].sum()
    found = _suffix(stats["truth_near_pred"])[j]
    prec, rec = _ratio(good_pred, pred), _ratio(found, n_truth)
    return {"precision": prec, "recall": rec, "f1": _ratio(2 * prec * rec, prec + rec),
            "predicted": pred, "predicted_near_truth": good_pred,
            "truth_near_predicted": found}
