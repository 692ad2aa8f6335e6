"""Density on a grid: objects per hectare of imaged ground in square cells.

Cells are ``k x k`` pixel blocks of the image (``k`` pixels of about 5 m,
fewer when the image is too small for 16 such cells across), so a cell's
imaged area is exact: its valid pixels, counted window by window in the
report's pass (:func:`valid_block`), times one pixel's ground area. An
object belongs to the cell holding its centroid. Cells less than half
imaged (at nodata edges) have no density: a sliver of image would make a
wild value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tiler.georef import pixel_area_m2
from tiler.tiling import Window

CELL_M = 5.0
MIN_CELLS = 16
# Smaller cells, in metres, for images under 16 x 5 m across.
SMALLER_M = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)


@dataclass(frozen=True)
class Cells:
    """Density per cell (objects per imaged hectare, NaN where under half imaged), cells of
    ``k`` pixels, ``metres`` on a side."""

    density: np.ndarray
    k: int
    metres: float


def cell_pixels(shape: tuple[int, int], pixel_m: float) -> int:
    """The cell side in pixels: 5 m, or the largest of ``SMALLER_M`` that gives 16 cells."""
    across = max(shape) * pixel_m
    metres = next((m for m in (CELL_M, *SMALLER_M) if across / m >= MIN_CELLS), SMALLER_M[-1])
    return max(1, round(metres / pixel_m))


def grid_shape(shape: tuple[int, int], k: int) -> tuple[int, int]:
    return math.ceil(shape[0] / k), math.ceil(shape[1] / k)


def valid_block(window: Window, valid: np.ndarray, k: int) -> tuple[int, int, np.ndarray]:
    """The valid pixels of one window per cell: ``(first cell row, first cell col, counts)``.

    A window's edge cells are partial; the caller adds the blocks of all windows.
    """
    rows = np.arange(*window.rows) // k
    cols = np.arange(*window.cols) // k
    row_starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 1))
    col_starts = np.flatnonzero(np.diff(cols, prepend=cols[0] - 1))
    counts = np.add.reduceat(valid.astype(np.int64), row_starts, axis=0)
    return int(rows[0]), int(cols[0]), np.add.reduceat(counts, col_starts, axis=1)


def object_cells(
    centroid_row: Any, centroid_col: Any, k: int, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The cells of ``k x k`` pixels holding objects' centroids: the flat index
    (``row * cols + col``) of each object inside the grid of ``shape`` cells, and which
    objects those are. A centroid's cell is that of the pixel holding it
    (``centroid_row``, ``_col`` are pixel-index positions, a pixel's centre at whole
    numbers): the report's density grid and tiler yield's cells count alike."""
    rows = np.floor((np.asarray(centroid_row) + 0.5) / k).astype(np.int64)
    cols = np.floor((np.asarray(centroid_col) + 0.5) / k).astype(np.int64)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return rows[inside] * shape[1] + cols[inside], inside


def density(
    objects: pd.DataFrame, valid: np.ndarray, k: int, crs_wkt: str, transform, pixel_m: float
) -> Cells:
    """Objects per hectare of each cell's imaged area (NaN where under half imaged).

    ``objects``: the object table (``centroid_row``, ``centroid_col``);
    ``valid``: the merged valid-pixel counts per cell.
    """
    h, w = valid.shape
    at, _ = object_cells(objects["centroid_row"], objects["centroid_col"], k, (h, w))
    counts = np.bincount(at, minlength=h * w).reshape(h, w)
    a, b, c, d, e, f = transform[:6]
    centre_r, centre_c = np.meshgrid((np.arange(h) + 0.5) * k, (np.arange(w) + 0.5) * k)
    y = d * centre_c.T + e * centre_r.T + f
    hectares = valid * pixel_area_m2(crs_wkt, transform, y) / 1e4
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(valid >= 0.5 * k * k, counts / hectares, np.nan)
    return Cells(values, k, k * pixel_m)
