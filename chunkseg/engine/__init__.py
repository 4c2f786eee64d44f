"""Dask orchestration: cluster set-up, shard-aligned block writes, overlap wrappers."""
