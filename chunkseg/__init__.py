"""chunkseg: out-of-core 3D U-Net membrane segmentation for light-sheet time series.

The public API is imported lazily so that ``import chunkseg`` stays light (no
TensorFlow, no ``distributed``).  Each name below maps to the module that owns it;
``__init__.pyi`` states the same imports for type checkers (a test keeps the two equal).

Examples
--------
>>> import chunkseg
>>> vol = chunkseg.open_volume("raw.ome.zarr")   # doctest: +SKIP
>>> vol.data                                     # lazy dask array (t, z, y, x)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY: dict[str, str] = {
    "open_volume": "chunkseg.io.store",
    "Volume": "chunkseg.io.store",
    "create_image": "chunkseg.io.store",
    "mark_complete": "chunkseg.io.store",
    "read_attrs": "chunkseg.io.store",
    "write_volume": "chunkseg.engine.blocks",
    "finish_image": "chunkseg.engine.pyramid",
    "get_client": "chunkseg.engine.cluster",
    "run_convert": "chunkseg.pipeline.convert",
    "volume_info": "chunkseg.pipeline.info",
    "scale_to_uint8": "chunkseg.ops.normalize",
    "membrane_mask": "chunkseg.ops.boundaries",
    "parse_slices": "chunkseg.ops.slices",
    "run_normalize": "chunkseg.pipeline.normalize",
    "run_binarize": "chunkseg.pipeline.binarize",
    "CropSampler": "chunkseg.model.training_data",
    "make_dataset": "chunkseg.model.training_data",
    "recompute_batchnorm": "chunkseg.model.batchnorm",
    "run_crops": "chunkseg.pipeline.crops",
    "synth_volume": "chunkseg.synth",
    "run_synth": "chunkseg.pipeline.synth",
    "UNetConfig": "chunkseg.model.unet",
    "build_unet": "chunkseg.model.unet",
    "load_model": "chunkseg.model.io",
    "save_model": "chunkseg.model.io",
    "run_train": "chunkseg.pipeline.train",
    "run_evaluate": "chunkseg.pipeline.evaluate",
    "run_report_training": "chunkseg.pipeline.report_training",
    "run_segment": "chunkseg.pipeline.segment",
    "run_predict": "chunkseg.pipeline.predict",
    "run_demo": "chunkseg.workflows.demo",
    "run_acme": "chunkseg.pipeline.acme",
    "instance_report": "chunkseg.engine.instances",
    "write_threshold_mask": "chunkseg.pipeline.predict",
    # array level: the same computations on a dask (or NumPy) array, no stores
    "predict_array": "chunkseg.engine.predict",
    "ModelSpec": "chunkseg.engine.predict",
    "model_info": "chunkseg.model.info",
    "plan_tiles": "chunkseg.engine.plan",
    "acme_map": "chunkseg.engine.acme",
    "segment_array": "chunkseg.engine.segment",
    "scale_volume": "chunkseg.engine.volumes",
    "membrane_volume": "chunkseg.engine.volumes",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chunkseg' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
