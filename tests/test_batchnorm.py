"""BatchNorm population statistics (``chunkseg.model.batchnorm``) and ``bn_recompute`` of
``run_train``."""

from __future__ import annotations

import numpy as np
import pytest

from chunkseg.errors import ParameterError

pytestmark = pytest.mark.tf
keras = pytest.importorskip("keras")


def _two_bn_model(seed: int = 0):
    """conv -> BN -> ReLU -> conv -> BN, 1x1x1 / 3x3x3 kernels, 3 then 2 channels."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, None, 1))
    a = keras.layers.Conv3D(3, 1, use_bias=True, bias_initializer="random_normal")(x)
    a = keras.layers.BatchNormalization(momentum=0.9)(a)
    a = keras.layers.Activation("relu")(a)
    b = keras.layers.Conv3D(2, 3, padding="same")(a)
    b = keras.layers.BatchNormalization(momentum=0.9)(b)
    return keras.Model(x, b)


def _batches(n: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    return [rng.gamma(2.0, 0.3 + 0.2 * k, (1, 4, 6, 6, 1)).astype(np.float32)
            for k in range(n)]


def test_recomputed_statistics_are_the_mean_and_variance_of_the_layer_inputs():
    from chunkseg.model.batchnorm import batchnorm_layers, recompute_batchnorm

    model = _two_bn_model()
    batches = _batches()
    bn1, bn2 = batchnorm_layers(model)
    inputs = keras.Model(model.input, [bn1.input, bn2.input])
    seen = [[], []]
    for x in batches:  # training mode: every BN uses its batch's own statistics
        for k, v in enumerate(inputs(x, training=True)):
            seen[k].append(keras.ops.convert_to_numpy(v).reshape(-1, v.shape[-1]))
    assert recompute_batchnorm(model, batches) == len(batches)
    for layer, values in zip((bn1, bn2), seen):
        v = np.concatenate(values).astype(np.float64)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), v.mean(0),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance),
                                   v.var(0), rtol=1e-4, atol=1e-6)
    # the first BN's input does not depend on any BN: plain numbers of the conv output
    conv = keras.Model(model.input, bn1.input)
    direct = np.concatenate([conv.predict(x, verbose=0).reshape(-1, 3) for x in batches])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn1.moving_mean), direct.mean(0),
                               rtol=1e-4, atol=1e-6)


def test_prediction_follows_the_recomputed_statistics():
    """A conv -> BN model (gamma 1, beta 0) predicts, after the recompute, outputs of mean 0
    and variance 1 over the crops the statistics came from; before it, it did not."""
    from chunkseg.model.batchnorm import recompute_batchnorm

    keras.utils.set_random_seed(3)
    x = keras.Input((None, None, None, 1))
    model = keras.Model(x, keras.layers.BatchNormalization()(
        keras.layers.Conv3D(2, 3, padding="same", bias_initializer="ones")(x)))
    batches = _batches(6, seed=2)

    def pooled():
        out = np.concatenate([model.predict(b, verbose=0).reshape(-1, 2) for b in batches])
        return out.mean(0), out.var(0)

    before = pooled()
    assert not np.allclose(before[0], 0, atol=0.05)
    recompute_batchnorm(model, batches)
    mean, var = pooled()
    np.testing.assert_allclose(mean, 0, atol=1e-4)
    np.testing.assert_allclose(var, 1, rtol=2e-3)  # BN's epsilon 1e-3 in the denominator


def test_recompute_needs_a_batch():
    from chunkseg.model.batchnorm import recompute_batchnorm

    with pytest.raises(ParameterError, match="at least one batch"):
        recompute_batchnorm(_two_bn_model(), [])


def test_sampler_batches_are_seeded_un_augmented_crops(tmp_path):
    from chunkseg.model.batchnorm import BN_SEED_OFFSET, sampler_batches
    from chunkseg.model.training_data import CropSampler

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (10, 20, 20), dtype=np.uint8)
    mask = (rng.random((10, 20, 20)) < 0.3).astype(np.uint8)
    import zarr

    pair = (zarr.array(raw), zarr.array(mask))
    sampler = CropSampler([pair], crop=(4, 8, 8), seed=5)
    got = list(sampler_batches(sampler, 3))
    again = list(sampler_batches(CropSampler([pair], crop=(4, 8, 8), seed=5), 3))
    assert len(got) == 3 and got[0].shape == (1, 4, 8, 8, 1)
    other = CropSampler([pair], crop=(4, 8, 8), seed=5 + BN_SEED_OFFSET)
    for i, (a, b) in enumerate(zip(got, again)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[0, ..., 0], other.sample(i).raw)
    assert sampler.seed == 5  # reseeded() copies
    assert not all(np.array_equal(g[0, ..., 0], sampler.sample(i).raw)
                   for i, g in enumerate(got))
