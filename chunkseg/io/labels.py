"""NGFF labels: a label image inside the image it labels (``raw.ome.zarr/labels/cells``).

The image group gets a child group ``labels`` whose ``ome.labels`` lists the label
images; each label image is an ordinary multiscale image with an ``ome.image-label``
block (colours, per-label properties, the source image).  napari (napari-ome-zarr),
ome-zarr-py and the other NGFF viewers open the image and show its labels over it.
"""

from __future__ import annotations

import colorsys
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.errors import FormatError, ParameterError, ShapeError
from chunkseg.io.store import is_zarr, open_volume

__all__ = [
    "LABELS_GROUP",
    "MAX_LABEL_ENTRIES",
    "label_colors",
    "label_image_path",
    "label_names",
    "register_label",
    "write_image_label",
]

LABELS_GROUP = "labels"
#: label values up to which ``colors`` / ``properties`` list every label (the
#: metadata is one JSON document: about 100 bytes per entry)
MAX_LABEL_ENTRIES = 20_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def label_image_path(image: str | os.PathLike, name: str, *, shape: Sequence[int]) -> Path:
    """Where a label image ``name`` of ``image`` lives, after checking that it fits there.

    Parameters
    ----------
    image : path-like
        An OME-Zarr image group (e.g. made by ``chunkseg convert``).
    name : str
        Label image name (letters, digits, ``. _ -``), e.g. ``"cells"``.
    shape : sequence of int
        Shape of the labels to write; it must equal the image's level-0 shape.

    Returns
    -------
    pathlib.Path
        ``<image>/labels/<name>``.

    Raises
    ------
    FormatError
        ``image`` is not an OME-Zarr image group.
    IncompleteStoreError
        ``image`` is a chunkseg store never marked complete.
    ShapeError
        The labels' shape differs from the image's.
    ParameterError
        ``name`` is not a plain name.
    """
    image = Path(image)
    if not _NAME.match(str(name)):
        raise ParameterError(
            f"label name must be letters, digits, '.', '_' or '-'; got {name!r}")
    if not (is_zarr(image) and (image / "0" / "zarr.json").is_file()):
        raise FormatError(f"{image}: expected an OME-Zarr image group (with level '0') to "
                          "hold the labels; found none")
    found = tuple(open_volume(image, verify=False).shape)
    if found != tuple(int(s) for s in shape):
        raise ShapeError(f"{image}: labels inside an image need its shape; expected "
                         f"{tuple(shape)} (the labels), found {found} (the image)")
    return image / LABELS_GROUP / name


def register_label(image: str | os.PathLike, name: str) -> None:
    """List ``name`` in ``<image>/labels`` (created when missing); idempotent."""
    import zarr

    group = zarr.open_group(str(Path(image) / LABELS_GROUP), mode="a", zarr_format=3)
    ome = dict(group.attrs.get("ome", {}))
    names = list(ome.get("labels", []))
    if name not in names:
        names.append(name)
    group.attrs["ome"] = {**ome, "version": "0.5", "labels": names}


def label_names(image: str | os.PathLike) -> list[str]:
    """The label images listed in ``<image>/labels`` (empty when it has none)."""
    node = Path(image) / LABELS_GROUP / "zarr.json"
    if not node.is_file():
        return []
    try:
        return list(json.loads(node.read_text())["attributes"]["ome"]["labels"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{node}: expected NGFF 'ome.labels' metadata; got {exc!r}") from exc


def label_colors(ids: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
    """Distinct, reproducible colours: label 0 transparent, others spread in hue.

    Hues follow the golden ratio from the label value, so neighbouring ids differ
    and a label has the same colour in every run.

    Examples
    --------
    >>> label_colors([0, 1])[0]
    {'label-value': 0, 'rgba': [0, 0, 0, 0]}
    """
    out = []
    for v in (int(i) for i in ids):
        if v == 0:
            out.append({"label-value": 0, "rgba": [0, 0, 0, 0]})
            continue
        h = (v * 0.6180339887498949) % 1.0
        rgb = colorsys.hsv_to_rgb(h, 0.65 + 0.35 * ((v * 7) % 3) / 2, 0.95)
        out.append({"label-value": v, "rgba": [round(255 * c) for c in rgb] + [255]})
    return out


def write_image_label(
    path: str | os.PathLike,
    *,
    source: str,
    properties: Sequence[dict[str, Any]] = (),
) -> None:
    """Write the ``image-label`` block of a label image group.

    Parameters
    ----------
    path : path-like
        The label image group.
    source : str
        Path of the labelled image relative to ``path`` (``"../../"`` inside it).
    properties : sequence of dict
        One dict per label value (``"label-value"`` plus any properties).  Label 0
        (transparent) is added when absent; every listed value gets a colour.  Above
        :data:`MAX_LABEL_ENTRIES` values neither is written and viewers use their own
        colour cycle (napari draws labels missing from ``colors`` transparent).
    """
    import zarr

    props = {int(p["label-value"]): dict(p) for p in properties}
    props.setdefault(0, {"label-value": 0})
    values = sorted(props)
    block: dict[str, Any] = {"version": "0.5", "source": {"image": source}}
    if len(values) <= MAX_LABEL_ENTRIES:
        block.update(colors=label_colors(values), properties=[props[v] for v in values])
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["ome"] = {**group.attrs["ome"], "image-label": block}
