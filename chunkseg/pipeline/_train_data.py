"""What ``chunkseg train`` reads: (raw, mask) pairs, their intensity ranges, their voxel size."""

from __future__ import annotations

import json
import os
from typing import Any

from chunkseg.errors import ParameterError
from chunkseg.ops.robust_range import ROBUST_PERCENTILES

__all__ = ["common_voxel_size", "computed_ranges", "names", "normalization_record", "pairs"]


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
    ``"percentiles"`` (some ranges computed by :func:`computed_ranges`).

    ``low``/``high`` are recorded only when every training volume used the same stored
    or given range (then ``predict`` reuses it for input without a stored range); with
    computed or per-volume ranges only the method and percentiles are kept, so
    ``predict`` computes the same percentiles of its input.
    """
    ranges, methods, pcts = [], set(), set()
    for src, rng in zip(sampler.raws, sampler.ranges):
        stored = dict(src.attrs.get("normalization") or {})
        if rng is None and "low" in stored and "high" in stored:
            rng = (float(stored["low"]), float(stored["high"]))
        ranges.append(None if rng is None else [float(rng[0]), float(rng[1])])
        if how == "given":
            stored = {"method": "given"}
        elif how == "percentiles" and "low" not in stored:
            stored = {"method": "robust_percentiles", "percentiles": list(ROBUST_PERCENTILES)}
        methods.add(str(stored.get("method", "range" if rng is not None else "unknown")))
        p = stored.get("percentiles")
        pcts.add(tuple(float(v) for v in p) if p else None)
    record: dict[str, Any] = {
        "input": "scale_to_uint8(raw, low, high) / 255",
        "method": methods.pop() if len(methods) == 1 else sorted(methods),
        "percentiles": list(next(iter(pcts))) if len(pcts) == 1 and None not in pcts else None,
        "ranges": ranges,
    }
    if record["method"] == "robust_percentiles":
        record["ignore_zero"] = True
    elif len({json.dumps(r) for r in ranges}) == 1 and ranges[0] is not None:
        record["low"], record["high"] = ranges[0]
    return record


def common_voxel_size(sampler: Any) -> list[float] | None:
    """Voxel size (µm, z y x) shared by all training volumes; None when they differ."""
    sizes = {tuple(float(v) for v in r.voxel_size) for r in sampler.raws}
    return list(sizes.pop()) if len(sizes) == 1 else None


def computed_ranges(pairs: list[tuple[Any, Any]],
                    normalization: Any) -> list[tuple[float, float] | None] | None:
    """Per pair, the range ``predict`` would compute for its raw: exact (1, 99.5)
    percentiles of the non-zero voxels, one streaming pass per raw file that has no
    stored range and is not ``chunkseg normalize`` output (None for the others).

    None when ``normalization`` is given or no raw needs a computed range; raws given
    as arrays are left to the crop sampler (which explains what is missing).
    """
    if normalization is not None:
        return None
    from chunkseg.io.store import open_volume
    from chunkseg.pipeline._probability import input_range

    ranges: list[tuple[float, float] | None] = []
    for raw, _ in pairs:
        found = input_range(open_volume(raw), None, None) if isinstance(
            raw, (str, os.PathLike)) else None
        computed = found is not None and found["source"] == "computed"
        ranges.append((found["low"], found["high"]) if computed else None)
    return ranges if any(r is not None for r in ranges) else None
