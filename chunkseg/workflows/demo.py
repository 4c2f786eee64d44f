"""``chunkseg demo``: the whole pipeline on built-in defaults, no data and no GPU needed.

synthesize a small membrane time series (exact truth) → save it as TIFF stacks, as a
microscope would → ``convert`` to OME-Zarr → ``predict`` with the default model
(seam-free halo) → ``evaluate`` against the truth (threshold sweep, figures, HTML) →
binarize at the best-IoU threshold → an overview PNG.  Everything runs on one
LocalCluster (dashboard printed) and lands in one folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEMO_SHAPE", "run_demo"]

#: (z, y, x) of one synthetic time point: small enough for ~1 minute on 2 cores
DEMO_SHAPE = (32, 96, 96)


def _overview_png(raw: str, prob: str, mask: str, truth: str, path: Path) -> str:
    """Middle z slice of time point 0: raw | probability | binarized | truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chunkseg.io.store import open_volume

    vols = [open_volume(p).data for p in (raw, prob, mask, truth)]
    z = vols[0].shape[1] // 2
    planes = [np.asarray(v[0, z]) for v in vols]
    titles = ["raw (synthetic)", "membrane probability", "binarized (best IoU)", "truth"]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), constrained_layout=True)
    for ax, im, title in zip(axes, planes, titles):
        ax.imshow(im, cmap="gray" if title.startswith("raw") else "magma",
                  vmin=0 if not title.startswith("raw") else None,
                  vmax=(255 if im.dtype == np.uint8 and "prob" in title else
                        (1 if not title.startswith("raw") else None)))
        ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle(f"chunkseg demo: t = 0, z = {z}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def run_demo(
    out: str | os.PathLike = "chunkseg-demo",
    *,
    shape: Sequence[int] = DEMO_SHAPE,
    timepoints: int = 2,
    seed: int = 0,
    model: str | os.PathLike = "default",
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run synth → convert → predict → evaluate → binarize in ``out``; return a summary.

    Parameters
    ----------
    out : path
        Folder for everything (replaced when ``overwrite``).
    shape : (z, y, x)
        One synthetic time point.
    timepoints : int
        Length of the synthetic series.
    seed : int
        Synthetic data seed.
    model : path or "default"
        The model (the packaged default unless given).
    scheduler, workers
        As for :func:`chunkseg.pipeline.predict.run_predict` (default a LocalCluster).
    overwrite : bool
        Replace ``out`` if it exists.
    progress : bool
        Progress bars.

    Returns
    -------
    dict
        Paths (``raw``, ``probability``, ``mask``, ``truth``, ``report``, ``pngs``),
        ``dashboard``, ``voxels_per_s``, ``iou``, ``threshold``, ``seconds``.

    Raises
    ------
    ModelError
        The model (e.g. the packaged default) is missing or not a chunkseg model.
    OutputExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    import tifffile

    from chunkseg.engine.cluster import dashboard_url, get_client, model_layout
    from chunkseg.errors import OutputExistsError
    from chunkseg.io.store import open_volume
    from chunkseg.model.info import model_info
    from chunkseg.pipeline.convert import run_convert
    from chunkseg.pipeline.evaluate import run_evaluate
    from chunkseg.pipeline.predict import run_predict, write_threshold_mask
    from chunkseg.pipeline.synth import run_synth

    t_start = time.perf_counter()
    info = model_info(model)  # fail before doing anything when the model is missing
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise OutputExistsError(f"{out}: demo folder exists; pass overwrite (--overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    n_workers, n_threads, tf_threads = model_layout(scheduler, workers, None)
    env = {"TF_NUM_INTRAOP_THREADS": str(tf_threads), "TF_NUM_INTEROP_THREADS": "1",
           "TF_CPP_MIN_LOG_LEVEL": "2"} if tf_threads else None
    session = (contextlib.nullcontext(None) if scheduler in ("threads", "sync") else
               get_client(scheduler, workers=n_workers, threads_per_worker=n_threads,
                          worker_env=env))
    with session as client:
        synth = run_synth(out / "synth", shape=tuple(shape), timepoints=timepoints, seed=seed,
                          client=client, progress=progress)
        raw_vol = open_volume(synth["raw"])
        tiffs = []
        for t in range(timepoints):  # what a microscope writes: one TIFF stack per time point
            tiffs.append(out / "tiff" / f"stack_t{t:03d}.tif")
            tiffs[-1].parent.mkdir(exist_ok=True)
            tifffile.imwrite(tiffs[-1], np.asarray(raw_vol.data[t]), imagej=True,
                             resolution=(1 / raw_vol.voxel_size[2], 1 / raw_vol.voxel_size[1]),
                             metadata={"axes": "ZYX", "spacing": raw_vol.voxel_size[0],
                                       "unit": "um"})
        raw = out / "raw.ome.zarr"
        run_convert([str(p) for p in tiffs], raw, voxel_size=raw_vol.voxel_size, client=client,
                    progress=progress)
        prob = out / "probability.ome.zarr"
        pred = run_predict(raw, model=info.path, out=prob, halo="auto", client=client,
                           progress=progress)
        report = run_evaluate(prob, out=out / "report", truth=synth["mask"], client=client)
        best = report["overall"]["best"]["iou"]
        mask = write_threshold_mask(prob, out=out / "mask.ome.zarr", threshold=best["threshold"],
                                    client=client, progress=progress)
        overview = _overview_png(str(raw), str(prob), mask, synth["mask"], out / "overview.png")
        dashboard = dashboard_url(client) if client is not None else None
    figures = [str(out / "report" / f) for f in (report.get("figures") or {}).values()
               if str(f).endswith(".png")]
    return {
        "folder": str(out), "raw": str(raw), "probability": str(prob), "mask": mask,
        "truth": synth["mask"], "labels": synth.get("labels"),
        "report": str(out / "report" / "report.html"), "pngs": [overview, *figures],
        "dashboard": dashboard, "voxels_per_s": pred["voxels_per_s"],
        "predict_seconds": pred["predict_seconds"], "halo": pred["halo"],
        "threshold": best["threshold"], "iou": best["value"],
        "boundary_f1": report["overall"]["boundary"]["best_f1"]["value"],
        "model": info.path, "seconds": round(time.perf_counter() - t_start, 1),
    }
