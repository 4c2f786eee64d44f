"""Checks and starting points of ``chunkseg train``: mask values, ``--init`` weights, resume.

- :func:`check_mask_values`: every training / validation mask holds only 0, 1 (and the
  ignore value), with at least one labelled membrane voxel -- checked on the values in one
  streaming pass (dask, chunk by chunk), whatever the store's ``kind`` says;
- :func:`init_weights`: the U-Net configuration and weights of a model to fine-tune
  (``--init default`` or a ``.keras`` file), refusing one whose architecture differs from
  the configuration asked for;
- :func:`checkpoint_identity` / :func:`resume_point`: what a resumed run must share with
  the run it continues, and where it continues.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chunkseg.errors import InputError, ModelError
from chunkseg.model.unet import UNetConfig

__all__ = ["check_mask_values", "checkpoint_identity", "init_weights", "resume_point"]


def _as_dask(src: Any) -> Any:
    import dask.array as da

    arr = src.array
    if src.is_zarr:  # read whole shards: one task per shard, not per inner chunk
        arr = da.from_zarr(arr, chunks=getattr(arr, "shards", None) or arr.chunks)
    return arr if arr.ndim == 4 else arr[None]


def check_mask_values(masks: Sequence[Any], *, ignore_value: int | None = None) -> None:
    """Raise :class:`InputError` unless every mask holds only 0/1 (and ``ignore_value``)
    and at least one 1.

    Parameters
    ----------
    masks : sequence of opened sources (``CropSampler.masks``)
        Read chunk by chunk (memory bounded by the chunk size).
    ignore_value : int, optional
        The value of unlabelled voxels, allowed besides 0 and 1.
    """
    import dask
    import dask.array as da

    allowed = [0, 1] + ([ignore_value] if ignore_value is not None else [])
    for src in masks:
        m = _as_dask(src)
        ok = da.isin(m, allowed)
        ones, bad, worst = dask.compute((m == 1).sum(), (~ok).sum(),
                                        da.where(ok, 0, m).max(), scheduler="threads")
        if bad:
            hint = " (run `chunkseg binarize` on labels)" \
                if src.attrs.get("kind") == "labels" else ""
            raise InputError(f"{src.name}: expected a membrane mask of values {allowed}; found "
                             f"{int(bad)} voxels outside it (e.g. {worst.item()}){hint}")
        if not ones:
            what = "0" if ignore_value is None else f"0 or the ignore value {ignore_value}"
            raise InputError(f"{src.name}: expected a membrane mask with at least one "
                             f"membrane voxel (1); found only {what}")


def init_weights(init: str | os.PathLike[str], requested: UNetConfig | None
                 ) -> tuple[UNetConfig, list[np.ndarray], dict[str, Any]]:
    """The configuration, weights and provenance of the model to start from.

    Parameters
    ----------
    init : "default" or path
        A chunkseg ``.keras`` model.
    requested : UNetConfig or None
        The architecture asked for (``[model]`` / ``--depth`` ...); None: the model's own.

    Raises
    ------
    ModelError
        Missing or non-chunkseg file, or an architecture that differs from ``requested``.
    """
    from chunkseg.model.io import load_model, read_metadata, resolve_model

    path = resolve_model(init)
    meta = read_metadata(path)
    try:
        config = UNetConfig.from_dict(meta.get("config") or {})
    except Exception as exc:  # noqa: BLE001  (any bad stored configuration)
        raise ModelError(f"--init model {str(path)!r} has no usable U-Net configuration: "
                         f"{exc}") from None
    if requested is not None and requested != config:
        diff = {k: (v, config.to_dict()[k]) for k, v in requested.to_dict().items()
                if config.to_dict().get(k) != v}
        raise ModelError(f"--init model {str(path)!r} is incompatible with the requested "
                         f"U-Net: (requested, found) {diff}; drop [model] / --depth / "
                         "--base-filters to fine-tune its own architecture")
    model, _ = load_model(path)
    record = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "voxel_size": meta.get("voxel_size"), "normalization": meta.get("normalization")}
    return config, model.get_weights(), record


def checkpoint_identity(*, model: Mapping[str, Any], options: Mapping[str, Any],
                        data: Any, validation: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between a training and its ``resume``: all but ``epochs``
    (a resumed run may train longer) and ``patience``."""
    opts = {k: v for k, v in options.items() if k not in ("epochs", "patience")}
    return {"model": dict(model), "options": opts, "data": data, "validation": validation,
            **dict(extra)}


def resume_point(path: str | os.PathLike[str], identity: Mapping[str, Any], *, resume: bool
                 ) -> tuple[dict[str, Any], dict[str, list[np.ndarray]] | None]:
    """The checkpoint to continue: ``(state, arrays)``, or ``({}, None)`` for a fresh start
    (``resume`` False, or no checkpoint written yet).

    Raises
    ------
    ResumeMismatchError
        The checkpoint was written by a training with other data, model or options.
    """
    from chunkseg.model.checkpoint import read_checkpoint

    if not resume or not os.path.exists(path):
        return {}, None
    return read_checkpoint(path, identity=identity)
