"""io.chunk_cache: regions assembled from cached decoded chunks equal plain reads."""

from __future__ import annotations

import numpy as np
import zarr

from chunkseg.io.chunk_cache import ChunkCache, read_cached


def test_regions_equal_plain_reads_and_the_budget_holds(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((2, 13, 17, 19), dtype=np.float32)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(1, 5, 6, 7),
                            dtype=data.dtype)
    arr[:] = data
    cache = ChunkCache(budget=10 * 5 * 6 * 7 * 4)  # ten chunks
    for key in [(1, slice(2, 11), slice(0, 17), slice(5, 6)),
                (1, slice(6, 11), slice(0, 17), slice(5, 6)),  # six of its chunks again
                (0, slice(0, 13), slice(3, 9), slice(18, 19)),
                (slice(0, 2), 4, slice(None), slice(6, 14))]:
        np.testing.assert_array_equal(read_cached(arr, key, "a", cache=cache), data[key])
    assert cache.hits > 0 and cache._bytes <= cache.budget
    arr[:] = data + 1  # a rewritten store is read under a new token
    key = (1, slice(2, 11), slice(0, 17), slice(5, 6))
    np.testing.assert_array_equal(read_cached(arr, key, "b", cache=cache), data[key] + 1)


def test_only_the_most_recent_tokens_stay_cached(tmp_path):
    data = np.arange(6 * 4 * 4, dtype=np.float32).reshape(6, 4, 4)
    arr = zarr.create_array(tmp_path / "s.zarr", shape=data.shape, chunks=(1, 2, 4),
                            dtype=data.dtype)
    arr[:] = data
    cache = ChunkCache(tokens=2)
    for t in range(6):  # a series: one token per time point
        np.testing.assert_array_equal(read_cached(arr, (t, slice(None), slice(None)),
                                                  ("run", t), cache=cache), data[t])
        assert len(cache._items) == min(t + 1, 2)
        assert cache._bytes == data[0].nbytes * len(cache._items)  # a time point per token
    misses = cache.misses
    read_cached(arr, (5, slice(0, 2), slice(None)), ("run", 5), cache=cache)
    assert cache.misses == misses  # the latest time point is still there
    read_cached(arr, (0, slice(0, 2), slice(None)), ("run", 0), cache=cache)
    assert cache.misses == misses + 1 and set(cache._items) == {("run", 5), ("run", 0)}
