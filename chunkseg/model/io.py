"""Save and load chunkseg models: a Keras ``.keras`` file that carries chunkseg metadata.

A ``.keras`` file is a zip archive (``config.json``, ``metadata.json``,
``model.weights.h5``).  chunkseg adds one more entry, ``chunkseg.json``, holding its
own metadata (model configuration, normalization range, voxel size trained at, crop
size, receptive field, training provenance).  Keras ignores the extra entry, so the
file stays loadable with plain ``keras.saving.load_model``; and the metadata can be
read without importing Keras or TensorFlow (:func:`read_metadata`), which lets the
prediction client plan halos and chunks before any worker loads the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chunkseg import __version__
from chunkseg.errors import ModelError, OutputExistsError
from chunkseg.io.jsonable import jsonable

__all__ = [
    "DEFAULT_MODEL",
    "METADATA_ENTRY",
    "load_model",
    "read_metadata",
    "resolve_model",
    "save_model",
]

#: name of the zip entry holding chunkseg's metadata inside a ``.keras`` file
METADATA_ENTRY = "chunkseg.json"
#: the model shipped inside the package (``--model default``)
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.keras"


def resolve_model(model: str | os.PathLike[str] = "default") -> Path:
    """Path of a model: ``"default"`` is the packaged model, anything else a file path.

    Raises
    ------
    ModelError
        The file does not exist (message names the path).
    """
    path = DEFAULT_MODEL if str(model) == "default" else Path(model).expanduser()
    if not path.is_file():
        what = "the packaged default model" if str(model) == "default" else "model file"
        raise ModelError(f"{what} {str(path)!r} does not exist; expected a .keras file")
    return path


def _jsonable(value: Any, key: str) -> Any:
    try:
        return jsonable(value)
    except TypeError as exc:
        raise ModelError(f"model metadata {key!r} is not JSON-serialisable: {exc}") from None


def save_model(model: Any, path: str | os.PathLike[str], *, metadata: Mapping[str, Any],
               overwrite: bool = True) -> Path:
    """Save ``model`` as a ``.keras`` file with chunkseg ``metadata`` inside it.

    Parameters
    ----------
    model : keras.Model
        The network (compiled or not; the optimizer state is not kept).
    path : path
        Output file; must end in ``.keras``.
    metadata : dict
        JSON-serialisable chunkseg metadata; ``chunkseg_version`` is added.
        Recommended keys: ``config`` (``UNetConfig.to_dict()``), ``normalization``
        ``{"low", "high", "method"}``, ``voxel_size`` (z, y, x) µm, ``crop``,
        ``receptive_field``, ``training`` (provenance).
    overwrite : bool
        Replace an existing file (default True).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelError(f"model file {str(path)!r} must end in '.keras'; got {path.suffix!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"model file {str(path)!r} exists; pass overwrite=True")
    meta = {str(k): _jsonable(v, str(k)) for k, v in dict(metadata).items()}
    meta.setdefault("chunkseg_version", __version__)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    try:
        _inference_copy(model).save(tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(METADATA_ENTRY, json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _inference_copy(model: Any) -> Any:
    """The model without its optimizer / compile state (smaller file, no custom losses)."""
    if getattr(model, "optimizer", None) is None and not getattr(model, "compiled", False):
        return model
    import keras

    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """chunkseg metadata of a ``.keras`` file, without loading Keras or the weights.

    ``path`` may be ``"default"``.  Raises :class:`ModelError` (naming the path) for a
    file that is not a zip/.keras archive or has no chunkseg metadata, and
    for a missing file.
    """
    path = resolve_model(path)
    if not zipfile.is_zipfile(path):
        raise ModelError(f"model file {str(path)!r} is not a Keras .keras archive (zip); "
                         "expected a file written by chunkseg train / save_model")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise ModelError(f"model file {str(path)!r} is a zip but not a Keras model: "
                                 f"expected 'config.json', found {sorted(names)[:5]}")
            if METADATA_ENTRY not in names:
                raise ModelError(f"model file {str(path)!r} has no chunkseg metadata "
                                 f"(entry {METADATA_ENTRY!r}); it was not saved by chunkseg")
            meta = json.loads(zf.read(METADATA_ENTRY).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model file {str(path)!r} is corrupt: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model file {str(path)!r}: chunkseg metadata must be a dict; "
                         f"found {type(meta).__name__}")
    return meta


def _fast_initializers(backend: str) -> Any:
    """Under JAX, draw the (discarded) initial weights with the non-partitionable threefry.

    Keras initialises every weight before loading the saved values; on a CPU, XLA
    (JAX 0.10) compiles the default partitionable threefry generator ~10x slower (2-3 s
    per weight shape: 30 s to load the default model, 5 s with this).  The loaded weights
    are the same either way.
    """
    if backend == "jax":
        import jax

        if hasattr(jax, "threefry_partitionable"):
            return jax.threefry_partitionable(False)
    return contextlib.nullcontext()


def load_model(path: str | os.PathLike[str] = "default", *, compile: bool = False
               ) -> tuple[Any, dict[str, Any]]:
    """Load a chunkseg model and its metadata.

    Parameters
    ----------
    path : path or "default"
        A ``.keras`` file written by :func:`save_model`, or ``"default"``.
    compile : bool
        Restore the training configuration too (default False: inference only).

    Returns
    -------
    (keras.Model, dict)

    Raises
    ------
    ModelError
        Missing file, not a Keras archive, no chunkseg metadata, or Keras cannot rebuild it.
    """
    path = resolve_model(path)
    meta = read_metadata(path)
    import keras

    from chunkseg.model import losses as _losses  # noqa: F401  (registers MembraneLoss)

    try:
        with _fast_initializers(keras.backend.backend()):
            model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # keras raises many types for corrupt archives
        raise ModelError(f"model file {str(path)!r} could not be loaded by Keras: "
                         f"{type(exc).__name__}: {exc}") from None
    return model, meta
