"""Where dask work runs: a LocalCluster by default, any scheduler address, or plain threads.

``distributed`` is imported only when a cluster is actually used, so light commands
(``convert``, ``info``) and tests on the threaded scheduler do not pay for it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from chunkseg.engine.memory import MMAP_THRESHOLD
from chunkseg.errors import ClusterError, ParameterError

__all__ = ["LOCAL_SCHEDULERS", "dashboard_url", "get_client"]

#: scheduler names that run on dask's local schedulers without ``distributed``
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous", "processes")


def _machine_layout(workers: int | None, threads: int | None) -> tuple[int, int]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers is None and threads is None:
        return 1, cores
    if workers is None:
        return max(1, cores // threads), threads
    if threads is None:
        return workers, max(1, cores // workers)
    return workers, threads


def dashboard_url(client: Any) -> str | None:
    """The dask dashboard address of a client, or None."""
    try:
        return client.dashboard_link
    except Exception:  # noqa: BLE001 - some clusters have no dashboard
        return None


@contextlib.contextmanager
def get_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    timeout: float = 10.0,
    memory_limit: str | None = "auto",
    quiet: bool = False,
    worker_env: dict[str, str] | None = None,
    dashboard_address: str | None = None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` (or ``None`` for dask's local schedulers).

    Parameters
    ----------
    scheduler : str, optional
        ``None``: start a ``LocalCluster`` sized to this machine (one worker process
        with all cores unless ``workers`` / ``threads_per_worker`` say otherwise),
        its dashboard printed to stderr.  ``"threads"`` / ``"sync"`` /
        ``"processes"``: no cluster, dask's local scheduler of that name (yields
        ``None``).  ``"tcp://host:8786"`` (or any address): connect to an existing
        cluster (dask-jobqueue on SLURM, Kubernetes, ``dask scheduler`` + ``dask worker``).
    workers, threads_per_worker : int, optional
        LocalCluster layout.
    timeout : float
        Seconds to wait for a remote scheduler before raising.
    memory_limit : str, optional
        Per-worker memory limit of the LocalCluster.
    quiet : bool
        Do not print the dashboard address.
    worker_env : dict, optional
        Environment variables for LocalCluster worker processes (e.g. thread counts
        for TensorFlow).
    dashboard_address : str, optional
        Where the LocalCluster serves its dask dashboard, e.g. ``":8787"`` or
        ``"0.0.0.0:8787"`` (default ``":0"``: any free port, printed to stderr).

    Raises
    ------
    ClusterError
        The scheduler address could not be reached within ``timeout``.
    ParameterError
        Non-positive worker or thread counts.
    """
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if value is not None and value < 1:
            raise ParameterError(f"{name} must be >= 1; got {value}")
    if scheduler in LOCAL_SCHEDULERS:
        import dask

        with dask.config.set(scheduler=scheduler):
            yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is None:
        n_workers, n_threads = _machine_layout(workers, threads_per_worker)
        # fixed mmap threshold in workers too (see chunkseg.engine.memory)
        env = {"OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
               **(worker_env or {})}
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=n_threads,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=dashboard_address or ":0",
            env=env,
        )
        client = Client(cluster)
    else:
        cluster = None
        try:
            client = Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"could not reach the dask scheduler at {scheduler!r} within {timeout} s "
                f"({exc}); expected an address like tcp://host:8786 of a running "
                "'dask scheduler'"
            ) from exc
    try:
        if not quiet:
            print(f"chunkseg: dask dashboard at {dashboard_url(client)}", file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
