"""The Keras backend behind prediction: thread pools, GPUs and one network call.

chunkseg's network uses only ``keras.layers`` / ``keras.ops``, so prediction runs on
whichever backend ``KERAS_BACKEND`` selects: ``tensorflow`` (the default install),
``jax`` or ``torch`` (e.g. a GPU machine without TensorFlow).  Everything here is
backend-neutral; TensorFlow-only settings are applied only when TensorFlow is the
backend, and nothing imports a backend other than the one Keras runs.

Training (``chunkseg train``) stays TensorFlow-only (``tf.data`` input pipeline,
``MirroredStrategy``); :func:`require_tensorflow` gives the clear error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from chunkseg.errors import ParameterError

__all__ = [
    "ONEDNN_ENV",
    "configure_backend",
    "keras_backend",
    "quiet_import_stderr",
    "require_tensorflow",
    "run_model",
]

#: the configured backend's name, once configured in this process
_CONFIGURED: list[str] = []

#: TensorFlow's oneDNN kernels for prediction, whatever the CPU.  TensorFlow turns them on
#: by default only on CPUs with AVX512-VNNI / AVX512-BF16 / AMX; elsewhere (e.g. an AVX2
#: AMD EPYC) Conv3D runs Eigen's patch extraction and small matrix products instead.
#: Measured on such a 2-core EPYC with the default model
#: (``benchmarks/results/inference_variants.md``): the oneDNN kernels (fused
#: Conv3D + BatchNorm + ReLU) take 3-4x less CPU time per voxel, the probability differs
#: from Eigen's by at most ~1e-6, and a batch of tiles gives bit for bit the outputs of
#: the tiles one by one (Eigen's differ by ~2e-7).  Read once, when TensorFlow starts: a
#: process that imported TensorFlow before :func:`configure_backend` keeps its kernels.
ONEDNN_ENV: dict[str, str] = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def _worker_index() -> int | None:
    """This process's LocalCluster worker number (its name), None elsewhere."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        name = get_worker().name
        return int(name) if str(name).isdigit() else None
    except (ValueError, AttributeError):
        return None


def keras_backend() -> str:
    """Name of the Keras backend this process runs ("tensorflow", "jax", "torch", ...).

    Imports Keras (which imports the backend), so call it where the network is needed;
    the first import is quiet (:func:`quiet_import_stderr`).
    """
    with quiet_import_stderr():
        import keras

    return str(keras.backend.backend())


@contextlib.contextmanager
def quiet_import_stderr() -> Iterator[None]:
    """Silence native writes to stderr while Keras and its backend are first imported.

    TensorFlow's start-up banner (oneDNN, CPU features) is logged by absl before its
    log threshold is set up, so ``TF_CPP_MIN_LOG_LEVEL`` does not hide it.  When that
    variable asks for quiet (>= 1, the command line's default) file descriptor 2 points
    to ``/dev/null`` for the import; Python exceptions are raised after it is restored.
    """
    quiet = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")
    if not quiet or "keras" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def configure_backend(threads: int | None = None) -> str:
    """Size the Keras backend's CPU threads and set up GPUs, once per process; its name.

    Backend-neutral: what applies depends on ``KERAS_BACKEND``.

    - ``tensorflow``: oneDNN kernels on (:data:`ONEDNN_ENV`, unless the variable is
      set); intra-op pool of ``threads`` (inter-op 1), set before TensorFlow
      initialises (``TF_NUM_*`` variables and ``tf.config.threading``); in LocalCluster
      worker ``i`` of a machine with several GPUs only GPU ``i mod n`` is visible; every
      used GPU gets memory growth.  A process where TensorFlow already ran keeps its
      pools (a warning says so).
    - ``torch``: ``torch.set_num_threads(threads)`` (inter-op 1 when still possible);
      with several CUDA devices, worker ``i`` uses device ``i mod n``.
    - ``jax``: GPU memory is allocated on demand (``XLA_PYTHON_CLIENT_PREALLOCATE=false``
      unless set, the analogue of memory growth); with several GPUs, worker ``i`` uses
      device ``i mod n``.  XLA's CPU thread pool has no size setting: it uses all cores.
    """
    if _CONFIGURED:
        return _CONFIGURED[0]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name, value in ONEDNN_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(int(threads))
        os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    backend = keras_backend()
    index = _worker_index()
    if backend == "tensorflow":
        _configure_tf(threads, index)
    elif backend == "torch":
        _configure_torch(threads, index)
    elif backend == "jax":
        _configure_jax(index)
    _CONFIGURED.append(backend)
    return backend


def _configure_tf(threads: int | None, index: int | None) -> None:
    import tensorflow as tf

    try:
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) > 1 and index is not None:  # one worker per GPU: pin it to its own
            gpus = [gpus[index % len(gpus)]]
            tf.config.set_visible_devices(gpus, "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already initialised in this process
        if threads and tf.config.threading.get_intra_op_parallelism_threads() not in (0, threads):
            warnings.warn(f"TensorFlow was initialised before chunkseg could set {threads} "
                          "threads; keeping its thread pools", RuntimeWarning, stacklevel=3)


def _configure_torch(threads: int | None, index: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # inter-op pool already started in this process
            pass
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > 1 and index is not None:
        torch.cuda.set_device(index % n)


def _configure_jax(index: int | None) -> None:
    import jax

    gpus = [d for d in jax.devices() if d.platform != "cpu"]
    if len(gpus) > 1 and index is not None:
        jax.config.update("jax_default_device", gpus[index % len(gpus)])


def run_model(model: Any, x: np.ndarray) -> np.ndarray:
    """One network call on ``(b, z, y, x, 1)`` float32 -> float32 numpy array (any backend).

    ``model.predict_on_batch``: a compiled graph under TensorFlow (``tf.function`` with
    ``reduce_retracing``, so the few distinct edge-tile shapes cost one or two traces),
    XLA under JAX, ``no_grad`` under PyTorch.  Measured with TensorFlow on this 2-core
    CPU against an eager ``model(x)``: 1.2-1.4x the voxels/s and a third of the peak
    memory (the graph frees each activation when its last consumer ran: 140-190 B per
    input voxel instead of 800).  The result is copied to host memory that numpy owns.
    """
    import keras

    return np.array(keras.ops.convert_to_numpy(model.predict_on_batch(x)), dtype=np.float32)


def require_tensorflow(what: str) -> None:
    """Raise :class:`ParameterError` unless Keras runs on TensorFlow and it is importable."""
    backend = keras_backend()
    if backend != "tensorflow":
        raise ParameterError(
            f"{what} needs the TensorFlow backend (tf.data input pipeline); Keras runs on "
            f"{backend!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}). Train "
            "with KERAS_BACKEND=tensorflow; the trained .keras model then predicts under "
            "any backend (chunkseg predict works on jax and torch)")
    try:
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise ParameterError(f"{what} needs TensorFlow, which cannot be imported: {exc}; "
                             "install tensorflow (or tensorflow-cpu)") from None
