"""Run chunkseg's model and prediction path under the Keras backend of this process.

Used by ``tests/test_backends.py``, which starts it as a subprocess with
``KERAS_BACKEND`` set (jax, torch or tensorflow)::

    KERAS_BACKEND=jax python tests/backend_worker.py OUT_DIR [--shared MODEL] [--build]

Writes into ``OUT_DIR``:

- ``default.npy``: the packaged default model on :func:`default_input` (the whole output);
- ``shared.npy`` / ``roundtrip.npy``: a random-weights model (``--shared``, built and
  saved first with ``--build``) on :func:`small_input`, before and after a
  ``save_model`` / ``load_model`` round trip under this backend;
- ``chunked.npy`` / ``whole.npy``: ``run_predict`` (threads scheduler) of that model on a
  tiny synthetic volume with ``halo="auto"`` in odd blocks, and as one whole-volume tile;
- ``result.json``: the backend, ``run_train``'s error under a non-TensorFlow backend,
  the summary of the chunked run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: shape of the fixed input of the default model (a multiple of its pooling factor 2, 4, 4)
DEFAULT_INPUT_SHAPE = (8, 32, 32)
#: tiny synthetic volume predicted through run_predict
VOLUME_SHAPE = (18, 30, 26)


def default_input() -> np.ndarray:
    """Fixed seeded network input (1, 8, 32, 32, 1) float32 in [0, 1] (smooth + noise)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(2024)
    x = ndi.gaussian_filter(rng.random(DEFAULT_INPUT_SHAPE), 1.0)
    x = (x - x.min()) / (x.max() - x.min())
    return x.astype(np.float32)[None, ..., None]


def small_input() -> np.ndarray:
    """Fixed seeded input (1, 12, 20, 16, 1) for the random-weights model (pool 2)."""
    rng = np.random.default_rng(7)
    return rng.random((1, 12, 20, 16, 1)).astype(np.float32)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shared", help="random-weights chunkseg model to load (and --build)")
    ap.add_argument("--build", action="store_true", help="build and save --shared first")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from chunkseg.engine.backend import configure_backend, run_model
    from chunkseg.model import load_model, save_model

    backend = configure_backend(1)
    result: dict = {"backend": backend}

    model, _ = load_model("default")
    np.save(out / "default.npy", run_model(model, default_input()))

    if args.shared:
        shared = Path(args.shared)
        if args.build:
            from predict_helpers import random_model

            random_model(shared)
        net, meta = load_model(shared)
        np.save(out / "shared.npy", run_model(net, small_input()))
        mine = save_model(net, out / "roundtrip.keras", metadata=meta)
        net2, meta2 = load_model(mine)
        assert meta2["config"] == meta["config"], (meta, meta2)
        np.save(out / "roundtrip.npy", run_model(net2, small_input()))
        result["chunked"] = _predict_volume(out, shared)

    if backend != "tensorflow":
        from chunkseg.errors import ChunksegError
        from chunkseg.pipeline.train import run_train

        try:
            run_train(str(out / "raw.zarr"), str(out / "mask.zarr"), out=out / "t.keras",
                      epochs=1, steps=1, verbose=0)
        except ChunksegError as exc:
            result["train_error"] = f"{type(exc).__name__}: {exc}"
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


def _predict_volume(out: Path, model: Path) -> dict:
    """run_predict on a tiny synthetic volume: odd blocks with halo auto, and one tile."""
    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete, open_array
    from chunkseg.pipeline.predict import run_predict
    from chunkseg.synth import synth_volume

    import dask.array as da

    vol = synth_volume(VOLUME_SHAPE, seed=5)
    raw = out / "raw.ome.zarr"
    create_image(raw, shape=(1, *VOLUME_SHAPE), dtype=vol.raw.dtype, voxel_size=(1, 1, 1),
                 attrs={"kind": "raw"}, overwrite=True)
    write_volume(da.from_array(vol.raw[None], chunks=(1, 9, 16, 16)), raw, progress=False)
    mark_complete(raw)
    kw = dict(model=model, halo="auto", progress=False, overwrite=True)
    whole = run_predict(raw, out=out / "whole.zarr", block=VOLUME_SHAPE, tile=64, **kw)
    assert whole["tiles"] == 1, whole
    summary = run_predict(raw, out=out / "chunked.zarr", block=(10, 12, 11), tile=24, **kw)
    np.save(out / "whole.npy", open_array(out / "whole.zarr")[:])
    np.save(out / "chunked.npy", open_array(out / "chunked.zarr")[:])
    return {k: summary[k] for k in ("blocks", "tiles", "halo", "seam_free", "voxels")}


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    raise SystemExit(main(sys.argv[1:]))
