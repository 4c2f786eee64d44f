"""Block functions of a membrane probability image: output dtype and threshold (pure NumPy)."""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["OUTPUT_DTYPES", "OutputDtype", "threshold_block", "to_output_dtype"]

#: output dtypes of a probability image (uint8 stores round(255 p))
OUTPUT_DTYPES = ("uint8", "float16", "float32")
OutputDtype = Literal["uint8", "float16", "float32"]


def to_output_dtype(p: np.ndarray, dtype: str) -> np.ndarray:
    """A probability block in [0, 1] as ``dtype`` (uint8: ``floor(255 clip(p) + 0.5)``).

    Examples
    --------
    >>> to_output_dtype(np.array([0.0, 0.5, 1.0]), "uint8").tolist()
    [0, 128, 255]
    """
    if dtype == "uint8":
        return np.floor(np.clip(p, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return p.astype(dtype, copy=False)


def threshold_block(block: np.ndarray, threshold: float, scale: float) -> np.ndarray:
    """uint8 mask ``block * scale >= threshold`` (``scale`` 1/255 for uint8 storage).

    Examples
    --------
    >>> threshold_block(np.array([0, 127, 128], np.uint8), 0.5, 1 / 255).tolist()
    [0, 0, 1]
    """
    return (block.astype(np.float32) * np.float32(scale) >= threshold).astype(np.uint8)
