"""Pure NumPy/SciPy kernels that work on one tile (or on a whole image).

Nothing here imports dask, rasterio or zarr: every function takes arrays and
returns arrays, so the same code serves the whole-image reference and the
tiled engine.
"""
