"""Where ``segment`` writes its labels, and their NGFF ``image-label`` description.

Labels go either to a store of their own (``--out cells.ome.zarr``) or inside the
image they label (``--labels-in raw.ome.zarr`` → ``raw.ome.zarr/labels/cells``), where
NGFF viewers pair them with the image.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError
from chunkseg.io.labels import (
    MAX_LABEL_ENTRIES,
    label_image_path,
    register_label,
    write_image_label,
)

__all__ = ["describe_labels", "label_output"]

#: cell-table columns copied into the per-label ``properties`` (besides ``voxels``)
PROPERTY_COLUMNS = ("volume_um3", "centroid_z_um", "centroid_y_um", "centroid_x_um")


def label_output(
    out: str | os.PathLike | None,
    labels_in: str | os.PathLike | None,
    name: str,
    *,
    shape: Sequence[int],
) -> Path:
    """The labels' store: ``out``, or ``<labels_in>/labels/<name>`` (checked to fit there).

    Raises
    ------
    ParameterError
        Both or neither of ``out`` and ``labels_in`` given.
    FormatError, ShapeError
        ``labels_in`` is not an image of the labels' shape.
    """
    if (out is None) == (labels_in is None):
        raise ParameterError(
            "give exactly one of out (--out LABELS.ome.zarr) and labels_in (--labels-in "
            f"RAW.ome.zarr); got out={out!r}, labels_in={labels_in!r}")
    if labels_in is None:
        return Path(out)
    return label_image_path(labels_in, name, shape=shape)


def _table_properties(table: Path, t: int) -> list[dict[str, Any]]:
    with open(table, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["t"]) == t]
    return [{"label-value": int(r["id"]), "voxels": int(r["voxels"]),
             **{k: float(r[k]) for k in PROPERTY_COLUMNS}} for r in rows]


def describe_labels(
    out: str | os.PathLike,
    *,
    source: str | os.PathLike,
    image: str | os.PathLike | None,
    n_cells: int,
    times: Sequence[int],
    table: str | os.PathLike,
) -> None:
    """Write the label image's colours and properties (the cell table's, for one time point);
    list it in its image's ``labels`` group when it lives there.

    Parameters
    ----------
    out : path-like
        The label image group.
    source : path-like
        The probability it was segmented from (referenced when ``image`` is None).
    image : path-like, optional
        The image holding the labels as ``<image>/labels/<name>`` (the source image
        is then ``../../``).
    n_cells : int
        The largest cell id: every time point numbers its cells 1..n.
    times : sequence of int
        The time points (the cell table's ``t``).
    table : path-like
        The cell table CSV.
    """
    values = np.arange(1, int(n_cells) + 1)
    if len(times) == 1 and values.size <= MAX_LABEL_ENTRIES:
        props = _table_properties(Path(table), int(times[0]))
    else:
        props = [{"label-value": int(v)} for v in values]
    write_image_label(out, source="../../" if image else os.path.relpath(source, out),
                      properties=props)
    if image is not None:
        register_label(image, Path(out).name)
