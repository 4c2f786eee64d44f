"""``chunkseg info``: what a volume holds, how it is stored, and whether it is complete."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chunkseg.io.labels import label_names
from chunkseg.io.multiscale import levels_info
from chunkseg.io.store import is_zarr, open_array, open_volume

__all__ = ["format_info", "volume_info"]


def _disk_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def volume_info(path: str | os.PathLike) -> dict[str, Any]:
    """Describe a volume without reading its voxels.

    Returns
    -------
    dict
        ``path``, ``format``, ``shape`` (t z y x), ``dtype``, ``chunks``, ``shards``,
        ``voxel_size`` (µm, z y x), ``timepoints``, ``bytes_uncompressed``,
        ``bytes_on_disk`` (all levels), ``compression_ratio`` (level 0's),
        ``complete``, the multiscale ``levels`` of a chunkseg store (path, shape, chunks,
        scale, translation), the ``labels`` images inside it and the chunkseg attributes.
    """
    path = Path(path)
    vol = open_volume(path, require_complete=False)
    info: dict[str, Any] = {
        "path": str(path),
        "shape": list(vol.shape),
        "dtype": str(vol.dtype),
        "voxel_size": list(vol.voxel_size),
        "timepoints": vol.shape[0],
    }
    if is_zarr(path):
        arr = open_array(path)
        info.update(
            format="ome-zarr" if vol.attrs else "zarr",
            chunks=list(arr.chunks),
            shards=list(arr.shards) if arr.shards else None,
            complete=bool(vol.attrs.get("complete", True)),
            attributes=vol.attrs,
            levels=levels_info(path) if vol.attrs else [],
            labels=label_names(path),
        )
    else:  # open_volume opens nothing but Zarr and TIFF
        info.update(format="tiff", chunks=[c[0] for c in vol.data.chunks], shards=None,
                    complete=True, attributes={})
    raw = vol.data.size * vol.dtype.itemsize
    disk = _disk_bytes(path)
    base = _disk_bytes(path / "0") if info.get("levels") else disk
    info.update(
        bytes_uncompressed=int(raw),
        bytes_on_disk=int(disk),
        compression_ratio=round(raw / base, 3) if base else None,
    )
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable multi-line rendering of :func:`volume_info`."""
    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f} MB"

    lines = [
        f"path         {info['path']}  ({info['format']})",
        f"shape        t={info['shape'][0]} z={info['shape'][1]} y={info['shape'][2]} x={info['shape'][3]}",
        f"dtype        {info['dtype']}",
        f"chunks       {info['chunks']}",
        f"shards       {info['shards']}",
        f"voxel size   {info['voxel_size']} µm (z y x)",
        f"time points  {info['timepoints']}",
        f"size         {mb(info['bytes_uncompressed'])} raw, {mb(info['bytes_on_disk'])} on disk"
        + (f", ratio {info['compression_ratio']}" if info["compression_ratio"] else ""),
        f"complete     {'yes' if info['complete'] else 'NO (interrupted or failed run)'}",
    ]
    for lv in info.get("levels") or []:
        shift = f" translation {lv['translation']}" if lv["translation"] else ""
        lines.append(f"level {lv['path']:<6} shape {lv['shape']} chunks {lv['chunks']} "
                     f"scale {lv['scale']}{shift}")
    if info.get("labels"):
        lines.append(f"labels       {', '.join(info['labels'])} (in {info['path']}/labels)")
    for key, value in sorted(info.get("attributes", {}).items()):
        if key not in ("complete",):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
