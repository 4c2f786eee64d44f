"""Intensity-versus-percentile curve (the paper's Fig. 2B) for choosing a contrast range."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["CURVE_PERCENTILES", "plot_percentile_curve"]

#: percentiles at which the curve is drawn: even steps to 99, then a fine log-spaced tail
CURVE_PERCENTILES: np.ndarray = np.unique(np.concatenate([
    np.linspace(0.0, 99.0, 397), 100.0 - np.logspace(0.0, -4.0, 161), [100.0],
]))


def plot_percentile_curve(
    percentiles: Sequence[float],
    intensities: Sequence[float],
    out: str | os.PathLike,
    *,
    low: float | None = None,
    high: float | None = None,
    p_low: float | None = None,
    p_high: float | None = None,
    title: str = "",
    note: str = "",
) -> str:
    """Draw intensity versus percentile and mark the chosen range with dashed lines.

    Two panels: the whole 0–100 range, and the upper tail with a log axis of
    ``100 - percentile`` (ticks labelled 99, 99.9, 99.99, ...), where the paper picked
    its upper bound.  Intensity is on a log axis (symlog when the curve reaches 0, so 0
    is drawn), ticked 1-2-5 per decade.

    Parameters
    ----------
    percentiles, intensities : sequence of float
        The curve (same length), percentiles ascending.
    out : path-like
        PNG file to write.
    low, high : float, optional
        Chosen intensity range (horizontal dashed lines).
    p_low, p_high : float, optional
        Percentiles that gave the range (vertical dashed lines).
    title, note : str
        Figure title; a small text line under it (e.g. method and voxel count).

    Returns
    -------
    str
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    p = np.asarray(percentiles, dtype=float)
    v = np.asarray(intensities, dtype=float)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    for ax in (ax0, ax1):
        _intensity_axis(ax, v, low, high)
    ax0.plot(p, v, color="C0", lw=1.8)
    ax0.set_xlabel("percentile")
    ax0.set_xlim(0, 100)
    ax0.set_title("all voxels")
    _tail_axis(ax1, p, v)
    for pv, ax, xv in ((p_low, ax0, p_low), (p_high, ax0, p_high),
                       (p_high, ax1, None if p_high is None else max(100.0 - p_high, _X_FLOOR))):
        if pv is not None and xv is not None and (ax is ax0 or pv >= 99.0):
            ax.axvline(xv, ls="--", color="C2", lw=1.0)
    if low is not None and high is not None:
        _label_range(ax0, ax1, low, high, p_low, p_high)
    fig.suptitle(title or "pixel intensity versus percentile")
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return str(out)


#: smallest 100 - percentile the tail axis shows (the 100th percentile sits there)
_X_FLOOR = 1e-5


def _intensity_axis(ax, v: np.ndarray, low, high) -> None:
    """Log intensity axis (symlog when the curve reaches 0), 1-2-5 ticks, the range dashed."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    pos = v[v > 0]
    lo_pos = float(pos.min()) if pos.size else 1.0
    hi_pos = float(max(pos.max(), lo_pos * 10)) if pos.size else 10.0
    # 1-2-5 ticks across the positive range, and 0 when the curve reaches it (symlog)
    yticks = [m * 10.0**k for k in range(int(np.floor(np.log10(lo_pos))),
                                         int(np.ceil(np.log10(hi_pos))) + 1)
              for m in (1, 2, 5) if lo_pos / 1.01 <= m * 10.0**k <= hi_pos * 1.01]
    has_zero = bool(np.any(v <= 0))
    if has_zero:
        ax.set_yscale("symlog", linthresh=lo_pos, linscale=0.3)
    else:
        ax.set_yscale("log")
    ax.yaxis.set_major_locator(FixedLocator(([0.0] if has_zero else []) + yticks))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
    ax.set_ylabel("pixel intensity (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    for value in (low, high):
        if value is not None:
            ax.axhline(value, ls="--", color="C3", lw=1.2)


def _tail_axis(ax, p: np.ndarray, v: np.ndarray) -> None:
    """The upper tail (percentiles >= 99) against a log scale of 100 - percentile."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    tail = p >= 99.0
    ax.plot(np.maximum(100.0 - p[tail], _X_FLOOR), v[tail], color="C0", lw=1.8, marker=".",
            ms=3)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_locator(FixedLocator([1.0, 0.1, 0.01, 0.001, 0.0001, _X_FLOOR]))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _pos: "100" if x <= _X_FLOOR * 1.01 else f"{100 - x:.{max(0, round(-np.log10(x)))}f}"
    ))
    ax.set_xlim(1.0, _X_FLOOR)
    ax.set_xlabel("percentile (upper tail, log scale of 100 - percentile)")
    ax.set_title("upper tail")


def _label_range(ax0, ax1, low: float, high: float, p_low, p_high) -> None:
    """The range (and the percentiles that gave it) written on the axes."""
    label = f"range = ({low:.6g}, {high:.6g})"
    if p_low is not None and p_high is not None:
        label += f"  from percentiles ({p_low:g}, {p_high:g})"
    ax0.text(0.02, 0.97, label, transform=ax0.transAxes, va="top", fontsize=10,
             bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    for ax in (ax0, ax1):
        for value, name in ((low, "low"), (high, "high")):
            ax.annotate(f"{name} {value:.6g}", xy=(0.99, value),
                        xycoords=("axes fraction", "data"), ha="right",
                        va="bottom" if name == "high" else "top", color="C3", fontsize=9)
