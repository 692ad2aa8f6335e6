"""Small float rasters on a grid of cells, as Cloud-Optimized GeoTIFFs.

The per-cell outputs (tiler yield's features and yield maps, the synthetic yield
surface) are a few bands over cells of metres, small enough to hold whole: each is
written in one go by :func:`write_cells_cog`, float32 with NaN as nodata, each band
described (its column name) and tagged with its unit, through a temporary name
(:func:`tiler.io.atomic.replacing`). :func:`cells_transform` is the affine of such a
grid, cells of ``k`` pixels over the raster's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from affine import Affine

from tiler.io.atomic import replacing

__all__ = ["cells_transform", "read_cells_cog", "write_cells_cog"]


def cells_transform(transform: Sequence[float], k: int) -> tuple[float, ...]:
    """The affine (its six coefficients, rasterio's order) of cells of ``k x k`` pixels
    whose first cell starts at the raster's top-left pixel (``transform``: the raster's)."""
    a, b, c, d, e, f = tuple(transform)[:6]
    return (a * k, b * k, c, d * k, e * k, f)


def write_cells_cog(
    path: Any,
    bands: Mapping[str, np.ndarray],
    transform: Sequence[float],
    crs_wkt: str,
    *,
    units: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Write ``bands`` (name -> ``(rows, cols)`` array, all one shape) as a float32 COG.

    Band ``i`` is described by its name and tagged ``unit=`` (``units``); ``tags`` go
    on the dataset. Cells without a value are NaN, the file's nodata.
    """
    import rasterio

    names = list(bands)
    if not names:
        raise ValueError("write_cells_cog: no bands")
    stack = np.stack([np.asarray(bands[n], dtype=np.float32) for n in names])
    profile = {
        "driver": "COG", "dtype": "float32", "count": len(names), "height": stack.shape[1],
        "width": stack.shape[2], "crs": rasterio.crs.CRS.from_wkt(crs_wkt),
        "transform": Affine(*tuple(transform)[:6]), "nodata": float("nan"),
        "compress": "deflate", "predictor": 3, "blocksize": 512, "overviews": "auto",
    }  # fmt: skip
    with replacing(path) as partial:
        with rasterio.open(partial, "w", **profile) as out:
            out.write(stack)
            for i, name in enumerate(names, start=1):
                out.set_band_description(i, name)
                if units and name in units:
                    out.update_tags(i, unit=units[name])
            if tags:
                out.update_tags(**tags)
    return path


def read_cells_cog(path: Any) -> tuple[dict[str, np.ndarray], Affine, str]:
    """The bands of a file :func:`write_cells_cog` wrote: name -> array, its affine, CRS."""
    import rasterio

    with rasterio.open(path) as src:
        data = src.read()
        names = [d or f"band_{i + 1}" for i, d in enumerate(src.descriptions)]
        return dict(zip(names, data, strict=True)), src.transform, src.crs.to_wkt()
