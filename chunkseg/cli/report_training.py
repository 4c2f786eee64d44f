"""``chunkseg report-training``."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report-training`` sub-command."""
    p = sub.add_parser(
        "report-training",
        help="draw training curves (loss, accuracy, IoU per epoch) from a history JSON",
        description="Training and validation curves per epoch (the paper's Fig. 3E) from the "
        "history.json that chunkseg train writes (or a bare Keras History.history dict).",
    )
    p.add_argument("history", metavar="HISTORY.json", help="training history JSON")
    p.add_argument("--out", help="PNG to write (default training_curves.png next to HISTORY)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from chunkseg.pipeline.report_training import run_report_training

    summary = run_report_training(args.history, out=args.out, title=args.title,
                                  overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0
