"""Shared fixtures: the real data folder and small helpers; the test markers.

Markers (registered in ``pyproject.toml``): ``tf`` (imports TensorFlow / Keras: a model
is built, loaded or trained), ``cluster`` (starts a ``distributed`` cluster),
``subprocess`` (runs a child Python), ``slow``.  Tests that use a model fixture, and
whole modules about the network, are marked ``tf`` here; the rest carry their marks.
``pytest -m "not tf"`` tests the NumPy / dask layers and fails a test that imports
TensorFlow without the mark.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from chunkseg.engine.backend import ONEDNN_ENV

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# the kernels chunkseg predict runs, also where a test imports TensorFlow before the
# predict code configures it
for _name, _value in ONEDNN_ENV.items():
    os.environ.setdefault(_name, _value)

REPO = Path(__file__).resolve().parents[1]
#: fixtures that build or load a network
TF_FIXTURES = {"tiny_model", "inputs"}
#: test modules about the network itself
TF_MODULES = {"test_model", "test_train", "test_backends", "test_distributed"}
#: test modules that start distributed clusters in every test
CLUSTER_MODULES = {"test_distributed"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in TF_MODULES or TF_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tf)
        if module in CLUSTER_MODULES:
            item.add_marker(pytest.mark.cluster)
    # slow tests run only when -m names them (so -m "not tf" stays fast as well)
    if "slow" not in (config.option.markexpr or ""):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(autouse=True)
def _tensorflow_only_in_tf_tests(request):
    """Under ``-m "not tf"``: fail the test that imported TensorFlow without the mark."""
    before = "tensorflow" in sys.modules
    yield
    expr = request.config.option.markexpr or ""
    if "not tf" in expr and not before and "tensorflow" in sys.modules:
        pytest.fail(f"{request.node.nodeid} imports TensorFlow; mark it tf")
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
