"""Pure NumPy/SciPy kernels that work on one tile (or on a whole image).

Nothing here imports dask, rasterio or zarr: every function takes arrays and
returns arrays, so the same code serves the whole-image reference and the
tiled engine.
"""


def warm_up() -> None:
    """Run each compiled kernel once on a tiny tile, so later calls start at full speed."""
    import numpy as np

    from tiler.kernels.filters import gaussian
    from tiler.kernels.indices import excess_green_bands
    from tiler.kernels.label import label, relabel, tile_stats
    from tiler.kernels.threshold import masked_histogram, masked_range

    band = np.zeros((4, 4), dtype=np.uint8)
    values = gaussian(excess_green_bands(band, band, band), 1.0)
    valid = np.ones((4, 4), dtype=bool)
    masked_range(values, valid)
    masked_histogram(values, valid, 0.0, 1.0)
    labels, n = label(valid, 2)
    tile_stats(labels, n, (0, 0), (4, 4))
    relabel(labels, np.zeros(n + 1, dtype=np.uint32))
