"""Benchmarks of tiler against the whole-image reference and dask-image (see README.md)."""
