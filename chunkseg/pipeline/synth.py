"""``chunkseg synth``: write a synthetic membrane time series (raw, labels, mask), streamed.

Each output is a lazy dask array whose blocks (the store's shard grid) call the pure
generator :func:`chunkseg.synth.synth_block`; :func:`chunkseg.engine.blocks.write_volume`
writes them shard by shard, so memory is bounded by a few blocks whatever the size of
the series.  Every voxel depends only on the parameters and its global index, so the
result does not depend on the chunking, the scheduler or the number of workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from chunkseg.engine.blocks import write_grid, write_volume
from chunkseg.errors import OutputExistsError, ParameterError
from chunkseg.io.fingerprint import fingerprint
from chunkseg.engine.pyramid import finish_image
from chunkseg.io.store import check_resume_pyramid, create_image, is_zarr, read_attrs
from chunkseg.synth import SynthParams, synth_block

__all__ = ["OUTPUTS", "run_synth", "synth_dask"]

#: output name -> (file name, dtype, chunkseg ``kind``)
OUTPUTS: dict[str, tuple[str, Any, str]] = {
    "raw": ("raw.ome.zarr", np.uint16, "raw"),
    "labels": ("labels.ome.zarr", np.uint32, "labels"),
    "mask": ("mask.ome.zarr", np.uint8, "mask"),
}


def _block(params: SynthParams, output: str, dtype: Any, block_info=None) -> np.ndarray:
    (t0, t1), *region = block_info[None]["array-location"]
    if t1 - t0 == 1:  # the usual write block: no extra copy
        return synth_block(params, region, t=t0, outputs=(output,))[output][None]
    out = np.empty((t1 - t0, *(b - a for a, b in region)), dtype=dtype)
    for t in range(t0, t1):
        out[t - t0] = synth_block(params, region, t=t, outputs=(output,))[output]
    return out


def synth_dask(
    params: SynthParams,
    output: str,
    *,
    timepoints: int = 1,
    chunks: Sequence[int] = (1, 64, 256, 256),
) -> da.Array:
    """A lazy ``(t, z, y, x)`` dask array of one synthetic output.

    Parameters
    ----------
    params : SynthParams
    output : {"raw", "labels", "mask"}
    timepoints : int
    chunks : sequence of 4 int
        Block shape; every block is generated independently by ``synth_block``.
    """
    if output not in OUTPUTS:
        raise ParameterError(f"output must be one of {sorted(OUTPUTS)}; got {output!r}")
    dtype = OUTPUTS[output][1]
    shape = (int(timepoints), *params.shape)
    norm = da.core.normalize_chunks(tuple(int(c) for c in chunks), shape)
    return da.map_blocks(_block, params, output, dtype, chunks=norm, dtype=dtype,
                         meta=np.empty((0, 0, 0, 0), dtype),
                         name=f"synth-{output}-{_stamp(params, timepoints)}")


def _stamp(params: SynthParams, timepoints: int) -> str:
    """The run fingerprint of a synthetic series (no input files: its parameters)."""
    return fingerprint(params={"synth": params.to_dict(), "timepoints": int(timepoints)})


def run_synth(
    out: str | os.PathLike,
    *,
    shape: Sequence[int],
    timepoints: int = 1,
    seed: int = 0,
    voxel_size: Sequence[float] = (0.4, 0.1, 0.1),
    chunks: Sequence[int] | None = None,
    blobs: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    pyramid: bool = True,
    outputs: Sequence[str] = ("raw", "labels", "mask"),
    client: Any = None,
    progress: bool = True,
    **params: Any,
) -> dict[str, str]:
    """Write a synthetic lattice light-sheet membrane series with exact truth.

    Parameters
    ----------
    out : path-like
        Folder receiving ``raw.ome.zarr`` (uint16 camera counts), ``labels.ome.zarr``
        (uint32 cell ids, constant over time per cell) and ``mask.ome.zarr`` (uint8
        membrane mask, the ``binarize`` definition); created if missing.
    shape : sequence of 3 int
        ``(z, y, x)`` voxels of one time point.
    timepoints : int
        Number of time points; cells drift slowly between them.
    seed : int
        Random seed; the same seed and parameters give the same voxels.
    voxel_size : sequence of 3 float
        ``(z, y, x)`` micrometres (default: 400 nm z steps, 100 nm pixels).
    chunks : sequence of 3 int, optional
        Chunk shape ``(z, y, x)`` of the stores (see ``chunkseg convert``).
    blobs : bool
        Add out-of-focus blobs (distractors) to the raw image.
    overwrite, resume : bool
        Replace existing outputs / continue an interrupted run with the same parameters.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    outputs : sequence of {"raw", "labels", "mask"}
        Which stores to write.
    client : distributed.Client, optional
        Cluster to run on; ``None`` uses dask's threaded scheduler.
    progress : bool
        Show progress bars.
    **params
        Further :class:`chunkseg.synth.SynthParams` fields (``cell_diameter``,
        ``psf_sigma``, ``membrane_photons``, ``background``, ``noise``, ...).

    Returns
    -------
    dict
        Output name -> path of its store.

    Raises
    ------
    ParameterError
        A non-positive shape, time point count, voxel size or chunk size.
    OutputExistsError
        An output exists and neither ``overwrite`` nor ``resume`` was given (checked
        for every output before anything is written).
    """
    t_start = time.perf_counter()
    if isinstance(timepoints, bool) or int(timepoints) != timepoints or int(timepoints) < 1:
        raise ParameterError(f"timepoints must be a positive integer; got {timepoints!r}")
    timepoints = int(timepoints)
    p = SynthParams(shape=shape, seed=seed, voxel_size=voxel_size, blobs=blobs, **params)
    if chunks is not None and (len(chunks) != 3 or any(int(c) < 1 for c in chunks)):
        raise ParameterError(f"chunks must be 3 positive integers (z, y, x); got {tuple(chunks)}")
    outputs = tuple(outputs)
    if not outputs or set(outputs) - set(OUTPUTS):
        raise ParameterError(f"outputs must be among {sorted(OUTPUTS)}; got {outputs!r}")
    out = Path(out)
    paths = {name: out / OUTPUTS[name][0] for name in outputs}
    if not (overwrite or resume):
        for path in paths.values():
            if path.exists():
                raise OutputExistsError(
                    f"{path}: output exists; pass overwrite (--overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(p, timepoints)
    full = (timepoints, *p.shape)
    for name, path in paths.items():
        _, dtype, kind = OUTPUTS[name]
        if resume and is_zarr(path) and _is_complete(path, stamp):
            check_resume_pyramid(path, pyramid)
            continue
        attrs = {"kind": kind, "source": [], "synth": p.to_dict(), "seed": p.seed,
                 "timepoints": timepoints, "fingerprint": stamp}
        arr = create_image(path, shape=full, dtype=dtype, voxel_size=p.voxel_size,
                           chunks=chunks, attrs=attrs, overwrite=overwrite, resume=resume,
                           pyramid=pyramid)
        data = synth_dask(p, name, timepoints=timepoints, chunks=write_grid(arr))
        write_volume(data, path, client=client, resume=resume, progress=progress,
                     desc=f"synth {name}")
        finish_image(path, client=client, resume=resume, progress=progress,
                     synth_seconds=round(time.perf_counter() - t_start, 3))
    return {name: str(path) for name, path in paths.items()}


def _is_complete(path: Path, fingerprint: str) -> bool:
    attrs = read_attrs(path)
    return bool(attrs.get("complete")) and attrs.get("fingerprint") == fingerprint
