"""Evaluation figures (the paper's Fig. 3B-D) and the one-page HTML report.

Every function takes the JSON-able sections of ``report.json`` (lists, ``None`` for
undefined scores), so figures can be redrawn from a saved report alone.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["draw_report", "load_history", "plot_ecdf", "plot_heat_map", "plot_per_timepoint",
           "plot_sweep",
           "write_html"]

_SWEEP = (("iou", "IoU (Jaccard)", "tab:blue"), ("dice", "Dice / F1", "tab:purple"),
          ("accuracy", "accuracy", "tab:green"), ("precision", "precision", "tab:orange"),
          ("recall", "recall", "tab:red"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _a(x: Any) -> np.ndarray:
    return np.array(x, dtype=np.float64)


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _plt().close(fig)
    return out


def _score_axes(ax, title: str) -> None:
    ax.set_xlabel("threshold t (membrane: p ≥ t)")
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center")


def plot_sweep(section: Mapping[str, Any], out: str | os.PathLike, *, title: str = "") -> Path:
    """Scores versus threshold (Fig. 3D) and the boundary-tolerant scores, as a PNG."""
    plt = _plt()
    sw, tol = section["sweep"], section["boundary"]
    th = _a(sw["threshold"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    for key, label, color in _SWEEP:
        ax.plot(th, _a(sw[key]), color=color, label=label)
    for key, ls in (("iou", "--"), ("dice", ":")):
        b = section["best"][key]
        if b["threshold"] is not None:
            ax.axvline(b["threshold"], color="grey", ls=ls, lw=1,
                       label=f"best {key}: {b['value']:.3f} at t = {b['threshold']:.2f}")
    _score_axes(ax, "voxel-exact scores")
    ax = axes[1]
    r = tol["tolerance_voxels"]
    ax.plot(th, _a(tol["precision"]), color="tab:orange", label=f"precision (±{r} voxel)")
    ax.plot(th, _a(tol["recall"]), color="tab:red", label=f"recall (±{r} voxel)")
    ax.plot(th, _a(tol["f1"]), color="black", label=f"F1 (±{r} voxel)")
    ax.plot(th, _a(sw["dice"]), color="tab:purple", ls="--", lw=1, label="F1 (exact)")
    b = tol["best_f1"]
    if b["threshold"] is not None:
        ax.axvline(b["threshold"], color="grey", ls=":", lw=1,
                   label=f"best: {b['value']:.3f} at t = {b['threshold']:.2f}")
    _score_axes(ax, f"boundary-tolerant scores (within {r} voxel)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_ecdf(section: Mapping[str, Any], out: str | os.PathLike, *, title: str = "") -> Path:
    """ECDF of the membrane probability (Fig. 3B): all voxels and split by truth."""
    plt = _plt()
    e = section["ecdf"]
    x = _a(e["x"])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    frac = section.get("membrane_fraction") or 0.0
    for key, label, color in (("all", "all voxels", "black"),
                              ("membrane", f"true membrane ({100 * frac:.1f}%)", "tab:red"),
                              ("background", "true background", "tab:blue")):
        y = _a(e[key])
        if np.all(np.isnan(y)):
            continue
        # the last step: every voxel has p <= 1
        ax.step(np.append(x, 1.0), np.append(y, 1.0), where="post", color=color, label=label)
    ax.set_xlabel("predicted membrane probability p")
    ax.set_ylabel("fraction of voxels with probability < p")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "ECDF of the membrane probability", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_heat_map(section: Mapping[str, Any], out: str | os.PathLike, *, title: str = ""
                  ) -> Path:
    """Probability versus distance to the nearest true membrane voxel (Fig. 3C)."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    h = section["heat_map"]
    counts = _a(h["counts"])
    pe, de = _a(h["prob_edges"]), _a(h["dist_edges_um"])
    step = de[1] - de[0]
    xe = np.append(de, de[-1] + step)  # overflow column drawn one bin wide
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    masked = np.ma.masked_equal(counts, 0)
    vmax = max(counts.max(), 1)
    im = ax.pcolormesh(xe, pe, masked, norm=LogNorm(vmin=1, vmax=vmax), cmap="viridis")
    fig.colorbar(im, ax=ax, label="voxels (log scale)")
    ax.set_title("voxel counts")
    ax2 = axes[1]
    col = counts / np.maximum(counts.sum(0, keepdims=True), 1)
    from matplotlib.colors import PowerNorm

    im2 = ax2.pcolormesh(xe, pe, col, cmap="magma",
                         norm=PowerNorm(0.4, vmin=0, vmax=max(col.max(), 1e-9)))
    fig.colorbar(im2, ax=ax2, label="fraction of the distance column")
    centres = (xe[:-1] + xe[1:]) / 2
    mean = _a(h["mean_probability_per_distance_bin"])
    ax2.plot(centres, mean, color="cyan", marker=".", lw=1, label="mean probability")
    ax2.legend(fontsize=7, loc="upper right")
    ax2.set_title("probability distribution per distance")
    for a in axes:
        a.set_xlabel("distance to nearest true membrane voxel (µm)")
        a.set_ylabel("predicted membrane probability")
        a.axvline(de[-1], color="white", ls=":", lw=1)
        a.text(de[-1] + step / 2, 0.5, f"> {de[-1]:.3g} µm", ha="center", va="center",
               rotation=90, fontsize=7, color="white")
    fig.suptitle(title or "probability vs distance to the true membrane", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_per_timepoint(report: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """Best IoU / F1 and boundary-tolerant F1 per time point."""
    plt = _plt()
    per = report["per_timepoint"]
    t = [s["t"] for s in per]
    r = report["overall"]["boundary"]["tolerance_voxels"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, get, color in (
        ("best IoU", lambda s: s["best"]["iou"]["value"], "tab:blue"),
        ("best F1 (exact)", lambda s: s["best"]["dice"]["value"], "tab:purple"),
        (f"best F1 (±{r} voxel)", lambda s: s["boundary"]["best_f1"]["value"], "black"),
    ):
        ax.plot(t, _a([get(s) for s in per]), marker="o", color=color, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("time point")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("scores per time point", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def load_history(path: str | os.PathLike) -> tuple[dict[str, list[float]], int | None]:
    """Read a training history JSON: ``{"history": {...}, "best_epoch": n}`` (1-based, as
    ``chunkseg train`` writes it) or a bare Keras ``History.history`` dict.

    Returns the history and the 0-based best epoch (``None`` when not recorded).

    Raises
    ------
    InputNotFoundError, FormatError
    """
    from chunkseg.errors import FormatError, InputNotFoundError

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such training history file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: expected a JSON training history; found invalid JSON "
                          f"({exc})") from None
    hist = data.get("history", data) if isinstance(data, dict) else None
    if not isinstance(hist, dict) or not all(isinstance(v, list) for v in hist.values()):
        raise FormatError(f"{path}: expected {{'history': {{metric: [values per epoch]}}}}; "
                          f"found a {type(data).__name__}")
    best = data.get("best_epoch") if "history" in data else None
    return hist, None if best is None else int(best) - 1


def draw_report(report: Mapping[str, Any], out: str | os.PathLike, *,
                history: str | os.PathLike | None = None) -> dict[str, str]:
    """Draw every figure of a report into ``out`` and write ``report.html``."""
    out = Path(out)
    src = Path(report["inputs"]["probability"]["path"]).name
    sec = report["overall"]
    figs = {"sweep": plot_sweep(sec, out / "threshold_sweep.png", title=src),
            "ecdf": plot_ecdf(sec, out / "ecdf.png", title=f"ECDF of membrane probability: {src}"),
            "heat_map": plot_heat_map(sec, out / "heat_map.png",
                                      title=f"probability vs distance to true membrane: {src}")}
    if len(report["per_timepoint"]) > 1:
        figs["per_timepoint"] = plot_per_timepoint(report, out / "per_timepoint.png")
    if history is not None:
        from chunkseg.plots.training import plot_training_curves

        hist, best = load_history(history)
        name = Path(history).resolve().parent.name
        figs["training"] = plot_training_curves(hist, out / "training_curves.png",
                                                best_epoch=best, title=f"training: {name}")
    names = {k: v.name for k, v in figs.items()}
    write_html({**report, "figures": names}, out / "report.html")
    return {**names, "html": "report.html"}


_CAPTIONS = {
    "sweep": "Threshold sweep (cf. paper Fig. 3D). Left: voxel-exact scores; right: precision / "
             "recall / F1 counting a voxel within the tolerance of the other mask as correct.",
    "ecdf": "ECDF of the predicted membrane probability (cf. Fig. 3B), all voxels and split "
            "by the truth.",
    "heat_map": "Probability versus distance to the nearest true membrane voxel (cf. Fig. 3C). "
                "Left: voxel counts; right: each distance column normalised, with its mean.",
    "per_timepoint": "Best scores per time point.",
    "training": "Training curves (cf. Fig. 3E).",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def _table(rows: list[list[Any]], head: list[str] | None = None) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head) if head else ""
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + h + '</tr>' if h else ''}{body}</table>"


def write_html(report: Mapping[str, Any], out: str | os.PathLike) -> Path:
    """One-page HTML: headline numbers, figures (relative paths), parameters, provenance."""
    sec = report["overall"]
    best, b = sec["best"], sec["boundary"]
    a5 = sec["at_0.5"]
    head = [
        ["best IoU", best["iou"]["value"], best["iou"]["threshold"]],
        ["best Dice / F1", best["dice"]["value"], best["dice"]["threshold"]],
        ["best accuracy", best["accuracy"]["value"], best["accuracy"]["threshold"]],
        [f"best F1 within {b['tolerance_voxels']} voxel", b["best_f1"]["value"],
         b["best_f1"]["threshold"]],
        ["IoU / F1 / precision / recall at 0.5",
         " / ".join(_fmt(a5[k]) for k in ("iou", "dice", "precision", "recall")), 0.5],
        ["tolerant precision / recall at 0.5",
         " / ".join(_fmt(b["at_0.5"][k]) for k in ("precision", "recall")), 0.5],
        ["ROC AUC / average precision",
         " / ".join(_fmt(sec.get(k)) for k in ("roc_auc", "average_precision")), None],
    ]
    per = [[s["t"], s["best"]["iou"]["value"], s["best"]["iou"]["threshold"],
            s["best"]["dice"]["value"], s["boundary"]["best_f1"]["value"],
            s["membrane_fraction"]] for s in report["per_timepoint"]]
    figs = "".join(f'<figure><img src="{html.escape(f)}" alt="{html.escape(k)}">'
                   f"<figcaption>{html.escape(_CAPTIONS.get(k, k))}</figcaption></figure>"
                   for k, f in report.get("figures", {}).items() if k != "html")
    inst = ""
    if "instances" in report:
        keys = [k for k, v in report["instances"].items() if isinstance(v, (int, float))]
        inst = "<h2>Cell instances</h2>" + _table([[k, report["instances"][k]] for k in keys])
    prov = html.escape(json.dumps(report["inputs"], indent=1))
    params = _table([[k, json.dumps(v)] for k, v in report["parameters"].items()])
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>chunkseg evaluation: {html.escape(report['inputs']['probability']['path'])}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:auto}}
table{{border-collapse:collapse;margin:6px 0}}td,th{{border:1px solid #ccc;padding:2px 8px}}
img{{max-width:100%}}figure{{margin:8px 0}}pre{{font-size:11px;background:#f6f6f6;
overflow:auto;max-height:300px}}</style></head><body>
<h1>Membrane evaluation</h1>
<p>{html.escape(report['inputs']['probability']['path'])} against
{html.escape(report['inputs']['truth']['path'])} ({html.escape(report['inputs']['truth']['kind'])}),
{sec['voxels']} voxels, {100 * (sec['membrane_fraction'] or 0):.2f}% true membrane.
{html.escape(report['threshold_semantics'])}. chunkseg {report['chunkseg_version']},
{report['created']}, {report['seconds']} s.</p>
{_table(head, ['score', 'value', 'threshold'])}
{figs}
<h2>Per time point</h2>
{_table(per, ['t', 'best IoU', 'at t', 'best F1', f"best F1 ±{b['tolerance_voxels']} voxel",
             'membrane fraction'])}
{inst}
<h2>Parameters</h2>{params}
<h2>Provenance</h2><pre>{prov}</pre>
<p>Every number: <a href="report.json">report.json</a></p></body></html>"""
    out = Path(out)
    out.write_text(page, encoding="utf-8")
    return out
