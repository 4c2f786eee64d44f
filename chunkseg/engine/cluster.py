"""Where dask work runs, and what the machine offers it.

:func:`get_client` yields a LocalCluster, a client of any scheduler address, or None
for dask's local schedulers; ``distributed`` is imported only when a cluster is
actually used, so light commands (``convert``, ``info``) and tests on the threaded
scheduler do not pay for it.  The machine facts (:func:`cpu_cores`,
:func:`count_gpus`), the default worker layouts (:func:`model_layout`) and the
activation memory budget of a network call (:func:`memory_budget`) live here too.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any, Literal

from chunkseg.engine.memory import ALLOCATOR_ENV
from chunkseg.errors import ClusterError, ParameterError

__all__ = [
    "CLIENT_CONFIG",
    "LAYOUTS",
    "LOCAL_SCHEDULERS",
    "MEMORY_BUDGET",
    "MEMORY_CEILING",
    "MEMORY_FRACTION",
    "count_gpus",
    "cpu_cores",
    "dashboard_url",
    "backend_env",
    "get_client",
    "is_local_cluster",
    "memory_budget",
    "model_layout",
    "worker_counts",
]

#: scheduler names that run on dask's local schedulers without ``distributed``
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous", "processes")
#: LocalCluster layouts by the kind of work (:func:`get_client`)
LAYOUTS = ("default", "model", "filters")
Layout = Literal["default", "model", "filters"]
#: activation memory per model call where the machine's memory is unknown (remote
#: cluster, GPU) -- the floor of :func:`memory_budget`
MEMORY_BUDGET = 1 << 30
#: share of the machine's physical memory one worker's network call may use by default
MEMORY_FRACTION = 0.25
#: ceiling of the default budget (beyond it the tile covers a default block anyway)
MEMORY_CEILING = 16 << 30
#: dask settings while a chunkseg client is open.  distributed's developer logs (on
#: every connection the last messages sent, with the tasks they carried; the
#: scheduler's transitions and events) keep 1000 entries each by default: tens of MB
#: of task graphs in a long series, in the client and the scheduler, before they stop
#: growing; 100 reach that bound within the first time points.  The history of
#: computations (deprecated in favour of spans) is off: while the scheduler is busy
#: its current computation collects every task group of the run.
CLIENT_CONFIG = {"distributed.admin.low-level-log-length": 100,
                 "distributed.diagnostics.computations.max-history": 0}


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def count_gpus() -> int:
    """NVIDIA GPUs visible to this process (``nvidia-smi -L``; 0 without a driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    n = _nvidia_smi_gpus()
    if visible:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return n


@functools.lru_cache(maxsize=1)
def _nvidia_smi_gpus() -> int:
    """GPUs ``nvidia-smi -L`` lists, asked once per process."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def model_layout(workers: int | None = None,
                 threads_per_worker: int | None = None) -> tuple[int, int, int]:
    """LocalCluster workers, dask threads and backend threads per worker for a network.

    Default: one worker (one per GPU when there are GPUs) with two dask threads, and
    the backend's intra-op pool on the worker's share of the cores.
    """
    workers = workers or max(1, count_gpus())  # one worker per GPU
    backend_threads = max(1, cpu_cores() // workers)
    # two dask threads: one in the model (the per-model lock admits one call), one reading
    # and preparing the next block meanwhile; more would only hold more blocks in memory
    return workers, threads_per_worker or 2, backend_threads


def backend_env(threads: int | None) -> dict[str, str] | None:
    """Worker environment that sizes the network backend's thread pools (None: defaults)."""
    if not threads:
        return None
    return {"TF_NUM_INTRAOP_THREADS": str(int(threads)), "TF_NUM_INTEROP_THREADS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2"}


def is_local_cluster(client: Any) -> bool:
    """Whether ``client`` runs on a LocalCluster of this machine (its memory is ours)."""
    cluster = getattr(client, "cluster", None)
    return cluster is not None and type(cluster).__name__ == "LocalCluster"


def worker_counts(client: Any) -> tuple[int, int]:
    """``(workers, threads)`` of a client; ``(1, cpu_cores())`` for local schedulers."""
    if client is None:
        return 1, cpu_cores()
    info = client.scheduler_info()["workers"]
    return len(info), sum(int(w.get("nthreads", 0)) for w in info.values())


def memory_budget(memory_gib: float | None = None, *, client: Any = None) -> float:
    """Activation memory (bytes) one network call may use in a ``run_predict`` run.

    ``memory_gib`` (``--memory``) when given.  Otherwise a quarter of this machine's
    physical memory (:data:`MEMORY_FRACTION`) shared by the worker processes that run
    the model at once (each admits one call at a time: the workers of a LocalCluster
    ``client``, else this one process), between :data:`MEMORY_BUDGET` (1 GiB) and
    :data:`MEMORY_CEILING` (16 GiB).  Total, not available, memory: the plan (tile,
    hence the resume fingerprint) must not change with the momentary load.  A client
    of a remote cluster or GPUs (device memory is not host memory) get the 1 GiB floor.

    Examples
    --------
    >>> memory_budget(2.0) == 2 * 2**30
    True
    >>> memory_budget() >= 1 << 30
    True
    """
    if memory_gib is not None:
        if not memory_gib > 0:
            raise ParameterError(f"memory_gib must be > 0; got {memory_gib!r}")
        return float(memory_gib) * 2**30
    local = client is None or is_local_cluster(client)
    if not local or count_gpus():
        return float(MEMORY_BUDGET)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return float(MEMORY_BUDGET)
    processes = 1 if client is None else len(client.scheduler_info()["workers"])
    share = total * MEMORY_FRACTION / max(1, int(processes))
    return float(min(MEMORY_CEILING, max(MEMORY_BUDGET, share)))


def _layout(layout: str, workers: int | None,
            threads: int | None) -> tuple[int, int, dict[str, str] | None]:
    """Workers, threads per worker and worker environment of a LocalCluster."""
    if layout not in LAYOUTS:
        raise ParameterError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if layout == "model":
        n_workers, n_threads, backend_threads = model_layout(workers, threads)
        return n_workers, n_threads, backend_env(backend_threads)
    if layout == "filters" and workers is None and threads is None:
        return cpu_cores(), 1, None
    return (*_machine_layout(workers, threads), None)


def _machine_layout(workers: int | None, threads: int | None) -> tuple[int, int]:
    cores = cpu_cores()
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
    layout: Layout = "default",
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
    layout : {"default", "model", "filters"}
        The LocalCluster's shape by the work it runs, unless ``workers`` /
        ``threads_per_worker`` say otherwise: "default" one worker with all cores;
        "model" :func:`model_layout` (a worker per GPU, two dask threads, the backend's
        threads on the worker's share of the cores); "filters" one single-threaded
        worker per core (NumPy/SciPy filters that hold the GIL part of the time).
    dashboard_address : str, optional
        Where the LocalCluster serves its dask dashboard, e.g. ``":8787"`` or
        ``"0.0.0.0:8787"`` (default ``":0"``: any free port, printed to stderr).

    This is the one place commands get their cluster from: the command line opens
    it here and hands the client to the ``run_*`` functions (``client=None`` there:
    dask's current scheduler, threads by default).  While a client is open,
    :data:`CLIENT_CONFIG` bounds distributed's logs (client and LocalCluster).

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
    import dask

    if scheduler in LOCAL_SCHEDULERS:
        with dask.config.set(scheduler=scheduler):
            yield None
        return
    with dask.config.set(CLIENT_CONFIG):
        client, cluster = _connect(scheduler, workers, threads_per_worker, timeout,
                                   memory_limit, worker_env, layout, dashboard_address)
        try:
            if not quiet:
                print(f"chunkseg: dask dashboard at {dashboard_url(client)}", file=sys.stderr)
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _connect(scheduler, workers, threads_per_worker, timeout, memory_limit, worker_env,
             layout, dashboard_address) -> tuple[Any, Any]:
    """``(client, cluster)`` of :func:`get_client` (cluster None for a remote scheduler)."""
    from distributed import Client, LocalCluster

    if scheduler is None:
        import dask

        n_workers, n_threads, layout_env = _layout(layout, workers, threads_per_worker)
        env = {"OMP_NUM_THREADS": "1", **(layout_env or {}), **(worker_env or {})}
        # glibc reads its settings when a process starts: the nanny's ``env`` is set
        # inside the started worker, its pre-spawn environment before the start
        spawn = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **ALLOCATOR_ENV}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn}):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=n_threads,
                processes=True,
                memory_limit=memory_limit,
                dashboard_address=dashboard_address or ":0",
                env=env,
            )
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=f"{timeout}s"), None
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"could not reach the dask scheduler at {scheduler!r} within {timeout} s "
            f"({exc}); expected an address like tcp://host:8786 of a running "
            "'dask scheduler'"
        ) from exc
