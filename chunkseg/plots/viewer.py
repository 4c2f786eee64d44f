"""Look at chunkseg outputs in napari (the optional extra ``viewer``: napari, napari-ome-zarr).

napari-ome-zarr reads every level of an OME-Zarr pyramid and the label images listed
in its ``labels`` group, so ``open_layers(viewer, "raw.ome.zarr", "prob.ome.zarr")``
shows the raw, the cells written with ``segment --labels-in raw.ome.zarr`` and the
membrane probability, each fetched at the level that fits the screen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["open_layers", "save_screenshot"]

#: colour maps of the images after the first (which stays grey), blended additively
OVERLAY_COLORMAPS = ("green", "magenta", "cyan", "yellow")


def open_layers(viewer: Any, *paths: str | os.PathLike, contour: int = 1) -> list[Any]:
    """Open OME-Zarr images (with their labels) in a napari viewer.

    Parameters
    ----------
    viewer : napari.Viewer
    *paths : path-like
        OME-Zarr image groups; the first is the base image (grey), the others are
        overlaid in colour.
    contour : int
        Draw labels as outlines this many pixels thick (0: filled).

    Returns
    -------
    list of napari layers
        In the order opened; labels are made visible (napari-ome-zarr hides them)
        and drawn on top.
    """
    from napari.layers import Labels

    layers: list[Any] = []
    overlays = iter(OVERLAY_COLORMAPS)
    for k, path in enumerate(paths):
        added = viewer.open(str(path), plugin="napari-ome-zarr")
        for layer in added:
            layer.visible = True
            if isinstance(layer, Labels):
                layer.contour = int(contour)
                continue
            layer.contrast_limits = _plane_range(layer)
            if k > 0:
                layer.colormap = next(overlays, "gray")
                layer.blending = "additive"
                layer.opacity = 0.5
        layers.extend(added)
    for layer in [lay for lay in layers if isinstance(lay, Labels)]:  # outlines on top
        viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))
    return layers


def _plane_range(layer: Any, percentiles: tuple[float, float] = (1.0, 99.5)) -> list[float]:
    """Contrast limits from the middle plane of the coarsest level (a small read)."""
    data = layer.data[-1] if layer.multiscale else layer.data
    plane = np.asarray(data[(0,) * (data.ndim - 3) + (data.shape[-3] // 2,)], np.float64)
    low, high = np.percentile(plane, percentiles)
    return [float(low), float(high if high > low else low + 1)]


def save_screenshot(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    size: tuple[int, int] = (600, 600),
    contour: int = 1,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render ``paths`` in napari (middle z plane, whole field) and save a PNG.

    Needs a display: a desktop, or a virtual one (``xvfb-run``); without a window
    napari renders nothing, so the viewer is shown on that display.

    Returns
    -------
    image : numpy.ndarray
        The screenshot, ``(height, width, 4)`` uint8.
    layers : list of dict
        Per layer: ``name``, ``type``, ``levels`` (pyramid levels read), ``scale``.
    """
    import napari

    viewer = napari.Viewer(show=True)
    try:
        layers = open_layers(viewer, *paths, contour=contour)
        viewer.reset_view()
        image = viewer.screenshot(str(out), canvas_only=True, size=size)
        info = [{"name": layer.name, "type": type(layer).__name__,
                 "levels": len(layer.data) if layer.multiscale else 1,
                 "scale": [float(s) for s in layer.scale]} for layer in layers]
    finally:
        viewer.close()
    return np.asarray(image), info
