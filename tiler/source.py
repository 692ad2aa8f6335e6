"""What the passes need from an input raster: the :class:`RasterSource` protocol.

Its readers live in :mod:`tiler.io.raster` (a GeoTIFF read by path in each
task, an array, a synthetic field); the tasks and graphs below the io layer
know only this protocol.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from tiler.tiling import Window


class RasterSource(Protocol):
    """What the tiled engine needs from an input raster."""

    name: str
    height: int
    width: int
    count: int
    alpha_bands: tuple[int, ...]
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(image, valid)``: ``(len(bands), h, w)`` raw values and the ``(h, w)`` bool mask."""
