"""``chunkseg segment``: cell instance labels from a membrane probability, blockwise.

Two methods, both computed block by block with halos and merged exactly across block
faces (:mod:`chunkseg.engine.segment`), so the labels are identical (same ids) for
every processing block shape and equal to a whole-volume pass:

* ``agglo`` (default): fragments, their region graph with the boundary probability
  over each whole interface, one global agglomeration (:mod:`chunkseg.engine.agglomerate`);
* ``flood``: the seeded bounded watershed (:mod:`chunkseg.ops.watershed`).
  Output: an OME-Zarr label image (uint32, uint64 if more cells;
NGFF 0.5 ``image-label`` metadata so napari opens it as labels) and a cell table
``<out>/cells.csv`` (t, id, voxels, volume µm³, centroid µm, bounding box voxels).
The table is written time point by time point into the work folder while the global
step runs (nothing per time point stays in memory) and moved into the output after the
labels; a resumed run writes it again from the start.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np

from chunkseg.defaults import SEGMENT_BLOCK
from chunkseg.engine.agglomerate import SegmentMethod, segment_method
from chunkseg.engine.blocks import write_volume
from chunkseg.engine.segment import (
    WORK_LAYOUT, Reader, final_labels, remove_work, segment_volume,
)
from chunkseg.engine.stats import fold
from chunkseg.errors import DTypeError, InputError, OutputExistsError, ResumeMismatchError
from chunkseg.io.fingerprint import fingerprint as run_fingerprint
from chunkseg.engine.pyramid import finish_image
from chunkseg.io.store import check_resume_pyramid, create_image, is_zarr, open_volume, read_attrs
from chunkseg.ops.rag import Criterion, Linkage
from chunkseg.ops.segstats import SegStats
from chunkseg.ops.slices import parse_timepoints
from chunkseg.pipeline.label_image import describe_labels, label_output

__all__ = ["CELL_TABLE", "DEFAULT_BLOCK", "CellTable", "check_probability", "run_segment"]

#: processing block (z, y, x) when none is given
DEFAULT_BLOCK = SEGMENT_BLOCK
#: name of the cell table inside the output store
CELL_TABLE = "cells.csv"


def check_probability(vol, *, name: str, times: tuple[int, int] | None = None) -> Any:
    """The probability as a dask array, after checking dtype and range (one pass).

    uint8 is read as ``v / 255``; a ``kind = "mask"`` store (0/1) as probability 0 / 1.
    The range of a float probability is checked over the time points ``times``
    (half-open; default all), the ones that will be segmented.

    Raises
    ------
    DTypeError, InputError
    """
    data = vol.data
    if vol.attrs.get("kind") == "mask":
        return data.astype(np.float32)
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind != "f":
        raise DTypeError(f"{name}: membrane probability must be float in [0, 1] or uint8; "
                         f"got dtype {data.dtype}")
    t0, t1 = times if times is not None else (0, data.shape[0])
    if data[t0:t1].size == 0:
        raise InputError(f"{name}: membrane probability is empty; found shape {data.shape}")
    pairs = (dask.delayed(np.array)([data[t].min(), data[t].max()]) for t in range(t0, t1))
    (lo, hi), _ = fold(pairs, _min_max,  # one time point at a time
                       name=lambda i: f"segment_range-t{t0 + i:04d}")
    if not (lo >= 0 and hi <= 1):  # NaN fails both comparisons
        raise InputError(f"{name}: membrane probability must lie in [0, 1]; found values in "
                         f"[{lo}, {hi}] (NaN if shown)")
    if lo == hi:
        raise InputError(f"{name}: membrane probability is constant ({lo}); expected "
                         "membranes brighter than the cell interiors")
    return data


def _min_max(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Smallest minimum and largest maximum of ``[min, max]`` pairs (NaN propagates)."""
    a = np.stack(parts)
    return np.array([np.min(a[:, 0]), np.max(a[:, 1])])


