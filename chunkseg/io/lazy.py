"""A dask array over a file, one read task per block (shared by the TIFF and HDF5 readers).

Each task calls ``read(t, region)`` with the time point and the ``(z, y, x)`` slices of
its block and gets a ``(1, z, y, x)`` array.  The callable must pickle (open the file
inside the call), so the graph runs on distributed workers.
"""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np

__all__ = ["block_reader_array"]


def block_reader_array(
    read: Callable[[int, tuple[slice, slice, slice]], np.ndarray],
    shape: tuple[int, int, int, int],
    dtype: np.dtype,
    block: tuple[int, int, int],
    *,
    token: str,
) -> da.Array:
    """A lazy ``(t, z, y, x)`` array whose blocks are read by ``read``.

    Parameters
    ----------
    read : callable
        ``read(t, (zs, ys, xs)) -> ndarray`` of shape ``(1, z, y, x)``.
    shape : tuple of 4 int
        ``(t, z, y, x)``.
    dtype : numpy.dtype
    block : tuple of 3 int
        ``(z, y, x)`` extent of one read task (the last block of an axis is smaller).
    token : str
        Unique name of the graph (e.g. ``"read-tiff-<hash>"``).

    Returns
    -------
    dask.array.Array
        Chunks ``(1, *block)``.
    """
    chunks = ((1,) * shape[0], *(
        tuple(min(b, n - s) for s in range(0, n, b)) for b, n in zip(block, shape[1:])
    ))
    dsk = {}
    for t in range(shape[0]):
        for iz, z0 in enumerate(range(0, shape[1], block[0])):
            for iy, y0 in enumerate(range(0, shape[2], block[1])):
                for ix, x0 in enumerate(range(0, shape[3], block[2])):
                    region = (slice(z0, min(z0 + block[0], shape[1])),
                              slice(y0, min(y0 + block[1], shape[2])),
                              slice(x0, min(x0 + block[2], shape[3])))
                    dsk[(token, t, iz, iy, ix)] = (read, t, region)
    return da.Array(dsk, token, chunks, dtype=dtype)
