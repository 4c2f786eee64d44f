"""Type stub of the lazy public API (the same names as ``_LAZY`` in ``__init__.py``)."""

from __future__ import annotations

from chunkseg.engine.acme import (
    acme_map as acme_map,
)
from chunkseg.engine.blocks import (
    write_volume as write_volume,
)
from chunkseg.engine.cluster import (
    get_client as get_client,
)
from chunkseg.engine.instances import (
    instance_report as instance_report,
)
from chunkseg.engine.plan import (
    plan_tiles as plan_tiles,
)
from chunkseg.engine.predict import (
    ModelSpec as ModelSpec,
    predict_array as predict_array,
)
from chunkseg.engine.pyramid import (
    finish_image as finish_image,
)
from chunkseg.engine.segment import (
    segment_array as segment_array,
)
from chunkseg.engine.volumes import (
    membrane_volume as membrane_volume,
    scale_volume as scale_volume,
)
from chunkseg.io.store import (
    create_image as create_image,
    mark_complete as mark_complete,
    open_volume as open_volume,
    read_attrs as read_attrs,
    Volume as Volume,
)
from chunkseg.model.batchnorm import (
    recompute_batchnorm as recompute_batchnorm,
)
from chunkseg.model.info import (
    model_info as model_info,
)
from chunkseg.model.io import (
    load_model as load_model,
    save_model as save_model,
)
from chunkseg.model.training_data import (
    CropSampler as CropSampler,
    make_dataset as make_dataset,
)
from chunkseg.model.unet import (
    build_unet as build_unet,
    UNetConfig as UNetConfig,
)
from chunkseg.ops.boundaries import (
    membrane_mask as membrane_mask,
)
from chunkseg.ops.normalize import (
    scale_to_uint8 as scale_to_uint8,
)
from chunkseg.ops.slices import (
    parse_slices as parse_slices,
)
from chunkseg.pipeline.acme import (
    run_acme as run_acme,
)
from chunkseg.pipeline.binarize import (
    run_binarize as run_binarize,
)
from chunkseg.pipeline.convert import (
    run_convert as run_convert,
)
from chunkseg.pipeline.crops import (
    run_crops as run_crops,
)
from chunkseg.pipeline.evaluate import (
    run_evaluate as run_evaluate,
)
from chunkseg.pipeline.info import (
    volume_info as volume_info,
)
from chunkseg.pipeline.normalize import (
    run_normalize as run_normalize,
)
from chunkseg.pipeline.predict import (
    run_predict as run_predict,
    write_threshold_mask as write_threshold_mask,
)
from chunkseg.pipeline.report_training import (
    run_report_training as run_report_training,
)
from chunkseg.pipeline.segment import (
    run_segment as run_segment,
)
from chunkseg.pipeline.synth import (
    run_synth as run_synth,
)
from chunkseg.pipeline.train import (
    run_train as run_train,
)
from chunkseg.synth import (
    synth_volume as synth_volume,
)
from chunkseg.workflows.demo import (
    run_demo as run_demo,
)

__version__: str
__all__: list[str]
