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
