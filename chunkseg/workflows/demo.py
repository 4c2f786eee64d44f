"""``chunkseg demo``: the whole pipeline on built-in defaults, no data and no GPU needed.

synthesize a small membrane time series (exact truth) → save it as TIFF stacks, as a
microscope would → ``convert`` to OME-Zarr → ``predict`` with the default model
(seam-free halo) → ``evaluate`` against the truth (threshold sweep, figures, HTML) →
binarize at the best-IoU threshold → an overview PNG.  Everything runs on one
LocalCluster (dashboard printed) and lands in one folder.
"""

from __future__ import annotations

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
    client: Any = None,
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
    client : distributed.Client, optional
        Run every step on this client (the command line opens a LocalCluster with
        :func:`chunkseg.engine.cluster.get_client`, ``layout="model"``); None:
        dask's current scheduler.
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
    from chunkseg.engine.cluster import dashboard_url
    from chunkseg.model.info import model_info
    from chunkseg.pipeline.convert import run_convert
    from chunkseg.pipeline.evaluate import run_evaluate
    from chunkseg.pipeline.predict import run_predict, write_threshold_mask
    from chunkseg.pipeline.synth import run_synth

    t_start = time.perf_counter()
    info = model_info(model)  # fail before doing anything when the model is missing
    out = _fresh_folder(out, overwrite)
    synth = run_synth(out / "synth", shape=tuple(shape), timepoints=timepoints, seed=seed,
                      client=client, progress=progress)
    raw = out / "raw.ome.zarr"
    tiffs, voxel_size = _write_tiffs(synth["raw"], out / "tiff")
    run_convert(tiffs, raw, voxel_size=voxel_size, client=client, progress=progress)
    prob = out / "probability.ome.zarr"
    pred = run_predict(raw, model=info.path, out=prob, halo="auto", client=client,
                       progress=progress)
    report = run_evaluate(prob, out=out / "report", truth=synth["mask"], client=client)
    best = report["overall"]["best"]["iou"]
    mask = write_threshold_mask(prob, out=out / "mask.ome.zarr", threshold=best["threshold"],
                                client=client, progress=progress)
    overview = _overview_png(str(raw), str(prob), mask, synth["mask"], out / "overview.png")
    figures = [str(out / "report" / f) for f in (report.get("figures") or {}).values()
               if str(f).endswith(".png")]
    return {
        "folder": str(out), "raw": str(raw), "probability": str(prob), "mask": mask,
        "truth": synth["mask"], "labels": synth.get("labels"),
        "report": str(out / "report" / "report.html"), "pngs": [overview, *figures],
        "dashboard": dashboard_url(client) if client is not None else None,
        "voxels_per_s": pred["voxels_per_s"],
        "predict_seconds": pred["predict_seconds"], "halo": pred["halo"],
        "threshold": best["threshold"], "iou": best["value"],
        "boundary_f1": report["overall"]["boundary"]["best_f1"]["value"],
        "model": info.path, "seconds": round(time.perf_counter() - t_start, 1),
    }


def _fresh_folder(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` created empty (an existing one replaced only with ``overwrite``)."""
    from chunkseg.errors import OutputExistsError

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise OutputExistsError(f"{out}: demo folder exists; pass overwrite (--overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _write_tiffs(raw_path: str, folder: Path) -> tuple[list[str], tuple[float, ...]]:
    """What a microscope writes: one ImageJ TIFF stack per time point; and the voxel size."""
    import tifffile

    from chunkseg.io.store import open_volume

    vol = open_volume(raw_path)
    folder.mkdir(exist_ok=True)
    tiffs = []
    for t in range(vol.shape[0]):
        tiffs.append(str(folder / f"stack_t{t:03d}.tif"))
        tifffile.imwrite(tiffs[-1], np.asarray(vol.data[t]), imagej=True,
                         resolution=(1 / vol.voxel_size[2], 1 / vol.voxel_size[1]),
                         metadata={"axes": "ZYX", "spacing": vol.voxel_size[0], "unit": "um"})
    return tiffs, vol.voxel_size
