"""One resume fingerprint rule for every command: inputs (path, size, mtime), shape, dtype, parameters.

A run writes its fingerprint into its output; ``--resume`` continues only an output
whose fingerprint equals the new run's (:func:`chunkseg.io.store.create_image`).  An
input rewritten in place -- same path, same shape -- changes its files' size or
modification time and so the fingerprint.  A Zarr store is stamped by its array
metadata files (``*/zarr.json``: rewritten when the array is re-created, not when
chunkseg only updates the group's attributes, e.g. marking it complete).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from chunkseg.io.hdf5 import split_hdf5_path

__all__ = ["fingerprint", "input_stamps"]

#: files that stamp a Zarr directory (array metadata of zarr v3 and v2)
_ARRAY_METADATA = ("zarr.json", ".zarray")


def _stamp_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    arrays = sorted(f for name in _ARRAY_METADATA for f in path.glob(f"*/{name}"))
    return arrays or sorted(f for f in (path / n for n in _ARRAY_METADATA) if f.exists()) or [path]


def input_stamps(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[list[Any]]:
    """``[resolved path, [size, mtime_ns] of each stamp file]`` of each input.

    Raises
    ------
    FileNotFoundError
        An input does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    stamps = []
    for p in paths:
        parts = split_hdf5_path(p)  # FILE.h5:/dataset is stamped by its file
        path = Path(parts[0] if parts else p).resolve()
        name = f"{path}:{parts[1]}" if parts and parts[1] else str(path)
        files = _stamp_files(path)
        stamps.append([name, [[f.stat().st_size, f.stat().st_mtime_ns] for f in files]])
    return stamps


def fingerprint(
    inputs: str | os.PathLike | Iterable[str | os.PathLike] = (),
    params: Mapping[str, Any] | None = None,
    *,
    shape: Sequence[int] | None = None,
    dtype: Any = None,
) -> str:
    """The resume fingerprint of a run (32 hex digits).

    Parameters
    ----------
    inputs : path or paths
        Input files / stores (:func:`input_stamps`); none for generated data.
    params : mapping, optional
        The run's parameters (JSON-able; other values by ``str``).
    shape, dtype : optional
        Of the input as read.

    Examples
    --------
    >>> fingerprint(params={"a": 1}) == fingerprint(params={"a": 1})
    True
    >>> fingerprint(params={"a": 1}) == fingerprint(params={"a": 2})
    False
    """
    record = {"inputs": input_stamps(inputs), "params": dict(params or {}),
              "shape": list(shape) if shape is not None else None,
              "dtype": str(dtype) if dtype is not None else None}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
