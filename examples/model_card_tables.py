"""Markdown tables of the model card from ``examples/evaluate_default_model.py`` JSON output.

    python examples/model_card_tables.py training/eval/final.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(sc: dict, floors: dict | None) -> str:
    text = f"{sc['iou']:.3f} / {sc['tolerant_f1']:.3f}"
    if floors and all(sc[k] > f[k] for f in floors.values() for k in ("iou", "tolerant_f1")):
        return f"**{text}**"
    return text


def table(result: dict, models: dict[str, str], volumes: list[str]) -> str:
    """Rows: volumes; columns: the floors, then ``models`` (label -> path key)."""
    head = ["volume (labels)", "raw intensity", "Hessian σ 2", *models]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in volumes:
        v = result["volumes"][name]
        fl = v.get("floors", {})
        row = [f"{name} ({v['labels'].split(' (')[0].split(',')[0]})",
               *(_cell(fl[k], None) if k in fl else "" for k in
                 ("raw_intensity", "hessian_plate_sigma2"))]
        row += [_cell(v["models"][p], fl) if p in v["models"] else "" for p in models.values()]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    result = json.loads(Path(sys.argv[1]).read_text())
    vols = list(result["volumes"])
    models = sorted({m for v in result["volumes"].values() for m in v["models"]})
    print(table(result, {Path(m).parent.parent.name + "/" + Path(m).stem: m for m in models},
                vols))


if __name__ == "__main__":
    main()
