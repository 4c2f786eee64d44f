"""``chunkseg binarize``: cell instance labels → binary membrane mask, chunk by chunk.

Each chunk is extended by the halo that the membrane width needs
(:func:`chunkseg.ops.boundaries.halo_for_width`) with :func:`dask.array.map_overlap`;
at the volume faces nothing is padded (``boundary="none"``) and the block function
ignores out-of-volume neighbours, exactly as the in-memory
:func:`chunkseg.ops.boundaries.membrane_mask` does.  So the chunked mask equals the
in-memory mask voxel for voxel, also for cells that straddle many chunks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from chunkseg.engine.blocks import write_volume
from chunkseg.engine.volumes import membrane_volume
from chunkseg.errors import ShapeError
from chunkseg.io.fingerprint import fingerprint
from chunkseg.engine.pyramid import finish_image
from chunkseg.io.store import create_image, open_volume
from chunkseg.ops.boundaries import MaskMode, halo_for_width, in_plane_for
from chunkseg.ops.slices import compose_dropped, drop_slices as _drop

__all__ = ["run_binarize"]


def run_binarize(
    labels_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ignore: Sequence[int] = (0,),
    width: int = 1,
    mode: MaskMode = "thick",
    in_plane: bool | None = False,
    drop_slices: str | Sequence[int] | None = None,
    like: str | os.PathLike | None = None,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    pyramid: bool = True,
    client: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the membrane mask (uint8 0/1 OME-Zarr) of a cell instance label volume.

    Parameters
    ----------
    labels_path : path-like
        Integer labels (uint8 .. uint64): chunkseg OME-Zarr, Zarr array or TIFF.
    out : path-like
        OME-Zarr to write (``kind = "mask"``).
    ignore : sequence of int
        Label values that are not cells; the paper drops ``0 1``.
    width : int
        Membrane half-width in voxels (see :mod:`chunkseg.ops.boundaries`).
    mode : {"thick", "inner"}
        ``thick`` (default): symmetric about each interface; ``inner``: inside cells only.
    in_plane : bool or None
        Draw the mask of each z slice on its own, so that the mask of an oblique wall is
        as wide in every plane as the wall itself (but interfaces between z slices are
        not marked); None: when the z step exceeds twice the lateral one
        (:func:`~chunkseg.ops.boundaries.in_plane_for`).  Default False: the 3D
        definition every truth mask of chunkseg uses.
    drop_slices : str or sequence of int, optional
        Artifact z slices to remove (``"3,17,40-45"``), the same spec as for the raw.
    like : path-like, optional
        The raw (or normalized) volume these labels annotate: its shape must equal the
        labels' after dropping slices, else :class:`~chunkseg.errors.ShapeError`.
        Its voxel size is used when the labels carry none.
    chunks : sequence of int, optional
        Output chunk shape (z, y, x).
    overwrite, resume : bool
        Replace an existing output / continue an interrupted one.
    pyramid : bool
        Add a multiscale pyramid (levels halved until a plane fits 512 x 512).
    client : distributed.Client, optional
        Cluster to run on; ``None`` uses dask's current scheduler.
    progress : bool
        Progress bar.

    Returns
    -------
    dict
        Output path, shape, labels dtype, ignore / width / mode, halo, dropped slices,
        blocks written and skipped, seconds.

    Raises
    ------
    DTypeError
        Float labels.
    ShapeError
        Labels and ``like`` differ in shape.
    ParameterError
        Bad width, mode or slice spec.
    """
    t0 = time.perf_counter()
    vol = open_volume(labels_path)
    data, dropped = _drop(vol.data, drop_slices, name=str(labels_path))
    voxel_size = vol.voxel_size
    if like is not None:
        ref = open_volume(like)
        if tuple(ref.shape) != tuple(data.shape):
            hint = ref.attrs.get("dropped_slices")
            raise ShapeError(
                f"{labels_path}: labels shape {tuple(data.shape)}"
                + (f" (after dropping slices {dropped})" if dropped else "")
                + f" differs from the raw {like} shape {tuple(ref.shape)}"
                + (f"; the raw had slices {hint} dropped: pass the same --drop-slices"
                   if hint and not dropped else "")
            )
        if vol.voxel_size == (1.0, 1.0, 1.0):
            voxel_size = ref.voxel_size
    in_plane = in_plane_for(voxel_size) if in_plane is None else bool(in_plane)
    mask = membrane_volume(data, width=width, ignore=ignore, mode=mode, in_plane=in_plane,
                           name=str(labels_path))
    all_dropped = compose_dropped(vol.attrs.get("dropped_slices") or [], dropped)
    params = {"ignore": sorted(int(v) for v in ignore), "width": int(width), "mode": mode,
              "in_plane": in_plane}
    attrs = {"kind": "mask", "source": [str(labels_path)], "binarize": params,
             "halo": halo_for_width(width), "dropped_slices": all_dropped,
             "fingerprint": fingerprint(labels_path, {**params, "dropped": all_dropped,
                                                      "chunks": chunks},
                                        shape=vol.shape, dtype=vol.dtype)}
    create_image(out, shape=data.shape, dtype=np.uint8, voxel_size=voxel_size,
                 chunks=chunks, attrs=attrs, overwrite=overwrite, resume=resume,
                 pyramid=pyramid)
    report = write_volume(mask, out, client=client, resume=resume, progress=progress,
                          desc="binarize")
    seconds = time.perf_counter() - t0
    finish_image(out, client=client, resume=resume, progress=progress,
                 binarize_seconds=round(seconds, 3))
    return {"input": str(labels_path), "out": str(out), "shape": list(data.shape),
            "labels_dtype": str(data.dtype), **params,
            "halo": halo_for_width(width), "dropped_slices": all_dropped,
            "blocks_written": report.written, "blocks_skipped": report.skipped,
            "seconds": round(seconds, 3)}
