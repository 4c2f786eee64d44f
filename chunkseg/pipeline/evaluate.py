"""``chunkseg evaluate``: score a membrane probability against truth, out of core.

One streaming pass (:func:`chunkseg.engine.reduce.overlap_reduce`) fills, per block
and per time point, the histograms of :mod:`chunkseg.ops.metrics`: probability split
by truth (the threshold sweep and ECDF, exact at every threshold), probability within
the tolerance of truth and its converse (boundary-tolerant scores), and probability
versus distance to the nearest true membrane voxel (heat map; the truth carries a
halo that makes every distance up to ``max_distance`` exact).  Memory: one block
with its halo per task plus a few small histograms.

Outputs in ``out/``: ``report.json`` (every number), PNG figures (threshold sweep,
ECDF, heat map, per time point, training curves when a history is given) and
``report.html`` showing them with the parameters and the inputs' provenance.
Instance metrics of predicted cells (``cells``) against truth instance labels
(``labels``) come from :func:`chunkseg.engine.instances.instance_report`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg import __version__
from chunkseg.engine.instances import instance_report
from chunkseg.engine.reduce import overlap_reduce
from chunkseg.engine.submit import compute_windowed
from chunkseg.engine.volumes import membrane_volume
from chunkseg.errors import DTypeError, InputError, OutputExistsError, ParameterError, ShapeError
from chunkseg.io.jsonable import jsonable
from chunkseg.io.store import open_volume
from chunkseg.ops.metrics import (
    EvalSpec,
    auc_scores,
    best_thresholds,
    block_statistics,
    boundary_scores,
    confusion_at,
    ecdf,
    scores_from_counts,
    sum_statistics,
    threshold_array,
)
from chunkseg.ops.slices import parse_timepoints

__all__ = ["REPORT", "run_evaluate", "summarize"]

#: name of the JSON report inside ``out``
REPORT = "report.json"


def _at(sweep: dict[str, np.ndarray], thresholds: np.ndarray, t: float) -> dict[str, Any]:
    i = int(np.argmin(np.abs(thresholds - t)))
    return {"threshold": float(thresholds[i]), **{k: v[i] for k, v in sweep.items()}}


def summarize(stats: dict[str, np.ndarray], spec: EvalSpec, thresholds: np.ndarray
              ) -> dict[str, Any]:
    """Every number of one report section from summed block statistics."""
    c = confusion_at(stats["hist"], spec.grid, thresholds)
    scores = scores_from_counts(c["tp"], c["fp"], c["fn"], c["tn"])
    sweep = {"threshold": thresholds, **c, **scores}
    tol = boundary_scores(stats, spec.grid, thresholds)
    n = int(stats["voxels"][0])
    n1 = int(stats["hist"][1].sum())
    heat = stats["heat"]
    mean_p = (heat * ((spec.prob_edges[:-1] + spec.prob_edges[1:]) / 2)[:, None]).sum(0)
    return {
        "voxels": n, "membrane_voxels": n1, "membrane_fraction": n1 / n if n else None,
        "best": best_thresholds(thresholds, scores, ("iou", "dice", "accuracy")),
        **auc_scores(stats["hist"]),
        "at_0.5": _at({k: v for k, v in sweep.items() if k != "threshold"}, thresholds, 0.5),
        "sweep": sweep,
        "boundary": {"tolerance_voxels": spec.tolerance, "connectivity": spec.connectivity,
                     "best_f1": best_thresholds(thresholds, tol, ("f1",))["f1"],
                     "at_0.5": _at(tol, thresholds, 0.5), "threshold": thresholds, **tol},
        "ecdf": ecdf(stats["hist"], spec.grid),
        "heat_map": {"prob_edges": spec.prob_edges, "dist_edges_um": spec.dist_edges,
                     "overflow": f"last column: distance > {spec.max_distance} um",
                     "counts": heat,
                     "mean_probability_per_distance_bin": mean_p / np.maximum(heat.sum(0), 1)},
    }


def _open_inputs(prob_path, truth, labels, membrane_width, ignore):
    prob = open_volume(prob_path)
    if not (prob.dtype.kind == "f" or prob.dtype == np.uint8 or prob.attrs.get("kind") == "mask"):
        raise DTypeError(f"{prob_path}: membrane probability must be float in [0, 1] or uint8 "
                         f"(v / 255); got dtype {prob.dtype}")
    if truth is None and labels is None:
        raise ParameterError("evaluate needs the truth: a membrane mask (truth=) or cell "
                             "instance labels (labels=); got neither")
    if truth is not None:
        tvol = open_volume(truth)
        if tvol.dtype.kind not in "iub":
            raise DTypeError(f"{truth}: the truth must be a 0/1 membrane mask (uint8); got dtype "
                             f"{tvol.dtype}")
        source = {"path": str(truth), "kind": "mask", "attrs": tvol.attrs}
        tdata = tvol.data
    else:

        tvol = open_volume(labels)
        tdata = membrane_volume(tvol.data, width=membrane_width, ignore=ignore, name=str(labels))
        source = {"path": str(labels), "kind": "membrane mask from instance labels",
                  "width": membrane_width, "ignore": list(ignore), "attrs": tvol.attrs}
    return prob, tvol, tdata, source


def _time_offset(prob, tvol, prob_path, truth_name) -> int:
    if prob.shape[1:] != tvol.shape[1:]:
        raise ShapeError(f"{prob_path}: probability shape {prob.shape} (t, z, y, x) differs from "
                         f"the truth {truth_name} shape {tvol.shape}")
    if prob.shape[0] == tvol.shape[0]:
        return 0
    t0 = (prob.attrs.get("predict") or {}).get("timepoints", [None])[0]
    if t0 is None or t0 + prob.shape[0] > tvol.shape[0]:
        raise ShapeError(f"{prob_path}: {prob.shape[0]} time points but the truth {truth_name} "
                         f"has {tvol.shape[0]} and the probability records no time range "
                         f"(chunkseg.predict.timepoints) inside it")
    return int(t0)


def run_evaluate(
    prob_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    truth: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    cells: str | os.PathLike | None = None,
    timepoints: Any = None,
    thresholds: int | Sequence[float] = 101,
    max_distance: float | None = None,
    dist_bin: float | None = None,
    prob_bins: int = 50,
    tolerance: int = 1,
    connectivity: int = 3,
    membrane_width: int = 1,
    ignore: Sequence[int] = (0,),
    voxel_size: Sequence[float] | None = None,
    block: Sequence[int] | None = None,
    history: str | os.PathLike | None = None,
    figures: bool = True,
    overwrite: bool = False,
    client: Any = None,
) -> dict[str, Any]:
    """Evaluate a membrane probability against truth; write report, figures and HTML.

    Parameters
    ----------
    prob_path : path-like
        Membrane probability (OME-Zarr / Zarr / TIFF; float in [0, 1], uint8 = v / 255,
        or a ``kind="mask"`` 0/1 store).
    out : path-like
        Report folder (created).
    truth : path-like, optional
        Membrane mask (0/1).  Either this or ``labels``.
    labels : path-like, optional
        Cell instance labels: the truth mask is derived from them
        (:func:`chunkseg.engine.volumes.membrane_volume`, ``membrane_width``,
        ``ignore``) when ``truth`` is not given, and they are the truth of the
        instance metrics when ``cells`` is given.
    cells : path-like, optional
        Predicted cell labels (``chunkseg segment``): instance metrics vs ``labels``.
    timepoints : "A:B", optional
        Time points of the probability to score (each on its own, and all together).
    thresholds : int or sequence of float
        ``n`` evenly spaced thresholds over [0, 1] (default 101), or explicit values.
        At threshold ``t`` a voxel is membrane when ``p >= t``.
    max_distance : float, optional
        Distance cap of the heat map in µm (default 20 of the finest voxel size);
        distances up to it are exact, larger ones form one overflow column.
    dist_bin : float, optional
        Width of the heat map's distance bins in µm (default the finest voxel size).
    prob_bins : int
        Probability bins of the heat map.
    tolerance, connectivity : int
        Boundary-tolerant scores: within ``tolerance`` steps of the
        ``connectivity`` neighbourhood (3 = 26-neighbours).
    voxel_size : (z, y, x), optional
        Override the stores' voxel size (µm).
    block : (z, y, x), optional
        Processing block (default: the probability's storage chunks); memory per task
        is about 40 bytes per voxel of the block with its truth halo.
    history : path-like, optional
        Training ``history.json`` (``chunkseg train``): adds the training curves.
    figures : bool
        Draw the PNG figures and the HTML page.
    overwrite : bool
        Replace an existing report in ``out``.
    client : distributed.Client, optional
        Run on this cluster; ``None`` uses dask's current scheduler.

    Returns
    -------
    dict
        The report (also written to ``out/report.json``).

    Raises
    ------
    ParameterError, ShapeError, DTypeError, InputError, OutputExistsError
    """
    t_start = time.perf_counter()
    out = Path(out)
    if (out / REPORT).exists() and not overwrite:
        raise OutputExistsError(f"{out}: holds a report already ({REPORT}); pass overwrite=True "
                                "(--overwrite) to replace it")
    if cells is not None and labels is None:  # before the streaming pass, not after it
        raise ParameterError("instance metrics of cells= need the truth instance labels "
                             "(labels= / --labels)")
    th = threshold_array(thresholds)
    prob, tvol, tdata, truth_source = _open_inputs(prob_path, truth, labels, membrane_width,
                                                   ignore)
    offset = _time_offset(prob, tvol, prob_path, truth_source["path"])
    vs = voxel_size or (prob.voxel_size if tuple(prob.voxel_size) != (1.0, 1.0, 1.0)
                        else tvol.voxel_size)
    spec = EvalSpec.make(thresholds=th, dtype=prob.dtype, voxel_size=vs,
                         max_distance=max_distance, prob_bins=prob_bins, dist_bin=dist_bin,
                         tolerance=tolerance, connectivity=connectivity,
                         mask=prob.attrs.get("kind") == "mask")
    t0, t1 = parse_timepoints(timepoints, prob.shape[0])
    per_t, used_block = _statistics(prob, tdata, spec, times=(t0, t1), offset=offset,
                                    block=block, client=client)
    _check_values(per_t, prob_path, truth_source["path"])
    report: dict[str, Any] = {
        "chunkseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threshold_semantics": "a voxel is membrane at threshold t when p >= t",
        "inputs": {"probability": {"path": str(prob_path), "dtype": str(prob.dtype),
                                   "shape": list(prob.shape), "attrs": prob.attrs},
                   "truth": truth_source},
        "parameters": {"timepoints": [t0 + offset, t1 + offset], **_parameters(spec, th),
                       "block": used_block},
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "node": platform.node()},
        "overall": summarize(sum_statistics(per_t), spec, th),
        "per_timepoint": [{"t": t0 + offset + k, **summarize(s, spec, th)}
                          for k, s in enumerate(per_t)],
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    if cells is not None:
        report["instances"] = instance_report(cells, labels, timepoints=(t0 + offset,
                                                                          t1 + offset),
                                              client=client)
    out.mkdir(parents=True, exist_ok=True)
    report = jsonable(report)
    if figures:
        from chunkseg.plots.evaluation import draw_report

        report["figures"] = draw_report(report, out, history=history)
    (out / REPORT).write_text(json.dumps(report, indent=1))
    return report


def _statistics(prob, tdata, spec, *, times: tuple[int, int], offset: int, block,
                client) -> tuple[list[dict[str, Any]], list[int]]:
    """Per time point, the summed block statistics (one streaming pass); the block used."""
    def block_fn(p, t):
        return block_statistics(p, t, spec)

    def frame(t: int):
        return prob.data[t] if block is None else prob.data[t].rechunk(tuple(map(int, block)))

    def part(t: int):  # one graph per time point, submitted in a sliding window
        p = frame(t)
        return overlap_reduce(block_fn, [p, tdata[t + offset].rechunk(p.chunks)],
                              depths=[spec.halo_prob, spec.halo_truth])

    per_t = compute_windowed((part(t) for t in range(*times)), client=client,
                             name=lambda i: f"evaluate-t{times[0] + i:04d}")
    return per_t, [int(c[0]) for c in frame(times[0]).chunks]


def _check_values(per_t: list[dict[str, Any]], prob_path, truth_path) -> None:
    """Refuse probabilities outside [0, 1] (or NaN) and a truth that is not 0/1."""
    bad = np.sum([s["bad"] for s in per_t], axis=0)
    if bad[0]:
        raise InputError(f"{prob_path}: membrane probability must lie in [0, 1]; found {bad[0]} "
                         f"voxels outside it or NaN")
    if bad[1]:
        raise InputError(f"{truth_path}: the truth must be a 0/1 membrane mask; found "
                         f"{bad[1]} voxels > 1 (pass instance labels as labels= / --labels)")


def _parameters(spec, th: np.ndarray) -> dict[str, Any]:
    """The scoring parameters of the report."""
    return {"thresholds": len(th), "voxel_size_um": list(spec.voxel_size),
            "max_distance_um": spec.max_distance,
            "dist_bin_um": float(spec.dist_edges[1] - spec.dist_edges[0]),
            "prob_bins": int(spec.prob_edges.size - 1), "tolerance": spec.tolerance,
            "connectivity": spec.connectivity, "halo_truth_voxels": list(spec.halo_truth),
            "halo_prob_voxels": list(spec.halo_prob)}
