"""The 3D U-Net of Çiçek et al. (2016) in Keras 3, and what follows from its configuration.

Only ``keras.layers`` / ``keras.ops`` are used, so the network runs on the TensorFlow
backend (default) and under ``KERAS_BACKEND=jax`` or ``torch``.  The spatial input
shape is ``(None, None, None, 1)``: any tile whose size is a multiple of
:func:`pooling_factor` per axis can be predicted by the same model.

Architecture (``depth`` levels, level ``l`` has ``base_filters * 2**l`` channels)::

    encoder level l:  2 x (Conv3D k^3 'same' [+ BatchNorm] + ReLU)  -> skip_l
                      MaxPool3D(pools[l])                            (l < depth - 1)
    bottom:           2 x (Conv3D + BN + ReLU) [+ SpatialDropout3D]
    decoder level l:  Conv3DTranspose(kernel = stride = pools[l]) -> concat(skip_l)
                      2 x (Conv3D + BN + ReLU)
    head:             Conv3D 1x1x1, sigmoid (float32 even under mixed precision)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chunkseg.errors import ParameterError
from chunkseg.ops.tiling import Triple, as_triple

__all__ = [
    "UNetConfig",
    "build_unet",
    "flops_per_voxel",
    "pooling_factor",
    "receptive_field",
]


@dataclass(frozen=True)
class UNetConfig:
    """Validated configuration of the 3D U-Net.

    Parameters
    ----------
    depth : int
        Number of resolution levels including the bottom (``depth - 1`` poolings), >= 1.
    base_filters : int
        Channels of the first level; level ``l`` has ``base_filters * 2**l``.
    pools : sequence of (pz, py, px), optional
        Pool size of each of the ``depth - 1`` poolings, e.g. ``((1, 2, 2), (2, 2, 2))``
        for anisotropic stacks (no pooling in z at the first level).  Default: all 2.
    kernel_size : int or (kz, ky, kx)
        Odd convolution kernel size (default 3).
    dropout : float
        Rate of the ``SpatialDropout3D`` after the bottom level (0 disables it).
    batchnorm : bool
        BatchNorm after every convolution (then the convolution has no bias).
    bn_momentum : float
        Momentum of the BatchNorm moving statistics used at inference.  0.9 (not
        Keras' 0.99) so they track the weights within a few hundred steps, which short
        CPU trainings and per-epoch validation need.

    Examples
    --------
    >>> cfg = UNetConfig(depth=3, base_filters=8, pools=((1, 2, 2), (2, 2, 2)))
    >>> pooling_factor(cfg)
    (2, 4, 4)
    >>> UNetConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    depth: int = 3
    base_filters: int = 8
    pools: tuple[Triple, ...] = field(default=())
    kernel_size: Triple = (3, 3, 3)
    dropout: float = 0.0
    batchnorm: bool = True
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 1:
            raise ParameterError(f"depth must be an int >= 1; got {self.depth!r}")
        if (not isinstance(self.base_filters, int) or isinstance(self.base_filters, bool)
                or self.base_filters < 1):
            raise ParameterError(f"base_filters must be an int >= 1; got {self.base_filters!r}")
        pools = self.pools
        if pools is None or (isinstance(pools, Sequence) and len(pools) == 0):
            pools = ((2, 2, 2),) * (self.depth - 1)
        if isinstance(pools, (str, bytes)) or not isinstance(pools, Sequence):
            raise ParameterError(f"pools must be a list of (pz, py, px); got {pools!r}")
        pools = tuple(as_triple(p, f"pools[{i}]") for i, p in enumerate(pools))
        if len(pools) != self.depth - 1:
            raise ParameterError(
                f"pools must have depth - 1 = {self.depth - 1} entries; got {len(pools)}: {pools}")
        kernel = as_triple(self.kernel_size, "kernel_size")
        if any(k % 2 == 0 for k in kernel):
            raise ParameterError(f"kernel_size must be odd per axis; got {kernel}")
        try:
            dropout = float(self.dropout)
        except (TypeError, ValueError):
            raise ParameterError(f"dropout must be a float in [0, 1); got {self.dropout!r}") from None
        if not 0.0 <= dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not isinstance(self.batchnorm, bool):
            raise ParameterError(f"batchnorm must be true or false; got {self.batchnorm!r}")
        try:
            momentum = float(self.bn_momentum)
        except (TypeError, ValueError):
            momentum = -1.0
        if not 0.0 <= momentum < 1.0:
            raise ParameterError(f"bn_momentum must be in [0, 1); got {self.bn_momentum!r}")
        object.__setattr__(self, "bn_momentum", momentum)
        object.__setattr__(self, "pools", pools)
        object.__setattr__(self, "kernel_size", kernel)
        object.__setattr__(self, "dropout", dropout)

    def filters(self, level: int) -> int:
        """Number of channels at ``level`` (0 = full resolution)."""
        return self.base_filters * 2**level

    def to_dict(self) -> dict[str, Any]:
        """A JSON/TOML-friendly dict (lists instead of tuples)."""
        return {
            "depth": self.depth,
            "base_filters": self.base_filters,
            "pools": [list(p) for p in self.pools],
            "kernel_size": list(self.kernel_size),
            "dropout": self.dropout,
            "batchnorm": self.batchnorm,
            "bn_momentum": self.bn_momentum,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UNetConfig:
        """Build from a dict (e.g. a TOML table); unknown keys raise ParameterError."""
        if not isinstance(data, Mapping):
            raise ParameterError(f"a model configuration must be a table/dict; got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(
                f"unknown model configuration key(s) {unknown}; expected some of {sorted(known)}")
        return cls(**dict(data))


def pooling_factor(config: UNetConfig) -> Triple:
    """Total down-sampling per axis ``(fz, fy, fx)``; tile sizes must be multiples of it."""
    f = [1, 1, 1]
    for pool in config.pools:
        f = [a * b for a, b in zip(f, pool)]
    return tuple(f)  # type: ignore[return-value]


def receptive_field(config: UNetConfig) -> Triple:
    """Receptive-field radius in voxels per axis ``(rz, ry, rx)``.

    An output voxel depends on input voxels at most this far away along each axis
    (the maximum over all positions relative to the pooling grid), so a prediction halo
    of at least this size makes tiled prediction seam-free up to floating point.

    Recursion from the bottom: the bottom level adds ``2 h`` (two convolutions,
    ``h = (k - 1) / 2``); a level above with pool ``p`` has radius
    ``2 h + p R_below + (p - 1) + 2 h`` (encoder convs, pool + transpose convolution
    with kernel = stride = ``p`` around the coarser level, decoder convs).
    """
    radius = []
    for axis in range(3):
        h = (config.kernel_size[axis] - 1) // 2
        r = 2 * h
        for pool in reversed(config.pools):
            p = pool[axis]
            r = 2 * h + p * r + (p - 1) + 2 * h
        radius.append(r)
    return tuple(radius)  # type: ignore[return-value]


def flops_per_voxel(config: UNetConfig) -> float:
    """Floating-point operations per input voxel of one forward pass (2 per multiply-add).

    Counts every Conv3D, Conv3DTranspose and the 1x1x1 head (bias, BatchNorm, ReLU and
    pooling are ignored).  A layer at a level down-sampled by ``s = sz * sy * sx``
    contributes its per-output-voxel count divided by ``s``.
    """
    kvol = config.kernel_size[0] * config.kernel_size[1] * config.kernel_size[2]
    total = 0.0
    scale = 1
    scales = [1]
    for pool in config.pools:
        scale *= pool[0] * pool[1] * pool[2]
        scales.append(scale)
    for level in range(config.depth):
        f = config.filters(level)
        cin = 1 if level == 0 else config.filters(level - 1)
        enc = 2 * kvol * (cin * f + f * f)
        total += enc / scales[level]
        if level < config.depth - 1:
            up = 2 * config.filters(level + 1) * f  # transpose conv, kernel = stride: 1 tap/output
            dec = 2 * kvol * (2 * f * f + f * f)
            total += (up + dec) / scales[level]
    total += 2 * config.filters(0) * 1  # sigmoid head
    return float(total)


def build_unet(config: UNetConfig | Mapping[str, Any] | None = None, *, name: str = "unet3d"):
    """Build the (uncompiled) 3D U-Net for ``config``.

    Parameters
    ----------
    config : UNetConfig or dict, optional
        The configuration (default ``UNetConfig()``).
    name : str
        Keras model name.

    Returns
    -------
    keras.Model
        Input ``(batch, z, y, x, 1)`` float32 in [0, 1], output the membrane probability
        ``(batch, z, y, x, 1)`` (sigmoid, float32).
    """
    import keras
    from keras import layers

    if config is None:
        config = UNetConfig()
    elif not isinstance(config, UNetConfig):
        config = UNetConfig.from_dict(config)

    def conv_block(x, filters: int, prefix: str):
        for i in (1, 2):
            x = layers.Conv3D(filters, config.kernel_size, padding="same",
                              use_bias=not config.batchnorm, name=f"{prefix}_conv{i}")(x)
            if config.batchnorm:
                x = layers.BatchNormalization(momentum=config.bn_momentum,
                                              name=f"{prefix}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{prefix}_relu{i}")(x)
        return x

    inputs = keras.Input(shape=(None, None, None, 1), name="raw")
    x = inputs
    skips = []
    for level in range(config.depth - 1):
        x = conv_block(x, config.filters(level), f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling3D(config.pools[level], name=f"pool{level}")(x)
    x = conv_block(x, config.filters(config.depth - 1), "bottom")
    if config.dropout > 0:
        x = layers.SpatialDropout3D(config.dropout, name="bottom_dropout")(x)
    for level in reversed(range(config.depth - 1)):
        pool = config.pools[level]
        x = layers.Conv3DTranspose(config.filters(level), pool, strides=pool,
                                   name=f"up{level}")(x)
        x = layers.Concatenate(axis=-1, name=f"concat{level}")([x, skips[level]])
        x = conv_block(x, config.filters(level), f"dec{level}")
    outputs = layers.Conv3D(1, 1, activation="sigmoid", dtype="float32", name="membrane")(x)
    return keras.Model(inputs, outputs, name=name)
