"""``chunkseg predict --method acme``: the ACME-style classical baseline as a command.

:func:`run_acme` is :func:`chunkseg.pipeline.predict.run_predict`'s twin for the
classical filter pipeline (:mod:`chunkseg.ops.acme`, on dask by
:class:`chunkseg.engine.acme.AcmeScorer`).  Both write their probability image
through the same steps (:mod:`chunkseg.pipeline._probability`): the same inputs and
intensity scaling, the same kind of output (an OME-Zarr ``probability`` image,
resumable) and the same summary keys, so ``evaluate``, ``segment`` (ACME's
``membraneSegmentation`` step is the shared seeded watershed,
:mod:`chunkseg.ops.watershed`) and the benchmark treat both methods alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from chunkseg.engine.acme import AcmeScorer
from chunkseg.io.store import open_volume
from chunkseg.ops.acme import AcmeParams
from chunkseg.ops.probability import OutputDtype
from chunkseg.ops.slices import parse_timepoints
from chunkseg.pipeline._probability import check_outputs, write_probability

__all__ = ["run_acme"]


def run_acme(
    in_path: str | os.PathLike,
    *,
    out: str | os.PathLike,
    params: AcmeParams | dict | None = None,
    block: int | Sequence[int] | None = None,
    compute_block: Sequence[int] | None = None,
    dtype: OutputDtype = "float32",
    timepoints: Any = None,
    threshold: float | None = None,
    mask_out: str | os.PathLike | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    pyramid: bool = True,
) -> dict[str, Any]:
    """ACME-style membrane score of a volume / time series (see the module docstring).

    Parameters
    ----------
    in_path : path
        OME-Zarr / Zarr (t, z, y, x) or (z, y, x), or a TIFF file.
    out : path
        Output OME-Zarr score image, float in [0, 1] (kind ``probability``).
    params : AcmeParams or dict, optional
        Filter parameters (defaults: :class:`~chunkseg.ops.acme.AcmeParams`).
    block : int or 3 ints, optional
        Output shard (write unit); default ``run_predict``'s block, clipped.
    compute_block : 3 ints, optional
        Filter block (dask task); default near
        :data:`chunkseg.engine.acme.ACME_BLOCK`, dividing ``block``.
    dtype, timepoints, threshold, mask_out, resume, overwrite, progress, pyramid
        As in :func:`chunkseg.pipeline.predict.run_predict`.
    client : distributed.Client, optional
        Run on this client; None: dask's current scheduler.  The filters are
        NumPy/SciPy code that holds the GIL part of the time: the command line runs
        them on one single-threaded worker process per core
        (:func:`chunkseg.engine.cluster.get_client` with ``layout="filters"``).

    Returns
    -------
    dict
        Run summary (``voxels``, ``seconds``, ``predict_seconds``, ``voxels_per_s``,
        ``halo``, ``block``, ``workers``, ...), also stored in the output's attributes.

    Raises
    ------
    ParameterError
        Bad dtype, threshold, time points or filter parameters.
    InputNotFoundError, FormatError, ShapeError, OutputExistsError
        As for ``run_predict``.
    """
    t_start = time.perf_counter()
    check_outputs(dtype, threshold)
    vol = open_volume(in_path)
    t0, t1 = parse_timepoints(timepoints, vol.shape[0])
    scorer = AcmeScorer.plan(vol.shape[1:], vol.voxel_size, params=params, block=block,
                             compute_block=compute_block)
    summary = write_probability(in_path, vol, scorer, out=out, timepoints=(t0, t1),
                                dtype=dtype, threshold=threshold, mask_out=mask_out,
                                client=client, resume=resume, overwrite=overwrite,
                                progress=progress, pyramid=pyramid)
    summary["seconds"] = round(time.perf_counter() - t_start, 3)
    return summary
