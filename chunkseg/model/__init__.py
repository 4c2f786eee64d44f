"""Keras 3 3D U-Net, losses/metrics, save/load with metadata, the default model.

Names are imported lazily: ``from chunkseg.model import receptive_field`` does not load
Keras; ``build_unet``/``load_model`` import it when called.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "UNetConfig": "chunkseg.model.unet",
    "build_unet": "chunkseg.model.unet",
    "pooling_factor": "chunkseg.model.unet",
    "receptive_field": "chunkseg.model.unet",
    "flops_per_voxel": "chunkseg.model.unet",
    "MembraneLoss": "chunkseg.model.losses",
    "membrane_loss": "chunkseg.model.losses",
    "default_metrics": "chunkseg.model.losses",
    "save_model": "chunkseg.model.io",
    "load_model": "chunkseg.model.io",
    "read_metadata": "chunkseg.model.io",
    "resolve_model": "chunkseg.model.io",
    "DEFAULT_MODEL": "chunkseg.model.io",
    "ModelInfo": "chunkseg.model.info",
    "model_info": "chunkseg.model.info",
    "Crop": "chunkseg.model.training_data",
    "CropSampler": "chunkseg.model.training_data",
    "make_dataset": "chunkseg.model.training_data",
    "recompute_batchnorm": "chunkseg.model.batchnorm",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chunkseg.model' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
