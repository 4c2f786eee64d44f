"""Convert, predict and segment one stack, then look at it in napari and save a screenshot.

    python examples/napari_screenshot.py ../shared/data/real/organoid/organoid_t1_raw.tif \
        --out results/ --png docs/napari_organoid.png

Needs the extra ``viewer`` (``pip install ".[viewer]"``) and a display (``xvfb-run -a``
on a headless machine).  The cells go inside the raw (``raw.ome.zarr/labels/cells``),
so napari-ome-zarr shows them over it; the probability is overlaid in green.  The
commands run in their own processes (as from a shell): napari and TensorFlow do not
share one process well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def chunkseg(*args: str) -> dict:
    """Run one chunkseg command in a fresh process; return its JSON summary."""
    out = subprocess.run([sys.executable, "-m", "chunkseg", *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main(argv: list[str] | None = None) -> int:
    from chunkseg.plots.viewer import save_screenshot

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tiff", help="one 3D TIFF stack")
    ap.add_argument("--out", default="results", help="folder for raw / prob OME-Zarr")
    ap.add_argument("--png", default="napari.png", help="the screenshot")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 480), metavar=("H", "W"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    raw, prob = out / "raw.ome.zarr", out / "prob.ome.zarr"
    chunkseg("convert", args.tiff, "--out", raw, "--overwrite")
    chunkseg("predict", raw, "--out", prob, "--scheduler", "threads", "--overwrite", "--quiet")
    seg = chunkseg("segment", prob, "--labels-in", raw, "--overwrite", "--quiet")
    _, layers = save_screenshot([raw, prob], args.png, size=tuple(args.size), contour=2)
    print(json.dumps({"cells": seg["n_cells"], "labels": seg["out"], "png": args.png,
                      "layers": layers}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
