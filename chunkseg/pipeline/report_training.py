"""``chunkseg report-training``: training curves (the paper's Fig. 3E) from a history JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chunkseg.errors import OutputExistsError

__all__ = ["run_report_training"]


def run_report_training(
    history: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    title: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Draw loss / accuracy / IoU per epoch, training vs validation, as a PNG.

    Parameters
    ----------
    history : path-like
        ``history.json`` as ``chunkseg train`` writes it (``{"history": ..., "best_epoch"}``)
        or a bare Keras ``History.history`` dict.
    out : path-like, optional
        PNG to write (default ``training_curves.png`` next to the history).
    title : str
        Figure title (default: the history's folder name).
    overwrite : bool
        Replace an existing PNG.

    Returns
    -------
    dict
        ``png``, ``epochs``, ``best_epoch`` (1-based or None) and the final value of
        every metric.

    Raises
    ------
    InputNotFoundError, FormatError, ParameterError, OutputExistsError
    """
    from chunkseg.plots.evaluation import load_history
    from chunkseg.plots.training import plot_training_curves

    history = Path(history)
    hist, best = load_history(history)
    out = Path(out) if out is not None else history.parent / "training_curves.png"
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; pass --overwrite to replace it")
    plot_training_curves(hist, out, best_epoch=best,
                         title=title or f"training: {history.resolve().parent.name}")
    return {"png": str(out), "epochs": max((len(v) for v in hist.values()), default=0),
            "best_epoch": None if best is None else best + 1,
            "final": {k: v[-1] for k, v in hist.items() if v}}
