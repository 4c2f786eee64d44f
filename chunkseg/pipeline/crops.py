"""``chunkseg crops``: write augmented training crops as TIFF pairs, as the paper did.

Each crop ``i`` becomes ``raw_<i>.tif`` and ``mask_<i>.tif`` (ImageJ hyperstacks, axes
ZYX, voxel size in µm) in the output folder, with ``crops.json`` recording every
parameter and, per crop, where it came from and which augmentation it got.  Raw crops
are written as **uint8** (``round(255 · x)`` of the [0, 1] network input, the paper's
8-bit images) or, with ``raw_dtype="float32"``, as the float32 network input itself;
masks as uint8 0/1.  Training in chunkseg does not need these files (``chunkseg train``
samples crops from Zarr directly); they are for inspection and for other tools.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg import __version__
from chunkseg.model.training_data import DEFAULT_CROP, Crop, CropSampler
from chunkseg.errors import OutputExistsError, ParameterError
from chunkseg.ops.augment import resolve_noise

__all__ = ["MANIFEST", "run_crops"]

MANIFEST = "crops.json"
RAW_DTYPES = ("uint8", "float32")


def _write_tiff(path: Path, data: np.ndarray, voxel_size: Sequence[float]) -> None:
    import tifffile

    vz, vy, vx = (float(v) for v in voxel_size)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / vy, 1 / vx),
                     metadata={"axes": "ZYX", "spacing": vz, "unit": "um"})


def _clear(out: Path, overwrite: bool) -> None:
    ours = [*out.glob("raw_*.tif"), *out.glob("mask_*.tif"), out / MANIFEST]
    ours = [p for p in ours if p.exists()]
    if ours and not overwrite:
        raise OutputExistsError(f"{out}: holds crops already ({len(ours)} files, e.g. {ours[0].name}); "
                                "pass overwrite (--overwrite) to replace them")
    for p in ours:
        p.unlink()


def run_crops(
    raw: str | os.PathLike,
    mask: str | os.PathLike,
    *,
    out: str | os.PathLike,
    n: int,
    size: Sequence[int] = DEFAULT_CROP,
    noise: Any = None,
    seed: int = 0,
    augment: bool = True,
    membrane_bias: float = 0.5,
    normalization: tuple[float, float] | None = None,
    raw_dtype: str = "uint8",
    overwrite: bool = False,
    workers: int = 4,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``n`` augmented (raw, mask) crops of ``size`` as TIFF pairs into ``out``.

    Parameters
    ----------
    raw, mask : path-like
        Raw volume (uint8 normalised, or uint16 with a normalization range) and its
        membrane mask (uint8 0/1): chunkseg OME-Zarr, zarr or TIFF.
    out : path-like
        Output folder (created).
    n : int
        Number of crop pairs.
    size : (z, y, x)
        Crop shape.
    noise : str, (μ, σ) or None
        Gaussian noise preset (``low``, ``medium``, ``high``) or values in [0, 1] units,
        added to every raw crop (see :mod:`chunkseg.ops.augment`).
    seed : int
        Crop ``i`` depends only on ``(seed, i)``.
    augment : bool
        Random flips, y-x rotations and intensity scale/shift (noise is added whenever
        ``noise`` is given).
    membrane_bias, normalization :
        See :class:`chunkseg.model.training_data.CropSampler`.
    raw_dtype : {"uint8", "float32"}
        Raw TIFF dtype (see the module docstring).
    overwrite : bool
        Replace crops already in ``out``.
    workers : int
        Crops read and written in parallel threads.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        The manifest written to ``out/crops.json``.

    Raises
    ------
    ParameterError, OutputExistsError, and the errors of :class:`CropSampler`.
    """
    from tqdm.auto import tqdm

    if int(n) < 1:
        raise ParameterError(f"n must be >= 1; got {n}")
    if raw_dtype not in RAW_DTYPES:
        raise ParameterError(f"raw_dtype must be one of {RAW_DTYPES}; got {raw_dtype!r}")
    if int(workers) < 1:
        raise ParameterError(f"workers must be >= 1; got {workers}")
    mu_sigma = resolve_noise(noise)
    sampler = CropSampler([(raw, mask)], crop=size, seed=seed, membrane_bias=membrane_bias,
                          normalization=normalization)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clear(out, overwrite)
    options: dict[str, Any] = {"noise": noise}
    if not augment:  # noise only
        options.update(flip_axes=(), rotate=False, intensity_scale=(1.0, 1.0),
                       intensity_shift=(0.0, 0.0))
    digits = max(5, len(str(int(n) - 1)))
    voxel_size = sampler.voxel_size

    def one(i: int) -> dict[str, Any]:
        c: Crop = sampler.sample(i, augment=augment or mu_sigma is not None, **options)
        data = np.rint(c.raw * 255).astype(np.uint8) if raw_dtype == "uint8" else c.raw
        _write_tiff(out / f"raw_{i:0{digits}d}.tif", data, voxel_size)
        _write_tiff(out / f"mask_{i:0{digits}d}.tif", c.mask.astype(np.uint8), voxel_size)
        return c.info()

    with ThreadPoolExecutor(int(workers)) as pool:
        crops = list(tqdm(pool.map(one, range(int(n))), total=int(n), desc="crops",
                          disable=not progress, unit="crop"))
    manifest = {
        "chunkseg_version": __version__,
        "raw": str(raw),
        "mask": str(mask),
        "n": int(n),
        "size": list(sampler.crop),
        "seed": int(seed),
        "augment": bool(augment),
        "noise": {"preset": noise if isinstance(noise, str) else None,
                  "mu": mu_sigma[0] if mu_sigma else 0.0,
                  "sigma": mu_sigma[1] if mu_sigma else 0.0},
        "membrane_bias": float(membrane_bias),
        "normalization": list(sampler.ranges[0]) if sampler.ranges[0] else None,
        "raw_dtype": raw_dtype,
        "raw_encoding": "round(255 * x), x in [0, 1]" if raw_dtype == "uint8" else "x in [0, 1]",
        "voxel_size": list(voxel_size),
        "files": {"raw": f"raw_{'#' * digits}.tif", "mask": f"mask_{'#' * digits}.tif"},
        "mean_membrane_fraction": float(np.mean([c["membrane_fraction"] for c in crops])),
        "crops": crops,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
