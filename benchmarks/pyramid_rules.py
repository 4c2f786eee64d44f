"""Which rule downsamples labels and masks: mode (ties to the largest) against the others.

On real label volumes (``../shared/data/real``) and their membrane masks, two pyramid
levels (y and x halved twice) are made with each rule:

- ``mode``: the window's most frequent value, ties to the largest (chunkseg's rule);
- ``mode_ties_smallest``: the same with ties to the smallest value;
- ``nearest``: the window's first voxel (``a[::2, ::2]``, what plain striding gives).

Scores per level: ``cells_kept`` (share of the level-0 label ids still present),
``voxel_agreement`` (each level voxel painted back over its window, compared with level
0) and, for masks, ``membrane_kept`` (foreground share of the level over that of level 0).

    python benchmarks/pyramid_rules.py --out benchmarks/results/pyramid_rules.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from chunkseg.ops.boundaries import membrane_mask
from chunkseg.ops.pyramid import downsample_mode

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
VOLUMES = {"organoid": "organoid/organoid_t1_labels.tif", "ovule": "ovule_labels.tif",
           "tissue": "tissue_labels.tif"}
F = (1, 2, 2)


def _nearest(a: np.ndarray, f) -> np.ndarray:
    return a[tuple(slice(None, None, k) for k in f)]


def _mode_smallest(a: np.ndarray, f) -> np.ndarray:
    # ties to the smallest value = ties to the largest of the order-reversed values
    top = np.iinfo(a.dtype).max
    return top - downsample_mode(top - a, f)


RULES = {"mode": downsample_mode, "mode_ties_smallest": _mode_smallest, "nearest": _nearest}


def _paint_back(level: np.ndarray, factor, shape) -> np.ndarray:
    up = level
    for axis, k in enumerate(factor):
        up = np.repeat(up, k, axis=axis)
    return up[tuple(slice(0, n) for n in shape)]


def score(a: np.ndarray, *, mask: bool) -> dict:
    out = {}
    ids = np.unique(a[a > 0])
    for name, rule in RULES.items():
        level, factor, rows = a, (1, 1, 1), []
        for k in (1, 2):
            level = rule(level, F)
            factor = tuple(x * y for x, y in zip(factor, F))
            row = {"level": k,
                   "voxel_agreement": round(float(
                       (_paint_back(level, factor, a.shape) == a).mean()), 4)}
            if mask:
                row["membrane_kept"] = round(float(level.mean() / a.mean()), 3)
            else:
                row["cells_kept"] = round(float(np.isin(ids, level).mean()), 4)
            rows.append(row)
        out[name] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    import tifffile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/pyramid_rules.json")
    args = ap.parse_args(argv)
    if not REAL.is_dir():
        print(f"real data folder {REAL} is absent; nothing measured")
        return 0
    results = {}
    for name, rel in VOLUMES.items():
        labels = tifffile.imread(REAL / rel)
        results[name] = {"shape": list(labels.shape),
                         "labels": score(labels, mask=False),
                         "mask": score(membrane_mask(labels, ignore=(0,)), mask=True)}
    print("volume | data | rule | level | cells or membrane kept | voxel agreement")
    for name, r in results.items():
        for data in ("labels", "mask"):
            for rule, rows in r[data].items():
                for row in rows:
                    kept = row.get("cells_kept", row.get("membrane_kept"))
                    print(f"{name} | {data} | {rule} | {row['level']} | {kept} | "
                          f"{row['voxel_agreement']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "pyramid_rules", "factor": list(F),
                                          "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
