"""Which intensity range should ``predict`` use by default?  Measured, not guessed.

For real and synthetic volumes, and for variants that break naive scaling (a few bright
outliers, a camera offset, low dynamic range, float and signed dtypes), every candidate
range is applied with ``scale_to_uint8`` and we record, inside the labelled cells:

* ``gap``: median 8-bit level of membrane voxels minus that of the other cell voxels
  (how many grey levels separate membrane from cytoplasm: a collapsed range gives 0-3);
* ``sat``: fraction of membrane voxels at 255 (clipped away);
* with ``--model``: that model's best membrane IoU / 1-voxel-tolerant F1 (thresholds
  0.02-0.98) on the scaled volume.

Labels: ovule hand-drawn; organoid by the authors' network; renders / synthetic exact.
Writes ``benchmarks/results/normalization.{json,md}``::

    python benchmarks/normalization.py [--model chunkseg/models/default.keras]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

METHODS = {
    "paper (0, 99.99) all voxels": ((0.0, 99.99), False),
    "(1, 99.5) all voxels": ((1.0, 99.5), False),
    "(1, 99.5) non-zero voxels": ((1.0, 99.5), True),
    "(0.5, 99.9) non-zero voxels": ((0.5, 99.9), True),
    "median +- MAD (-3, +8) non-zero": (None, True),
}


def _mad_range(x: np.ndarray) -> tuple[float, float]:
    v = x[x != 0] if np.any(x != 0) else x.ravel()
    med = float(np.median(v))
    s = 1.4826 * float(np.median(np.abs(v - med))) or 1.0
    return med - 3 * s, med + 8 * s


def _range(x, spec):
    from chunkseg.ops.robust_range import robust_range

    pct, nonzero = spec
    return _mad_range(x) if pct is None else robust_range(x, pct, ignore_zero=nonzero)


def cases() -> list[dict]:
    """(name, raw, labels, mask) of every measured volume."""
    from chunkseg.ops.boundaries import membrane_mask
    from default_model_data import real_volumes, synthetic_volumes, tissue_renders

    ov = real_volumes("ovule")[0]
    org = real_volumes("organoid")[0]
    syn = synthetic_volumes(1, start=16)[0]
    tis = tissue_renders()[0]
    rng = np.random.default_rng(0)
    out = [{**ov, "name": "ovule (uint8, real)"},
           {**org, "name": "organoid t1 (uint16, zeros outside)"},
           {**syn, "name": "synthetic 16 (uint16)"}]
    # low dynamic range: membranes ~17 over cytoplasm ~14 in 0-242 (a few bright voxels)
    lab = tis["labels"]
    m = membrane_mask(lab).astype(bool)
    r = tis["raw"].astype(np.float64)
    mem, cyt = np.median(r[m & (lab > 0)]), np.median(r[~m & (lab > 0)])
    low = np.rint(14 + (r - cyt) * 3.0 / max(mem - cyt, 1e-9)).clip(0, 242)
    idx = rng.choice(low.size, low.size // 2000, replace=False)  # 0.05 % bright voxels
    low.flat[idx] = rng.integers(30, 243, idx.size)
    out.append(dict(name="tissue render, low range (17 over 14 in 0-242, uint16)",
                    raw=low.astype(np.uint16), labels=lab, mask=m.astype(np.uint8)))
    hot = ov["raw"].astype(np.uint16) * 4
    hot.flat[rng.choice(hot.size, 300, replace=False)] = 65535
    out.append(dict(name="ovule x 4 + 300 hot voxels (0.06 %, uint16)", raw=hot, labels=ov["labels"],
                    mask=ov["mask"]))
    out.append(dict(name="ovule + offset 1000 (uint16)", raw=ov["raw"].astype(np.uint16) + 1000,
                    labels=ov["labels"], mask=ov["mask"]))
    out.append(dict(name="organoid t1 as float32 x 1e-3",
                    raw=org["raw"].astype(np.float32) * 1e-3, labels=org["labels"],
                    mask=org["mask"]))
    out.append(dict(name="synthetic 16 - 300 as int16 (negative background)",
                    raw=syn["raw"].astype(np.int16) - 300, labels=syn["labels"],
                    mask=syn["mask"]))
    return out


def measure(model_path: str | None) -> list[dict]:
    from chunkseg.ops.normalize import scale_to_uint8

    model = meta = None
    if model_path:
        from chunkseg.model.io import load_model
        from evaluate_default_model import best_scores, predict_whole

        model, meta = load_model(model_path)
    rows = []
    for c in cases():
        m = c["mask"].astype(bool)
        cells = np.asarray(c["labels"]) > 0
        for name, spec in METHODS.items():
            low, high = _range(c["raw"], spec)
            x8 = scale_to_uint8(c["raw"], low, high)
            row = {"volume": c["name"], "method": name, "low": round(low, 4),
                   "high": round(high, 4),
                   "gap": int(np.median(x8[m & cells])) - int(np.median(x8[~m & cells])),
                   "sat": round(float(np.mean(x8[m] == 255)), 4)}
            if model is not None:
                p = predict_whole(model, x8.astype(np.float32) / 255, meta["receptive_field"],
                                  meta["pooling_factor"])
                row.update({k: v for k, v in best_scores(p, c["mask"]).items()
                            if k in ("iou", "tolerant_f1")})
            rows.append(row)
            print(row, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "normalization"))
    args = ap.parse_args()
    rows = measure(args.model)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=1))
    cols = ["volume", "method", "low", "high", "gap", "sat"] + (
        ["iou", "tolerant_f1"] if args.model else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
