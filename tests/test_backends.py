"""The model and the prediction path under every Keras backend: tensorflow, jax, torch.

Each backend runs in its own subprocess (``KERAS_BACKEND`` is fixed when Keras is
imported) doing :mod:`backend_worker`: load the packaged default model and predict a
fixed seeded input; load a random-weights model, ``save_model`` / ``load_model`` it
again, predict; ``run_predict`` (threads scheduler) of a tiny synthetic volume in odd
blocks with ``halo="auto"`` and as one whole-volume tile; ``chunkseg train`` must refuse
a non-TensorFlow backend with a :class:`ChunksegError`.

Checks:

- the default model's output under each backend equals the TensorFlow output stored
  in ``tests/data/backend_reference.npz`` within :data:`TOL` (regenerate it with
  ``python tests/test_backends.py`` under TensorFlow after retraining the default model);
- one random-weights model (saved by the first available backend) gives the same output
  under every available backend, within :data:`TOL`;
- the round trip is exact, and chunked prediction equals the whole-volume pass within
  1e-5 under each backend.

The subprocesses use ``CHUNKSEG_BACKENDS_PYTHON`` if set, else this interpreter; a
backend that interpreter cannot import is skipped (CI installs only TensorFlow).  With
a separate venv holding jax and torch::

    CHUNKSEG_BACKENDS_PYTHON=/work/venv-backends/bin/python pytest tests/test_backends.py
    /work/venv-backends/bin/python -m pytest tests/test_backends.py   # no TensorFlow there
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "backend_worker.py"
REFERENCE = Path(__file__).resolve().parent / "data" / "backend_reference.npz"
DEFAULT_MODEL = REPO / "chunkseg" / "models" / "default.keras"
PYTHON = os.environ.get("CHUNKSEG_BACKENDS_PYTHON") or sys.executable
BACKENDS = ("tensorflow", "torch", "jax")
#: largest allowed |p_backend - p_tensorflow| (float32; measured <= 2e-6 on a CPU)
TOL = 1e-4
#: the stored reference keeps every other voxel in y and x (8 KB)
SUBSAMPLE = (slice(None), slice(None), slice(None, None, 2), slice(None, None, 2))


@functools.lru_cache(maxsize=None)
def available(backend: str) -> bool:
    """Whether :data:`PYTHON` can import ``backend`` (and Keras)."""
    code = ("import importlib.util, sys; "
            f"sys.exit(any(importlib.util.find_spec(m) is None for m in ('keras', {backend!r})))")
    return subprocess.run([PYTHON, "-c", code], capture_output=True).returncode == 0


def run_worker(backend: str, out: Path, shared: Path, build: bool) -> dict:
    """Run :mod:`backend_worker` under ``backend``; its ``result.json``."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [PYTHON, str(WORKER), str(out), "--shared", str(shared)] + (["--build"] * build)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads((out / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``backend -> output folder`` of the worker, run lazily, once per backend."""
    root = tmp_path_factory.mktemp("backends")
    shared = root / "shared.keras"
    done: dict[str, Path] = {}

    def get(backend: str) -> Path:
        if not available(backend):
            pytest.skip(f"Keras backend {backend!r} is not importable by {PYTHON} "
                        "(set CHUNKSEG_BACKENDS_PYTHON to a venv that has it)")
        if backend not in done:
            out = root / backend
            run_worker(backend, out, shared, build=not shared.exists())
            done[backend] = out
        return done[backend]

    return get


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_model_matches_tensorflow_reference(runs, backend):
    ref = np.load(REFERENCE)
    if str(ref["model_sha256"]) != sha256(DEFAULT_MODEL):
        pytest.fail(f"{DEFAULT_MODEL} changed since {REFERENCE} was written: regenerate it "
                    "with `python tests/test_backends.py` under the TensorFlow backend")
    got = np.load(runs(backend) / "default.npy")[..., 0][SUBSAMPLE]
    assert got.shape == ref["p"].shape
    assert ref["p"].std() > 0.1  # a varied output, so TOL is a strict bound
    assert np.abs(got - ref["p"]).max() <= TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_roundtrip_and_chunked_predict(runs, backend):
    out = runs(backend)
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == backend
    shared = np.load(out / "shared.npy")
    assert shared.std() > 0.1
    np.testing.assert_array_equal(np.load(out / "roundtrip.npy"), shared)
    whole, chunked = np.load(out / "whole.npy"), np.load(out / "chunked.npy")
    assert result["chunked"]["seam_free"] and result["chunked"]["blocks"] > 8
    assert whole.std() > 0.05 and np.abs(chunked - whole).max() <= 1e-5


def test_backends_agree_on_one_model(runs):
    have = [b for b in BACKENDS if available(b)]
    if len(have) < 2:
        pytest.skip(f"only {have} importable by {PYTHON}; need two backends to compare")
    outs = {b: runs(b) for b in have}
    first = have[0]
    for b in have[1:]:
        for name in ("shared", "whole"):
            a, ref = np.load(outs[b] / f"{name}.npy"), np.load(outs[first] / f"{name}.npy")
            assert np.abs(a - ref).max() <= TOL, (b, first, name)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_refuses_other_backends(runs, backend):
    result = json.loads((runs(backend) / "result.json").read_text())
    assert result["train_error"].startswith("ParameterError: chunkseg train needs the "
                                            "TensorFlow backend")
    assert repr(backend) in result["train_error"]


def test_require_tensorflow_errors(monkeypatch):
    from chunkseg.engine import backend as be
    from chunkseg.errors import ChunksegError

    monkeypatch.setattr(be, "keras_backend", lambda: "jax")
    with pytest.raises(ChunksegError, match="needs the TensorFlow backend.*'jax'"):
        be.require_tensorflow("chunkseg train")
    monkeypatch.setattr(be, "keras_backend", lambda: "tensorflow")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails
    with pytest.raises(ChunksegError, match="needs TensorFlow, which cannot be imported"):
        be.require_tensorflow("chunkseg train")


def regenerate() -> None:
    """Write :data:`REFERENCE` from the TensorFlow backend (after retraining the model)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tf"
        run_worker("tensorflow", out, Path(tmp) / "shared.keras", build=True)
        p = np.load(out / "default.npy")[..., 0][SUBSAMPLE].astype(np.float32)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, p=p, model_sha256=np.array(sha256(DEFAULT_MODEL)))
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes), p {p.shape} std {p.std():.3f}")


if __name__ == "__main__":
    regenerate()
