"""Defaults and choices that the command line shows in its help, in a module that imports nothing.

``tiler --help`` and ``tiler run --help`` print them; were they read from the
modules that use them (the API, the raster opener), the help would import
dask, rasterio and Zarr first and take a second instead of a tenth of one.
"""

# Tile size in pixels (also the Zarr chunk size) when none is given: tiler.api.job.
DEFAULT_CHUNK_SIZE = 2048

# How a pixel is told valid (``--mask``; tiler.io.open_raster). GDAL's dataset mask is the
# default: an internal mask if the file has one, else its alpha band, else its nodata value
# ("valid unless every band is nodata"), else every pixel.
MASK_MODES = ("dataset", "nodata", "alpha", "none")

# Pixels an input may declare (``--max-pixels``; tiler.io.raster_limits): tiler is built for
# 1-100 gigapixel orthomosaics; 200 GP leaves twice that headroom, and a header declaring
# more is far likelier a damaged or forged file than a survey (a run over it would take
# hours before failing).
DEFAULT_MAX_PIXELS = 200_000_000_000
