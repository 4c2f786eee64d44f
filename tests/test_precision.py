"""bfloat16 inference: the same network in another dtype policy, close to float32."""

from __future__ import annotations

import numpy as np
import pytest

from chunkseg.errors import ParameterError

keras = pytest.importorskip("keras")


def test_bfloat16_prediction_close_to_float32(tmp_path):
    """The packaged (trained) model on a synthetic volume."""
    from chunkseg.io.store import create_image, mark_complete, open_volume
    from chunkseg.pipeline.predict import run_predict
    from chunkseg.synth import synth_volume

    model = "default"
    v = synth_volume((24, 48, 48), seed=1).raw
    vol = (np.clip((v - v.min()) / (np.percentile(v, 99.99) - v.min()), 0, 1) * 255)
    vol = vol.astype(np.uint8)[None]
    raw = tmp_path / "raw.ome.zarr"
    create_image(raw, shape=vol.shape, dtype=np.uint8, chunks=(1, 8, 16, 16), shards=False,
                 attrs={"kind": "normalized"})[...] = vol
    mark_complete(raw)
    out = {}
    for precision in ("float32", "bfloat16"):
        s = run_predict(raw, model=model, out=tmp_path / f"{precision}.ome.zarr", halo="auto",
                        progress=False, precision=precision)
        assert s["precision"] == precision
        out[precision] = np.asarray(open_volume(tmp_path / f"{precision}.ome.zarr").data)
    diff = np.abs(out["float32"] - out["bfloat16"])
    assert out["float32"].std() > 0.05
    # bfloat16 really ran, and is close (8-bit mantissa: ~0.4 % per rounding, through 15 layers)
    assert 0 < diff.max() < 0.05 and diff.mean() < 4e-3
    assert ((out["float32"] > 0.5) == (out["bfloat16"] > 0.5)).mean() > 0.995
    with pytest.raises(ParameterError, match="precision"):
        run_predict(raw, model=model, out=tmp_path / "x.ome.zarr", precision="float16",
                    progress=False)


@pytest.mark.tf
def test_folded_batchnorm_predicts_the_same_probability(tmp_path):
    from chunkseg.engine.predict import get_model
    from chunkseg.model import UNetConfig, build_unet, load_model, save_model
    from chunkseg.model.folding import fold_batchnorm
    from predict_helpers import random_model

    path = random_model(tmp_path / "m.keras", depth=3, base_filters=4)
    model, meta = load_model(path)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # moving statistics and scales far from the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, gamma.shape).astype(np.float32), beta,
                               rng.normal(0, 0.3, gamma.shape).astype(np.float32),
                               rng.uniform(0.2, 3, gamma.shape).astype(np.float32)])
    folded, folded_meta = fold_batchnorm(model, meta)
    assert folded_meta["config"]["batchnorm"] is False and meta["config"]["batchnorm"] is True
    assert not any(isinstance(ly, keras.layers.BatchNormalization) for ly in folded.layers)
    x = rng.random((2, 12, 20, 16, 1), dtype=np.float32)
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(folded(x, training=False))
    assert want.std() > 0.05
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # what predict runs: the folded model of the file
    save_model(model, tmp_path / "stats.keras", metadata=meta)
    cached, cached_meta, _ = get_model(tmp_path / "stats.keras")
    assert cached_meta["config"]["batchnorm"] is True  # the file's metadata
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cached(x)), want, rtol=0, atol=1e-5)
    # nothing to fold: the model itself
    plain_cfg = UNetConfig(depth=2, base_filters=2, batchnorm=False)
    plain = build_unet(plain_cfg)
    assert fold_batchnorm(plain, {"config": plain_cfg.to_dict()})[0] is plain
