"""Inference precision: a bfloat16 copy of a saved float32 chunkseg model.

On CPUs with AVX512-BF16 (or AMX) oneDNN runs bfloat16 convolutions natively; the
``mixed_bfloat16`` Keras policy computes in bfloat16 and keeps float32 weights and a
float32 sigmoid output.  Measured with the default-size U-Net on an AMD EPYC with
avx512_bf16 (no AMX): 1.2-1.6x the float32 speed (``benchmarks/results/mixed_precision.md``);
on a Zen 3 EPYC with AVX2 only, where oneDNN has no bfloat16 kernels: 0.03-0.04x
(``benchmarks/results/mixed_precision_zen3.md``).  With the packaged model on a synthetic
volume the probability differs from float32 by 3e-4 on average (at most 0.014, 3.5 8-bit
grey levels) and the masks at 0.5 agree on 99.97 % of the voxels, so
``chunkseg predict --precision bfloat16`` is offered, float32 staying the default (the
seam-free equality is exact in float32 only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chunkseg.errors import ParameterError

__all__ = ["PRECISIONS", "with_precision"]

#: inference precisions of ``chunkseg predict``: name -> Keras dtype policy
PRECISIONS: dict[str, str] = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def with_precision(model: Any, metadata: Mapping[str, Any], precision: str) -> Any:
    """``model`` itself for ``"float32"``, else the same U-Net rebuilt under the precision's
    dtype policy with the same weights.

    Raises
    ------
    ParameterError
        Unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {sorted(PRECISIONS)}; got {precision!r}")
    if precision == "float32":
        return model
    import keras

    from chunkseg.model.unet import UNetConfig, build_unet

    previous = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        copy = build_unet(UNetConfig.from_dict(dict(metadata["config"])))
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
