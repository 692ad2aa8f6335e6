"""Pure tiling geometry: one window type, the grid, halos, slicing, intersections.

Imports nothing of dask, rasterio, zarr or the rest of tiler (DESIGN.md 6):
kernels may use it; it uses none of them.
"""

from tiler.tiling.grid import TileGrid, smallest_chunk
from tiler.tiling.window import Shape, Slices, Window, expand

__all__ = ["Shape", "Slices", "TileGrid", "Window", "expand", "smallest_chunk"]
