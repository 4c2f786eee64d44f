"""Shared fixtures: the real data folder and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real volumes (``../shared/data/real``); skips when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent (see ../shared/data/README.md)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weights depth-2, 2-filter chunkseg U-Net saved as ``.keras``."""
    import keras

    from chunkseg.model import UNetConfig, build_unet, save_model

    keras.utils.set_random_seed(0)
    cfg = UNetConfig(depth=2, base_filters=2)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(build_unet(cfg), path, metadata={"config": cfg.to_dict()})
    return path


#: voxel size of the small segmentation volume (µm)
SEG_VS = (0.25, 0.125, 0.125)


@pytest.fixture(scope="session")
def seg_synth():
    """Small cells (2.5 µm) in a 30 x 64 x 64 volume (~110 cells, most cut by blocks) and a
    blurred, noisy probability of their membranes: ``(SynthVolume, float32 probability)``."""
    import numpy as np
    from scipy import ndimage

    from chunkseg.synth import synth_volume

    v = synth_volume((30, 64, 64), seed=7, voxel_size=SEG_VS, cell_diameter=2.5, noise=False,
                     blobs=False)
    rng = np.random.default_rng(0)
    p = ndimage.gaussian_filter(v.mask.astype(np.float32), (1.0, 1.5, 1.5))
    p = np.clip(p / p.max() + rng.normal(0, 0.08, p.shape), 0, 1).astype(np.float32)
    return v, p


def store_volume(path, arr, voxel_size=SEG_VS, kind="probability", chunks=None):
    """Write a 3D or 4D array as a complete chunkseg OME-Zarr store; returns ``path``."""
    import dask.array as da

    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete

    arr = arr if arr.ndim == 4 else arr[None]
    create_image(path, shape=arr.shape, dtype=arr.dtype, voxel_size=voxel_size, chunks=chunks,
                 attrs={"kind": kind})
    write_volume(da.from_array(arr), path, progress=False)
    mark_complete(path)
    return path
