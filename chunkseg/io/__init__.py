"""TIFF readers and the OME-Zarr volume store."""