class CellTable:
    """The cell table CSV, written one time point at a time (a context manager).

    Parameters
    ----------
    path : path-like
        The CSV, replaced: opened for writing with its header.
    voxel_size : sequence of 3 float
        µm per voxel (z, y, x), for volumes and centroids.
    times : sequence of int
        The ``t`` column of each output time point ``k``.
    """

    COLUMNS = ("t", "id", "voxels", "volume_um3", "centroid_z_um", "centroid_y_um",
               "centroid_x_um", "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1",
               "bbox_x1")
    #: one row, as the csv module writes it (line end ``\r\n``)
    _ROW = "%d,%d,%d,%.6g,%.6g,%.6g,%.6g,%d,%d,%d,%d,%d,%d\r\n"

    def __init__(self, path: str | os.PathLike, voxel_size: Sequence[float],
                 times: Sequence[int]) -> None:
        self.voxel_size = np.asarray(voxel_size, np.float64)
        self.times = times
        self.rows = 0
        self._fh = open(path, "w", newline="")  # noqa: SIM115 - closed by __exit__
        csv.writer(self._fh).writerow(self.COLUMNS)

    def __enter__(self) -> CellTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def write_rows(self, k: int, cells: SegStats) -> None:
        """Append the rows of output time point ``k`` (its cells' statistics)."""
        vs, t = self.voxel_size, int(self.times[k])
        cent = cells.sums / np.maximum(cells.count, 1)[:, None] * vs
        vol = cells.count * float(np.prod(vs))
        cols = [cells.ids, cells.count, vol, *cent.T, *cells.lo.T,
                *(cells.hi.astype(np.int64) + 1).T]
        self._fh.write("".join(self._ROW % (t, *row) for row in zip(*(c.tolist() for c in cols))))
        self.rows += int(cells.ids.size)


