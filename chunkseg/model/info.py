"""What prediction needs to know about a model, read from its metadata without Keras."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from chunkseg.errors import ModelError, ParameterError

__all__ = ["ModelInfo", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What prediction needs from a model's metadata (see :func:`model_info`)."""

    path: str
    sha256: str
    config: Any
    pool: tuple[int, int, int]
    receptive: tuple[int, int, int]
    flops_per_voxel: float
    bytes_per_voxel: float
    max_call_voxels: int
    normalization: dict[str, Any] | None
    metadata: dict[str, Any]


def model_info(model: str | os.PathLike = "default") -> ModelInfo:
    """Resolve a model and read what prediction needs, without loading TensorFlow.

    Returns
    -------
    ModelInfo
        ``path``, ``sha256``, ``pool``, ``receptive``, ``flops_per_voxel``,
        ``bytes_per_voxel`` (activation memory estimate), ``max_call_voxels`` (the most
        input voxels one network call may take), ``normalization``, ``metadata``.

    Raises
    ------
    ModelError
        Missing file, not a Keras archive, or no chunkseg model configuration.
    """
    from chunkseg.model.io import read_metadata, resolve_model
    from chunkseg.model.unet import UNetConfig, flops_per_voxel, pooling_factor, receptive_field

    path = resolve_model(model)
    meta = read_metadata(path)
    if not isinstance(meta.get("config"), dict):
        raise ModelError(f"model file {str(path)!r}: expected chunkseg metadata with a U-Net "
                         f"'config'; found keys {sorted(meta)}")
    try:
        config = UNetConfig.from_dict(meta["config"])
    except ParameterError as exc:
        raise ModelError(f"model file {str(path)!r}: bad U-Net configuration: {exc}") from None
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    # peak RSS growth of one network call (predict_on_batch, oneDNN kernels, folded
    # BatchNorms, the CLI's allocator settings), measured with TensorFlow CPU for the
    # default depth-3 base-8 model: 196-206 B per input voxel for tiles of 1.5 and 11.8 M
    # voxels on a Zen 5 EPYC, 171 B on an older one (about 6.5 float32 maps of
    # base_filters alive at full resolution)
    bytes_per_voxel = 4.0 * 6.5 * config.base_filters
    # TensorFlow CPU (oneDNN) aborts the whole process with std::bad_alloc once a call's
    # input reaches about 2**31 / (18 x base_filters) voxels (base 8: 14.6 M voxels ran,
    # 15.7 M aborted): an int32 element count inside a convolution.  Stay 20 % below.
    max_call_voxels = int(0.8 * 2**31 / (18 * config.base_filters))
    return ModelInfo(path=str(path), sha256=sha, config=config, pool=pooling_factor(config),
                     receptive=receptive_field(config), flops_per_voxel=flops_per_voxel(config),
                     bytes_per_voxel=bytes_per_voxel, max_call_voxels=max_call_voxels,
                     normalization=meta.get("normalization"),
                     metadata=meta)
