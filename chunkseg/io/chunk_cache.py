"""Regions of a Zarr array read through a per-process cache of decoded chunks.

A blockwise pass with a halo reads every storage chunk several times: a processing
block of 64 x 256 x 256 with a 13 x 55 x 55 halo, on chunks of 32 x 256 x 256, decodes
36 chunks (75 M voxels) for 4 M voxels it owns.  Neighbouring blocks read the same
chunks, so a bounded least-recently-used cache of decoded chunks, shared by the
threads of one process, decodes most of them once.  Entries are keyed by a token of
the caller (one per run and time point), so a store rewritten between runs is never
served stale, and a long series keeps the chunks of the last few time points only.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np

__all__ = ["CACHE_BYTES", "CACHE_TOKENS", "ChunkCache", "read_cached"]

#: budget of the per-process cache (decoded bytes)
CACHE_BYTES = 384 * 2**20
#: tokens (e.g. time points of a series) whose chunks the per-process cache keeps at once
CACHE_TOKENS = 32


class ChunkCache:
    """Thread-safe least-recently-used store of arrays within a byte and a token budget.

    Entries are grouped by token (a caller reading a series passes one per time point):
    the chunks of at most ``tokens`` tokens are kept, those of the least recently used
    token are dropped first, so a long series of small time points holds a few time
    points' chunks, not one per time point read so far.
    """

    def __init__(self, budget: int = CACHE_BYTES, tokens: int = CACHE_TOKENS) -> None:
        self.budget = int(budget)
        self.tokens = max(1, int(tokens))
        self._items: OrderedDict[Hashable, OrderedDict[Hashable, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, token: Hashable, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of ``key`` under ``token``, or ``load()`` stored there."""
        with self._lock:
            group = self._items.get(token)
            if group is not None and key in group:
                self._items.move_to_end(token)
                group.move_to_end(key)
                self.hits += 1
                return group[key]
        value = load()  # outside the lock: two threads may load one chunk, both correct
        with self._lock:
            self.misses += 1
            if value.nbytes <= self.budget:
                self._store(token, key, value)
        return value

    def _store(self, token: Hashable, key: Hashable, value: np.ndarray) -> None:
        """Add one entry (lock held); drop old tokens and old entries beyond the budgets."""
        group = self._items.setdefault(token, OrderedDict())
        self._items.move_to_end(token)
        if key in group:
            return
        group[key] = value
        self._bytes += value.nbytes
        while len(self._items) > self.tokens:
            self._bytes -= sum(v.nbytes for v in self._items.popitem(last=False)[1].values())
        while self._bytes > self.budget:
            oldest = next(iter(self._items.values()))
            self._bytes -= oldest.popitem(last=False)[1].nbytes
            if not oldest:
                self._items.popitem(last=False)


_CACHE = ChunkCache()


def read_cached(arr, key: Sequence[int | slice], token: Hashable, *,
                cache: ChunkCache | None = None) -> np.ndarray:
    """``arr[key]`` assembled from whole decoded chunks held in ``cache``.

    Parameters
    ----------
    arr : zarr.Array
    key : sequence of int or slice
        One entry per axis; integers drop their axis, slices need step 1.
    token : hashable
        Names the array and its content (a new token for a rewritten store); reading
        a series, one per time point (see :class:`ChunkCache`).
    cache : ChunkCache, optional
        Default: the process's cache.
    """
    cache = _CACHE if cache is None else cache
    region = [slice(k, k + 1) if isinstance(k, (int, np.integer)) else
              slice(*k.indices(n)[:2]) for k, n in zip(key, arr.shape)]
    out = np.empty([s.stop - s.start for s in region], arr.dtype)
    ranges = [range(s.start // c, -(-s.stop // c)) for s, c in zip(region, arr.chunks)]
    for idx in itertools.product(*ranges):
        box = [slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, arr.chunks, arr.shape)]
        chunk = cache.get(token, idx, lambda box=box: np.asarray(arr[tuple(box)]))
        inter = [slice(max(s.start, b.start), min(s.stop, b.stop)) for s, b in zip(region, box)]
        out[tuple(slice(i.start - s.start, i.stop - s.start) for i, s in zip(inter, region))] = \
            chunk[tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(inter, box))]
    return out.reshape([s.stop - s.start for s, k in zip(region, key)
                        if not isinstance(k, (int, np.integer))])
