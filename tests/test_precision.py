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
    assert 0 < diff.max() < 0.05 and diff.mean() < 2e-3  # bfloat16 really ran, and is close
    assert ((out["float32"] > 0.5) == (out["bfloat16"] > 0.5)).mean() > 0.995
    with pytest.raises(ParameterError, match="precision"):
        run_predict(raw, model=model, out=tmp_path / "x.ome.zarr", precision="float16",
                    progress=False)
