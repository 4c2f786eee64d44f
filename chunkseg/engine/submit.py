"""Bounded submission: a sliding window of in-flight tasks, graphs built group by group.

A long series is never one graph.  The caller hands over an *iterator* of groups
(typically one time point each: a list of ``(tag, dask.delayed)``), and
:func:`run_windowed` builds and submits them lazily so that at most about ``window``
tasks are in flight: client memory, scheduler state and the time to the first
finished task do not grow with the number of groups.  Each group is submitted as one
graph, so input chunks shared by neighbouring blocks of a time point are read once.

* ``distributed``: groups go to ``client.compute`` while fewer than ``window`` tasks
  are pending; results are gathered by ``as_completed`` as they finish and their
  futures released, and the next group is submitted (a sliding window).
* dask's local schedulers (threads, sync): groups are batched up to ``window`` tasks
  and computed batch after batch; a scheduler callback reports every task as it
  finishes, so a crash loses only unfinished tasks.  When a batch fails, its
  unfinished tasks are retried one by one, so healthy tasks still land.

``on_done(tag, result)`` is called in the calling process for every finished task;
failures (after ``retries``) are returned.

Tasks carry readable names: with ``name`` (a tag's key prefix, e.g.
``"histogram-t0042"``) every key of a submitted graph becomes
``<prefix>-<layer>-<block>-<run>`` (:func:`readable_graph`), so the dashboard shows
command and time point, and the scheduler files the tasks of a phase under one task
group instead of a few per time point.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dask
from dask.delayed import Delayed
from dask.task_spec import Alias

__all__ = ["compute_windowed", "default_window", "readable_graph", "run_windowed"]

Group = list[tuple[Any, Any]]


def default_window(client: Any = None) -> int:
    """Tasks in flight: twice the cluster's threads (local: dask's thread count).

    Enough to keep every thread busy while finished results are collected, few
    enough that the graph held by the scheduler stays small.
    """
    if client is not None:
        threads = sum(client.nthreads().values()) or 1
    else:
        threads = dask.config.get("num_workers", None) or os.cpu_count() or 1
    return max(4, 2 * int(threads))


def _default_client() -> Any:
    """The distributed client dask would use for ``compute`` now, else None.

    A ``distributed.Client`` made default (``Client()`` without ``set_as_default=False``)
    takes over ``dask.compute`` unless a local scheduler is configured; it then gets the
    sliding window too, and the local schedulers' callbacks (which it would not run)
    are not relied on.
    """
    owner = getattr(dask.base.get_scheduler(), "__self__", None)
    return owner if type(owner).__name__ == "Client" and hasattr(owner, "compute") else None


def readable_graph(dsk: Mapping, prefix: str, token: str) -> tuple[dict, dict]:
    """A graph under readable string keys: ``<prefix>-<layer>-<block index>-<token>``.

    ``<layer>`` is dask's name of the task's layer without its hash (e.g.
    ``predict_owned_stack``), ``<block index>`` the key's chunk index, comma-separated
    (overlap keys have float indices; none for a delayed object's key).  The scheduler
    groups string keys by their leading words, so all keys of one ``prefix`` command
    (``predict-t0042-...``) share one task group whatever the series length.  Aliases
    (left by blockwise fusion) are resolved: one task fewer per block.

    Returns
    -------
    graph : dict
        ``{new key: task}``, without the aliases.
    keys : dict
        Old key -> new key, for every key of ``dsk`` (an alias -> its target's).
    """
    from dask._task_spec import convert_legacy_graph
    from dask.utils import key_split

    dsk = convert_legacy_graph(dict(dsk))
    labels: dict[Any, str] = {}
    taken: set[str] = set()

    def label(name: Any) -> str:  # one per layer; layers of one dask name are numbered
        if name not in labels:
            base = re.sub(r"\W+", "_", key_split(name)).strip("_") or "task"
            labels[name] = next(lab for n in itertools.count()
                                if (lab := f"{base}{n or ''}") not in taken)
            taken.add(labels[name])
        return labels[name]

    def rename(key: Any) -> str:
        while isinstance(dsk[key], Alias):
            key = dsk[key].target
        if not isinstance(key, tuple):
            return f"{prefix}-{label(key)}-{token}"
        return f"{prefix}-{label(key[0])}-{','.join(map(str, key[1:]))}-{token}"

    subs = {k: rename(k) for k in dsk}
    graph = {subs[k]: node.substitute(subs, key=subs[k]) for k, node in dsk.items()
             if not isinstance(node, Alias)}
    return graph, subs


def _readable(obj: Any, prefix: str, token: str) -> Delayed:
    """A delayed object (or any dask collection of one key) under :func:`readable_graph`."""
    key = obj.__dask_keys__()
    key = key[0] if isinstance(key, list) else key
    graph, subs = readable_graph(obj.__dask_optimize__(obj.__dask_graph__(), [key]),
                                 prefix, token)
    return Delayed(subs[key], graph)


def run_windowed(
    groups: Iterable[Group],
    on_done: Callable[[Any, Any], None],
    *,
    client: Any = None,
    window: int | None = None,
    retries: int = 2,
    strict: bool = False,
    name: Callable[[Any], str] | None = None,
) -> tuple[list[Any], str | None]:
    """Compute the tasks of ``groups`` with at most about ``window`` in flight.

    Parameters
    ----------
    groups : iterable of lists of (tag, dask.delayed)
        Consumed lazily; each list is submitted as one graph.
    on_done : callable
        ``on_done(tag, result)`` for every finished task, as soon as it finishes.
    client : distributed.Client, optional
        ``None``: dask's current local scheduler.
    window : int, optional
        Tasks in flight (default :func:`default_window`); a group larger than the
        window is still submitted whole.
    retries : int
        Further tries of a failed task.
    strict : bool
        Raise a task's exception at once instead of collecting failures.
    name : callable, optional
        ``name(tag)``: the key prefix of the task's graph (:func:`readable_graph`), e.g.
        ``"histogram-t0042"``; None: the keys as given.  Each object's graph is
        renamed on its own (tasks shared by two objects of a group would run twice).

    Returns
    -------
    failed, error : list of tags, str or None
        Tags of the tasks that still failed, and the last error seen.
    """
    client = client if client is not None else _default_client()
    window = window or default_window(client)
    runner = _distributed if client is not None else _local
    if name is not None:  # run token and a serial: objects of one prefix never share keys
        token, serial = uuid.uuid4().hex[:8], itertools.count()
        groups = ([(tag, _readable(d, name(tag), f"{token}-{next(serial)}")) for tag, d in group]
                  for group in groups)
    return runner(iter(groups), on_done, client, window, retries, strict)


def _distributed(groups, on_done, client, window, retries, strict):
    from distributed import as_completed

    pending: dict[str, Any] = {}
    # results are gathered in the background as tasks finish: no round trip per task
    queue = as_completed(with_results=True, raise_errors=False)
    failed, error = [], None

    def collect_one():
        nonlocal error
        fut, result = next(queue)
        tag = pending.pop(fut.key)
        if fut.status == "error":  # result: (type, exception, traceback)
            if strict:
                raise result[1].with_traceback(result[2])
            failed.append(tag)
            error = repr(result[1])
        else:
            on_done(tag, result)
        fut.release()

    for group in groups:
        if not group:
            continue
        while len(pending) >= window:
            collect_one()
        futures = client.compute([d for _, d in group], retries=retries)
        for fut, (tag, _) in zip(futures, group):
            pending[fut.key] = tag
            queue.add(fut)
    while pending:
        collect_one()
    return failed, error


def _local(groups, on_done, client, window, retries, strict):
    failed, error, batch = [], None, []
    for group in groups:
        batch.extend(group)
        if len(batch) >= window:
            error = _local_batch(batch, on_done, retries, failed, strict) or error
            batch = []
    if batch:
        error = _local_batch(batch, on_done, retries, failed, strict) or error
    return failed, error


def _local_batch(batch: Group, on_done, retries: int, failed: list, strict: bool) -> str | None:
    from dask.callbacks import Callback

    tags = {d.key: tag for tag, d in batch}
    finished = set()

    def posttask(key, result, dsk, state, worker_id):
        if key in tags and key not in finished:
            finished.add(key)
            on_done(tags[key], result)

    try:
        with Callback(posttask=posttask):
            results = dask.compute(*(d for _, d in batch))
    except Exception as exc:  # noqa: BLE001 - isolate the failing tasks below
        if strict:
            raise
        error = repr(exc)
    else:
        for (tag, d), result in zip(batch, results):  # any the callback did not see
            if d.key not in finished:
                on_done(tag, result)
        return None
    for tag, d in batch:
        if d.key in finished:
            continue
        for _attempt in range(retries):
            try:
                (result,) = dask.compute(d)
            except Exception as exc:  # noqa: BLE001 - reported with the failed tags
                error = repr(exc)
                continue
            on_done(tag, result)
            break
        else:
            failed.append(tag)
    return error


def compute_windowed(
    objs: Iterable[Any], *, client: Any = None, window: int | None = None,
    name: Callable[[int], str] | None = None,
) -> list[Any]:
    """Compute delayed objects in windows, results in input order.

    For many small results (per-time-point statistics): the objects are built and
    submitted lazily, at most ``window`` at a time; a task's exception is raised.
    ``name(i)`` gives object ``i``'s key prefix (see :func:`run_windowed`).
    """
    results: dict[int, Any] = {}

    def store(tag, result):
        results[tag] = result

    run_windowed(([(i, obj)] for i, obj in enumerate(objs)), store, client=client,
                 window=window, retries=0, strict=True, name=name)
    return [results[i] for i in range(len(results))]
