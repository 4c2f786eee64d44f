"""A real viewer: raw, probability and cells of a chunkseg run opened in napari.

Needs the optional extra ``viewer`` (napari, napari-ome-zarr) and a display: the
test starts a virtual one with Xvfb when ``DISPLAY`` is unset.  Skipped, with the
reason, where either is missing (CI installs neither).  napari runs in a child
process, so Qt's connection to the display ends before the display does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari", reason="napari is not installed (pip install 'chunkseg[viewer]')")
pytest.importorskip("napari_ome_zarr",
                    reason="napari-ome-zarr is not installed (pip install 'chunkseg[viewer]')")

from chunkseg.cli import main  # noqa: E402
from chunkseg.engine.blocks import write_volume  # noqa: E402
from chunkseg.engine.pyramid import finish_image  # noqa: E402
from chunkseg.io.store import create_image  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.subprocess]


@pytest.fixture(scope="module")
def display():
    """The current display, or a virtual Xvfb one for the module's tests."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no display (DISPLAY unset) and no Xvfb to make one (apt-get install xvfb)")
    number = next(n for n in range(142, 400) if not Path(f"/tmp/.X{n}-lock").exists())
    proc = subprocess.Popen([xvfb, f":{number}", "-screen", "0", "1024x768x24", "-nolisten",
                             "tcp"], stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{number}")
    for _ in range(100):  # the display is ready once its socket exists
        if socket.exists() or proc.poll() is not None:
            break
        time.sleep(0.1)
    if not socket.exists():
        proc.kill()
        pytest.skip(f"Xvfb did not start a display :{number}")
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _cells(shape, n=40, seed=0):
    """A 2D Voronoi tessellation extruded in z, and its membrane probability."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape[1:], np.int32)
    seeds[rng.integers(0, shape[1], n), rng.integers(0, shape[2], n)] = np.arange(1, n + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[iy, ix]
    edge = (ndimage.grey_dilation(labels, 3) != ndimage.grey_erosion(labels, 3))
    prob = ndimage.gaussian_filter(edge.astype(np.float32), 1.0)
    prob = np.clip(prob / prob.max() * 1.2, 0, 1)
    return np.broadcast_to(prob, shape).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """raw.ome.zarr with labels/cells inside, and prob.ome.zarr: (1, 3, 530, 96), 2 levels."""
    import dask.array as da

    tmp = tmp_path_factory.mktemp("viewer")
    prob = _cells((3, 530, 96))
    noise = np.random.default_rng(1).normal(0, 60, prob.shape)
    tifffile.imwrite(tmp / "raw.tif", (200 + 2000 * prob + noise).clip(0).astype(np.uint16),
                     imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    raw, pp = tmp / "raw.ome.zarr", tmp / "prob.ome.zarr"
    assert main(["convert", str(tmp / "raw.tif"), "--out", str(raw)]) == 0
    create_image(pp, shape=(1, *prob.shape), dtype=np.float32, voxel_size=(2.0, 0.5, 0.5),
                 attrs={"kind": "probability"}, pyramid=True)
    write_volume(da.from_array(prob[None]), pp, progress=False)
    finish_image(pp, progress=False)
    assert main(["segment", str(pp), "--labels-in", str(raw), "--quiet"]) == 0
    return raw, pp


def test_napari_opens_raw_probability_and_cells(display, run, tmp_path):
    raw, prob = run
    png = tmp_path / "shot.png"
    code = ("import json; from chunkseg.plots.viewer import save_screenshot; "
            f"im, layers = save_screenshot([{str(raw)!r}, {str(prob)!r}], {str(png)!r}, "
            "size=(300, 200)); print('RESULT', json.dumps({'layers': layers, "
            "'shape': im.shape, 'std': float(im[..., :3].std())}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "DISPLAY": display}, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    layers = result["layers"]
    assert [lv["type"] for lv in layers] == ["Image", "Labels", "Image"]
    assert "cells" in layers[1]["name"]
    for layer in layers:
        assert layer["levels"] == 2, layer
        assert layer["scale"] == [1.0, 2.0, 0.5, 0.5], layer
    assert png.is_file() and result["shape"][:2] == [300, 200]
    assert result["std"] > 5  # something was drawn, not a blank canvas
