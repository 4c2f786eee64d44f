"""Exception classes of chunkseg.

Every exception subclasses :class:`ChunksegError` *and* the matching builtin
(``ValueError``, ``FileNotFoundError``, ...) so callers may catch either.  Messages
name the file (where there is one), what was expected and what was found.
"""

from __future__ import annotations

__all__ = [
    "ChunksegError",
    "InputError",
    "InputNotFoundError",
    "FormatError",
    "ShapeError",
    "DTypeError",
    "OutputExistsError",
    "OutputError",
    "IncompleteStoreError",
    "ParameterError",
    "ModelError",
    "ResumeMismatchError",
    "ClusterError",
    "BlockFailedError",
]


class ChunksegError(Exception):
    """Base class of every error chunkseg raises on purpose."""


class InputError(ChunksegError, ValueError):
    """An input file or array is not what the command needs."""


class InputNotFoundError(ChunksegError, FileNotFoundError):
    """An input path does not exist."""


class FormatError(InputError):
    """A file is not of the expected format, or is corrupt / truncated."""


class ShapeError(InputError):
    """An array has the wrong number of dimensions or the wrong shape."""


class DTypeError(InputError, TypeError):
    """An array has a dtype the operation cannot take."""


class OutputExistsError(ChunksegError, FileExistsError):
    """The output exists and neither ``overwrite`` nor ``resume`` was given."""


class OutputError(ChunksegError, OSError):
    """The output cannot be written (permissions, disk full, not a directory)."""


class IncompleteStoreError(ChunksegError, RuntimeError):
    """A store was never marked complete (an interrupted or failed run)."""


class ParameterError(ChunksegError, ValueError):
    """A parameter value is out of its allowed range."""


class ModelError(ChunksegError, ValueError):
    """A model file is missing, corrupt, or not a chunkseg model."""


class ResumeMismatchError(ChunksegError, ValueError):
    """``resume`` was asked for with inputs or parameters that differ from the first run."""


class ClusterError(ChunksegError, ConnectionError):
    """The dask scheduler could not be reached or the cluster failed."""


class BlockFailedError(ChunksegError, RuntimeError):
    """One or more blocks failed after all retries; the output is not marked complete."""