def run_segment(
    prob_path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    labels_in: str | os.PathLike | None = None,
    label_name: str = "cells",
    method: SegmentMethod = "agglo",
    threshold: float | None = None,
    min_size: float | None = None,
    seed_distance: float | None = None,
    reach: float | None = None,
    membrane_reach: float | None = None,
    levels: int = 3,
    fragment_radius: float | None = None,
    fragment_sigma: float | None = None,
    linkage: Linkage | None = None,
    criterion: Criterion | None = None,
    timepoints: Any = None,
    block: Sequence[int] | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    pyramid: bool = True,
    client: Any = None,
    progress: bool = True,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Segment cells in a membrane probability volume; write labels and a cell table.

    Parameters
    ----------
    prob_path : path-like
        Membrane probability (t, z, y, x): float in [0, 1], uint8 (``v / 255``) or a
        0/1 mask store; OME-Zarr, Zarr or TIFF.
    out : path-like, optional
        Output OME-Zarr label image (``kind = "labels"``) of its own.
    labels_in : path-like, optional
        Instead of ``out``: write the labels inside this image (same shape) as
        ``<labels_in>/labels/<label_name>``, listed in its NGFF ``labels`` group.
    label_name : str
        Name of the label image inside ``labels_in``.
    method : {"agglo", "flood"}
        ``agglo``: fragments merged on their region graph; ``flood``: seeded flood.
    threshold : float, optional
        In (0, 1).  ``agglo``: fragments whose interface score is below it merge
        (default :data:`chunkseg.engine.agglomerate.DEFAULT_THRESHOLDS` of the
        criterion); ``flood``: the cell interior is ``p < threshold`` (default 0.5).
    min_size : float, optional
        Cells (``flood``: segments) smaller than this many µm³ join a neighbour (>= 0;
        default :data:`chunkseg.engine.agglomerate.DEFAULT_MIN_SIZE`, ``flood``: 1).
    seed_distance, reach, membrane_reach, levels
        ``flood`` only: seeds lie farther than ``seed_distance`` µm (default 0.5) from
        any voxel with ``p >= threshold``; flood extent (see
        :class:`chunkseg.ops.watershed.SegmentParams`).
    fragment_radius, fragment_sigma, linkage, criterion
        ``agglo`` only: see :func:`chunkseg.engine.agglomerate.segment_method`.
    timepoints : "A:B", optional
        Segment only time points A..B-1 (output time index 0 = A).
    block : sequence of 3 int, optional
        Processing block (z, y, x), default (64, 256, 256); the labels do not depend on it.
    chunks : sequence of 3 int, optional
        Output chunk shape.
    overwrite : bool
        Replace an existing output (and its work folder ``<out>.work``).
    resume : bool
        Continue an interrupted run: the work stores and ``out`` are reopened and only
        the seed, flood and relabel blocks not yet done are computed.  The input (path,
        modification time), every parameter, ``timepoints`` and ``block`` must equal
        the first run's.  An output already complete is left as it is.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    client : distributed.Client, optional
        Cluster; ``None`` runs on dask's current scheduler.
    progress : bool
        Progress bars.
    keep_work : bool
        Keep the work stores ``<out>.work`` (provisional labels) for inspection.

    Returns
    -------
    dict
        Paths, shape, dtype, cells per time point, parameters, halos, seconds per
        phase, ``writes`` (blocks ``written`` / ``skipped`` per phase: ``seeds``,
        ``flood``, ``relabel``), ``fingerprint``, ``merge_share`` (face union-find +
        segment statistics + merge plan, over the whole run), ``global_share`` (the
        global step on the segment graph alone), ``graph`` (its nodes and edges) and
        ``merge_share_with_relabel`` (also the final relabelling write, which a
        whole-volume pass needs too).  A resume of a complete output returns only
        ``input``, ``out``, ``resumed``, ``n_cells``, ``fingerprint`` and ``writes``.

    Raises
    ------
    ParameterError
        threshold outside (0, 1), min_size < 0, seed_distance <= 0, bad timepoints,
        an option of the other method.
    DTypeError, InputError
        Probability not float / uint8, values outside [0, 1], empty or constant.
    OutputExistsError
        ``out`` or ``<out>.work`` exists and neither ``overwrite`` nor ``resume`` is given.
    ResumeMismatchError
        ``resume`` but the existing output or work stores were made from another input,
        other parameters, time points or block.
    BlockFailedError
        Blocks of a phase failed after retries; finished blocks are kept for ``resume``.
    """
    t_start = time.perf_counter()
    vol = open_volume(prob_path)
    rules, method_params = segment_method(
        method, voxel_size=vol.voxel_size, threshold=threshold, min_size=min_size,
        seed_distance=seed_distance, reach=reach, membrane_reach=membrane_reach,
        levels=levels, fragment_radius=fragment_radius, fragment_sigma=fragment_sigma,
        linkage=linkage, criterion=criterion)
    params = {"method": method, **method_params.to_dict()}
    t0, t1 = parse_timepoints(timepoints, vol.shape[0])
    out = label_output(out, labels_in, label_name, shape=(t1 - t0, *vol.shape[1:]))
    work = Path(f"{out}.work")
    for path in (out, work):
        if path.exists() and not (overwrite or resume):
            raise OutputExistsError(f"{path}: output exists; pass overwrite (--overwrite) to "
                                    "replace it or resume (--resume) to continue it")
    block = tuple(min(int(b), s) for b, s in zip(block or DEFAULT_BLOCK, vol.shape[1:]))
    fingerprint = run_fingerprint(prob_path, {**params, "block": block,
                                              "timepoints": [t0, t1], "work": WORK_LAYOUT},
                                  shape=vol.shape, dtype=vol.dtype)
    done = _resumed(prob_path, out, fingerprint, pyramid) if resume else None
    if done is not None:
        return done
    if overwrite and not resume:
        remove_work(work)
    t_check = time.perf_counter()
    data = check_probability(vol, name=str(prob_path), times=(t0, t1))
    plain = data is vol.data and is_zarr(prob_path)
    secs = {"check": time.perf_counter() - t_check}
    work.mkdir(parents=True, exist_ok=True)  # the cell table grows there, time point by time point
    with CellTable(work / CELL_TABLE, vol.voxel_size, range(t0, t1)) as table:
        res = segment_volume(Reader(prob_path, cache=True) if plain else Reader(data),
                             vol.shape, rules, work=work, block=block, timepoints=range(t0, t1),
                             client=client, progress=progress, resume=resume,
                             fingerprint=fingerprint, on_cells=table.write_rows)
    secs.update(res["seconds"])
    t_write = time.perf_counter()
    attrs = {"kind": "labels", "source": [str(prob_path)], "segment": params,
             "timepoints": [t0, t1], "block": list(res["block"]), "halo": res["halo"],
             "fingerprint": fingerprint}
    labels = _write_labels(vol, res, out, attrs=attrs, chunks=chunks, client=client,
                           resume=resume, overwrite=overwrite, progress=progress,
                           pyramid=pyramid)
    secs["relabel"] = time.perf_counter() - t_write
    os.replace(work / CELL_TABLE, out / CELL_TABLE)
    describe_labels(out, source=prob_path, image=labels_in, times=range(t0, t1),
                    n_cells=max(labels["n_cells"], default=0), table=out / CELL_TABLE)
    if not keep_work:
        remove_work(work)
    total = time.perf_counter() - t_start
    finish_image(out, client=client, resume=resume, progress=progress,
                 n_cells=labels["n_cells"], segment_seconds=round(total, 3), cell_table=CELL_TABLE)
    return {"input": str(prob_path), "out": str(out), "cell_table": str(out / CELL_TABLE),
            **labels, "timepoints": [t0, t1], "table_rows": table.rows, **params,
            **_run_facts(res, secs, total), "fingerprint": fingerprint}


def _resumed(prob_path, out: Path, fingerprint: str, pyramid: bool) -> dict[str, Any] | None:
    """The summary of an output already complete; refuse one of another run."""
    if not is_zarr(out):  # checked before the work phases, not after them
        return None
    old = read_attrs(out)
    if old.get("fingerprint") != fingerprint:
        raise ResumeMismatchError(
            f"{out}: cannot resume; the input or parameters differ from the first run "
            f"(fingerprint {old.get('fingerprint')!r}, now {fingerprint!r}). "
            "Use --overwrite to start again.")
    check_resume_pyramid(out, pyramid)
    if old.get("complete"):
        return {"input": str(prob_path), "out": str(out), "resumed": "already complete",
                "n_cells": old.get("n_cells"), "fingerprint": fingerprint, "writes": {}}
    return None


def _write_labels(vol, res: dict[str, Any], out: Path, *, attrs: dict[str, Any], chunks,
                  client, resume: bool, overwrite: bool, progress: bool,
                  pyramid: bool) -> dict[str, Any]:
    """The final labels (uint32, uint64 if more cells)."""
    n_cells = res["n_cells"]
    dtype = np.uint32 if max(n_cells, default=0) < np.iinfo(np.uint32).max else np.uint64
    t0, t1 = attrs["timepoints"]
    shape = (t1 - t0, *vol.shape[1:])
    create_image(out, shape=shape, dtype=dtype, voxel_size=vol.voxel_size, chunks=chunks,
                 attrs=attrs, overwrite=overwrite, resume=resume, pyramid=pyramid)
    report = write_volume(final_labels(res["flood"], res["maps"], res["stats"], dtype=dtype), out,
                          client=client, resume=resume, progress=progress,
                          desc="segment: relabel")
    writes = {**res["writes"], "relabel": {"written": report.written, "skipped": report.skipped}}
    return {"shape": list(shape), "dtype": np.dtype(dtype).name, "n_cells": n_cells,
            "writes": writes}


def _run_facts(res: dict[str, Any], secs: dict[str, float], total: float) -> dict[str, Any]:
    """Grid, halo and timing entries of the summary, with the merge's share of the run."""
    # the cross-block merge: face union-find, per-block statistics (CPU seconds summed
    # over tasks, an upper bound of their wall share), the global merge plan
    merge = secs["face_merge"] + secs["stats_merge"] + secs["stats_in_flood_tasks"]
    return {"block": res["block"], "halo": res["halo"], "blocks": res["blocks"],
            "face_pairs": res["face_pairs"], "seed_unions": res["seed_unions"],
            "graph": res["graph"], "global_share": round(secs["global_plan"] / total, 4),
            "seconds": {k: round(v, 3) for k, v in secs.items()},
            "total_seconds": round(total, 3),
            "merge_seconds": round(merge, 3), "merge_share": round(merge / total, 4),
            "merge_share_with_relabel": round((merge + secs["relabel"]) / total, 4)}


