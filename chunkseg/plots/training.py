"""Training curves (the paper's Fig. 3E): loss and accuracy per epoch, train vs validation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["plot_training_curves"]

#: panels drawn when the history has them: (metric key, panel title)
PANELS: tuple[tuple[str, str], ...] = (
    ("loss", "loss (BCE + Dice)"),
    ("accuracy", "accuracy"),
    ("iou", "membrane IoU"),
)


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    out: str | os.PathLike[str],
    *,
    best_epoch: int | None = None,
    title: str = "",
) -> Path:
    """Draw train and validation curves per epoch and save them as a PNG.

    Parameters
    ----------
    history : dict
        Keras ``History.history``: ``{"loss": [...], "val_loss": [...], "accuracy": ...}``.
        Panels are drawn for ``loss``, ``accuracy`` and ``iou`` where present.
    out : path
        PNG file to write.
    best_epoch : int, optional
        0-based epoch of the kept (best) model, marked with a dotted line.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(k, t) for k, t in PANELS if k in history and len(history[k])]
    if not panels:
        from chunkseg.errors import ParameterError

        raise ParameterError(f"history has none of the metrics {[k for k, _ in PANELS]}; "
                             f"found keys {sorted(history)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, panel_title) in zip(axes[0], panels):
        train = list(history[key])
        epochs = range(1, len(train) + 1)
        ax.plot(epochs, train, "-", color="tab:blue", label="training", marker="." if
                len(train) < 30 else None)
        val = list(history.get(f"val_{key}", []))
        if val:
            ax.plot(range(1, len(val) + 1), val, "-", color="tab:orange", label="validation",
                    marker="." if len(val) < 30 else None)
        if best_epoch is not None:
            ax.axvline(best_epoch + 1, color="grey", ls=":", lw=1, label="kept model")
        ax.set_xlabel("epoch")
        ax.set_title(panel_title)
        if key != "loss":
            ax.set_ylim(max(0.0, min(train + val) - 0.05), 1.0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
