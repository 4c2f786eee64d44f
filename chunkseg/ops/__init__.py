"""Pure NumPy/SciPy block functions (no dask, no zarr, no Keras)."""
