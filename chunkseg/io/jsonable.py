"""One conversion of results to strict JSON values, for reports and model metadata."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["jsonable"]


def jsonable(value: Any) -> Any:
    """A copy of ``value`` made of JSON types only.

    NumPy arrays and scalars become lists and numbers, tuples and sets lists, paths
    strings, objects with ``to_dict`` (configurations) dicts; NaN and infinities become
    None (strict JSON has no such numbers).

    Raises
    ------
    TypeError
        A value of another type.

    Examples
    --------
    >>> import numpy as np
    >>> jsonable({"a": np.arange(2), "b": (np.float32(0.5), float("nan"))})
    {'a': [0, 1], 'b': [0.5, None]}
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")
