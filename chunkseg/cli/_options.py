"""Options that many commands share, defined once, and the one way the CLI opens a cluster."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["add_output_options", "add_scheduler_option", "cluster"]


def add_output_options(p: argparse.ArgumentParser, *, chunks: bool = True,
                       resume: bool = True, pyramid: bool = True) -> None:
    """``--chunks Z Y X``, ``--overwrite``, ``--resume`` and ``--no-pyramid`` for a command
    writing a store (``args.pyramid`` is False with ``--no-pyramid``)."""
    if chunks:
        p.add_argument("--chunks", nargs=3, type=int, metavar=("Z", "Y", "X"),
                       help="output chunk shape (default 32 256 256; shards 64 512 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run: compute only the blocks not yet done "
                       "(same input and parameters required)")
    if pyramid:
        p.add_argument("--no-pyramid", dest="pyramid", action="store_false",
                       help="write full resolution only: no multiscale pyramid (by default "
                       "levels halved in y, x (and z when near isotropic) until a plane fits "
                       "512 x 512, for viewers)")


def add_scheduler_option(p: argparse.ArgumentParser, *, cluster: bool = False) -> None:
    """``--scheduler``: dask's threaded scheduler by default, or a LocalCluster if ``cluster``."""
    if cluster:
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="dask scheduler tcp://host:8786 ('threads' for no cluster; default: a "
                       "LocalCluster sized to this machine)")
        p.add_argument("--dashboard-address", metavar="[HOST]:PORT",
                       help="serve the LocalCluster's dask dashboard here, e.g. :8787 (default: "
                       "a free port, printed at the start; a remote --scheduler serves its own)")
    else:
        p.add_argument("--scheduler", default="threads", metavar="ADDRESS",
                       help="'threads' (default), 'sync', or a dask scheduler address "
                       "tcp://host:8786")


@contextlib.contextmanager
def cluster(args: argparse.Namespace, *, layout: str = "default") -> Iterator[Any]:
    """The dask client of a command: ``--scheduler`` (and ``--workers``,
    ``--threads-per-worker`` where the command has them) through
    :func:`chunkseg.engine.cluster.get_client` with the command's ``layout``."""
    from chunkseg.engine.cluster import get_client

    with get_client(args.scheduler, workers=getattr(args, "workers", None),
                    threads_per_worker=getattr(args, "threads_per_worker", None),
                    layout=layout,
                    dashboard_address=getattr(args, "dashboard_address", None)) as client:
        yield client
