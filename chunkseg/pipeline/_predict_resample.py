"""Whether ``chunkseg predict`` resamples its input to the model's voxel size, and by how much.

The model declares the voxel size it was trained at (metadata ``voxel_size``, µm z y x;
None when its training volumes differed).  The input's voxel size comes from
``--voxel-size``, else its metadata.  Resampling happens only when both are known and
some axis differs by more than :data:`chunkseg.ops.resample.RESAMPLE_TOLERANCE`; the
per-block work is :func:`chunkseg.engine.resample_predict.predict_array_resampled`.

An input voxel size counts as unknown when nothing recorded it: a chunkseg store
converted without one (``voxel_size_from == "default"``), a TIFF without resolution
tags, or a foreign Zarr store without OME scale (read as 1 µm).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chunkseg.errors import ParameterError
from chunkseg.ops.resample import RESAMPLE_TOLERANCE, zoom_factors

__all__ = ["input_voxel_size", "resample_plan"]


def input_voxel_size(path: str | os.PathLike, vol: Any) -> tuple[float, float, float] | None:
    """The recorded voxel size of an opened input (``open_volume``), None when unknown."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        from chunkseg.io.tiff import open_tiff

        return open_tiff(path)[1] or None
    origin = vol.attrs.get("voxel_size_from")
    if origin == "default" or (origin is None and tuple(vol.voxel_size) == (1.0, 1.0, 1.0)):
        return None
    return tuple(float(v) for v in vol.voxel_size)  # type: ignore[return-value]


def resample_plan(
    path: str | os.PathLike,
    vol: Any,
    metadata: Mapping[str, Any],
    *,
    enabled: bool = True,
    voxel_size: Sequence[float] | None = None,
) -> dict[str, Any]:
    """How ``predict`` treats scale: ``{"factor", "input_voxel_size", "model_voxel_size",
    "reason", "warning"}``; ``factor`` (model / input voxel size per axis) is None when
    the input is predicted as it is, and ``warning`` a line to show the user (or None).

    Raises
    ------
    ParameterError
        ``voxel_size`` is not 3 positive numbers.
    """
    if voxel_size is not None:
        voxel_size = tuple(float(v) for v in voxel_size)
        if len(voxel_size) != 3 or not all(v > 0 for v in voxel_size):
            raise ParameterError(f"voxel_size must be 3 positive numbers (z y x); got "
                                 f"{voxel_size}")
    model = metadata.get("voxel_size")
    model = tuple(float(v) for v in model) if model else None
    given = voxel_size or input_voxel_size(path, vol)
    plan: dict[str, Any] = {"factor": None, "input_voxel_size": given,
                            "model_voxel_size": model, "tolerance": RESAMPLE_TOLERANCE,
                            "warning": None}
    if not enabled:
        plan["reason"] = "disabled (--no-resample)"
    elif model is None:
        plan["reason"] = "the model declares no voxel size"
    elif given is None:
        plan["reason"] = "the input has no voxel size"
        plan["warning"] = (f"{path}: no voxel size recorded (expected OME scale or TIFF "
                           f"resolution); predicting without resampling to the model's "
                           f"{list(model)} µm (give --voxel-size Z Y X)")
    else:
        plan["factor"] = zoom_factors(given, model)
        plan["reason"] = "within tolerance" if plan["factor"] is None else "resampled"
    return plan
