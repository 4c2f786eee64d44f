"""The ``chunkseg`` command line: a thin argparse layer over the Python API.

Each command lives in ``chunkseg/cli/<name>.py`` and defines ``register(subparsers)``,
which adds its sub-parser and sets ``func`` to a handler returning an exit code.
Handlers import the pipeline lazily, so ``chunkseg info --help`` never loads TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from chunkseg import __version__
from chunkseg.errors import ChunksegError

__all__ = ["COMMANDS", "TF_LOG_LEVEL", "build_parser", "main"]

#: command modules under chunkseg.cli, in the order ``--help`` lists them
COMMANDS: list[str] = [
    "convert",
    "info",
    "normalize",
    "binarize",
    "synth",
    "crops",
    "train",
    "predict",
    "plan",
    "segment",
    "benchmark",
    "evaluate",
    "report_training",
    "demo",
]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="chunkseg",
        description="Out-of-core 3D U-Net membrane segmentation for light-sheet time series.",
    )
    parser.add_argument("--version", action="version", version=f"chunkseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"chunkseg.cli.{name}").register(sub)
    return parser


#: TensorFlow's C++ log level on the command line: errors only, no start-up banner
#: (oneDNN, CPU features); a value the user set wins
TF_LOG_LEVEL = "2"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chunkseg`` console script; returns the exit status."""
    # before anything can import TensorFlow (it reads this once, at import)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    from chunkseg.engine.memory import reuse_buffers

    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_buffers()
    try:
        return int(args.func(args) or 0)
    except ChunksegError as exc:
        print(f"chunkseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"chunkseg {args.command}: interrupted; the output is not marked complete",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
