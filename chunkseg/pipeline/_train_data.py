"""What ``chunkseg train`` reads: (raw, mask) pairs, their intensity ranges, their voxel size."""

from __future__ import annotations

import json
import os
from typing import Any

from chunkseg.errors import ParameterError
from chunkseg.ops.normalize import DEFAULT_PERCENTILES as PERCENTILES

__all__ = ["common_voxel_size", "computed_range", "names", "normalization_record", "pairs"]


def pairs(raw: Any, mask: Any, what: str) -> list[tuple[Any, Any]]:
    raws = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
    if len(raws) != len(masks) or not raws:
        raise ParameterError(f"{what}: need as many raw volumes as masks; got {len(raws)} raw "
                             f"and {len(masks)} mask")
    return list(zip(raws, masks))


def names(pairs: list[tuple[Any, Any]]) -> list[list[str]]:
    def name(obj: Any) -> str:
        return os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else f"<{type(obj).__name__}>"
    return [[name(r), name(m)] for r, m in pairs]


def normalization_record(sampler: Any, how: str | None) -> dict[str, Any]:
    """How the training raw was scaled to 8 bit, as stored in the model.

    ``how``: None (each raw's stored range), ``"given"`` (``normalization=``) or
    ``"percentiles"`` (computed by :func:`computed_range`).

    ``low``/``high`` are recorded only when every training volume used the same range
    (then ``predict`` may reuse it for input without a stored range); with per-volume
    ranges only the method and percentiles are kept, so ``predict`` computes the same
    percentiles of its input.
    """
    ranges, methods, pcts = [], set(), set()
    for src, rng in zip(sampler.raws, sampler.ranges):
        stored = dict(src.attrs.get("normalization") or {})
        if rng is None and "low" in stored and "high" in stored:
            rng = (float(stored["low"]), float(stored["high"]))
        ranges.append(None if rng is None else [float(rng[0]), float(rng[1])])
        if how == "given":
            stored = {"method": "given"}
        elif how == "percentiles":
            stored = {"method": "percentiles", "percentiles": list(PERCENTILES)}
        methods.add(str(stored.get("method", "range" if rng is not None else "unknown")))
        p = stored.get("percentiles")
        pcts.add(tuple(float(v) for v in p) if p else None)
    record: dict[str, Any] = {
        "input": "scale_to_uint8(raw, low, high) / 255",
        "method": methods.pop() if len(methods) == 1 else sorted(methods),
        "percentiles": list(next(iter(pcts))) if len(pcts) == 1 and None not in pcts else None,
        "ranges": ranges,
    }
    if len({json.dumps(r) for r in ranges}) == 1 and ranges[0] is not None:
        record["low"], record["high"] = ranges[0]
    return record


def common_voxel_size(sampler: Any) -> list[float] | None:
    """Voxel size (µm, z y x) shared by all training volumes; None when they differ."""
    sizes = {tuple(float(v) for v in r.voxel_size) for r in sampler.raws}
    return list(sizes.pop()) if len(sizes) == 1 else None


def computed_range(pairs: list[tuple[Any, Any]], normalization: Any) -> Any:
    """A range for a single non-uint8 raw that has none stored: its (0, 99.99) percentiles
    (``chunkseg normalize``'s default), computed in one streaming pass.  Anything else is
    left to the crop sampler (which explains what is missing)."""
    if normalization is not None or len(pairs) != 1:
        return None
    raw = pairs[0][0]
    if not isinstance(raw, (str, os.PathLike)):
        return None
    import numpy as np

    from chunkseg.engine.stats import percentiles
    from chunkseg.io.store import open_volume

    vol = open_volume(raw)
    norm = vol.attrs.get("normalization") or {}
    if vol.data.dtype == np.uint8 or ("low" in norm and "high" in norm):
        return None
    low, high = percentiles(vol.data, PERCENTILES)["values"]
    return (float(low), float(high))
