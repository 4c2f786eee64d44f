"""BatchNorm population statistics: recompute a trained model's moving mean / variance.

With small batches (the default model trains on one crop per step) and momentum 0.9, the
moving statistics that BatchNorm uses at inference average only the last ~10 training
crops, each from one volume of one source, so they swing from step to step.
:func:`recompute_batchnorm` replaces them by the population statistics of each BatchNorm
layer's input over many crops ("precise BN"): the crops go through the network in
training mode (every BatchNorm normalizes with the statistics of its own batch, as during
training), and each layer's moving mean and variance become the mean and variance of its
input over all voxels of all crops.  Learned weights are not touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError

__all__ = ["BN_SEED_OFFSET", "batchnorm_layers", "recompute_batchnorm", "sampler_batches"]

#: crop seed of :func:`sampler_batches`: the training sampler's seed plus this
BN_SEED_OFFSET = 2_000_003


def batchnorm_layers(model: Any) -> list[Any]:
    """The model's ``keras.layers.BatchNormalization`` layers, in order."""
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batchnorm(model: Any, batches: Iterable[np.ndarray]) -> int:
    """Set every BatchNorm layer's moving mean / variance to the mean / variance of its input
    over ``batches`` (in place).

    Parameters
    ----------
    model : keras.Model
        A functional model whose BatchNorm layers are each called once.
    batches : iterable of ndarray
        Network input batches, float32 ``(batch, z, y, x, channels)``.

    Returns
    -------
    int
        The number of batches used.

    Raises
    ------
    ParameterError
        ``batches`` is empty.
    """
    import keras

    layers = batchnorm_layers(model)
    if not layers:
        return 0
    inputs = keras.Model(model.input, [layer.input for layer in layers])
    sums = [np.zeros(2, np.float64)[:, None] for _ in layers]  # per layer: sum, sum of squares
    counts = [0] * len(layers)
    n = 0
    for x in batches:
        outs = inputs(np.asarray(x, np.float32), training=True)
        for k, out in enumerate(outs):
            v = keras.ops.convert_to_numpy(out).astype(np.float64)
            v = v.reshape(-1, v.shape[-1])
            sums[k] = sums[k] + np.stack([v.sum(axis=0), np.square(v).sum(axis=0)])
            counts[k] += v.shape[0]
        n += 1
    if n == 0:
        raise ParameterError("recompute_batchnorm: expected at least one batch; got none")
    for layer, acc, count in zip(layers, sums, counts):
        mean = acc[0] / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(acc[1] / count - mean ** 2, 0.0)
                                     .astype(np.float32))
    return n


def sampler_batches(sampler: Any, n: int) -> Iterable[np.ndarray]:
    """``n`` un-augmented crops of a :class:`~chunkseg.model.training_data.CropSampler`
    (its volumes, weights, crop shape and membrane bias; crop seed: the sampler's plus
    :data:`BN_SEED_OFFSET`, so not the training crops), each a batch ``(1, z, y, x, 1)``."""
    drawn = sampler.reseeded(sampler.seed + BN_SEED_OFFSET)
    for i in range(int(n)):
        yield drawn.sample(i).raw[None, ..., None]
