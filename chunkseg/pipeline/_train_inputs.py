"""Starting points of ``chunkseg train``: ``--init`` weights, resume.

(Mask values -- 0/1, the ignore value, at least one membrane voxel -- are checked by the
crop sampler, :class:`chunkseg.model.training_data.CropSampler`.)

- :func:`init_weights`: the U-Net configuration and weights of a model to fine-tune
  (``--init default`` or a ``.keras`` file), refusing one whose architecture differs from
  the configuration asked for;
- :func:`checkpoint_identity` / :func:`resume_point`: what a resumed run must share with
  the run it continues, and where it continues.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from chunkseg.errors import ModelError
from chunkseg.model.unet import UNetConfig

__all__ = ["checkpoint_identity", "init_weights", "resume_point"]


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


#: options that are part of the identity only when set (not at these values), so that
#: a checkpoint whose identity does not name them resumes
_IDENTITY_IF_SET = {"decay_epochs": 0}


def checkpoint_identity(*, model: Mapping[str, Any], options: Mapping[str, Any],
                        data: Any, validation: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """What must not change between a training and its ``resume``: all but ``epochs``
    (a resumed run may train longer), ``patience`` and ``bn_recompute`` (it changes only
    the saved model); ``decay_epochs`` only when set."""
    opts = {k: v for k, v in options.items() if k not in ("epochs", "patience", "bn_recompute")
            and not (k in _IDENTITY_IF_SET and v == _IDENTITY_IF_SET[k])}
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
