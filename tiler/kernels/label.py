"""Label one tile and summarise its labels for stitching (DESIGN.md section 2, step 2-3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

STAT_FIELDS = (
    "count",  # pixels
    "sum_row",  # sum of global row indices
    "sum_col",  # sum of global column indices
    "min_row",
    "min_col",
    "max_row",  # inclusive
    "max_col",  # inclusive
    "first",  # global raster index (row * width + col) of the first pixel
    "border",  # 1 if any pixel lies on the image border
)


@lru_cache(maxsize=4)
def structure(connectivity: int) -> np.ndarray:
    """The 3x3 structuring element of 4- (1) or 8-connectivity (2)."""
    return ndi.generate_binary_structure(2, connectivity)


def label(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of ``mask``, numbered 1..n by their first pixel in raster order.

    Returns
    -------
    labels : (M, N) ndarray of int32
    n : int
    """
    labels, n = ndi.label(mask, structure=structure(connectivity))
    return labels, int(n)


@dataclass(frozen=True)
class TileStats:
    """Partial statistics of the labels 1..n of one tile, in global coordinates.

    Every field is an ``(n,)`` int64 array (``border`` holds 0/1).
    """

    count: np.ndarray
    sum_row: np.ndarray
    sum_col: np.ndarray
    min_row: np.ndarray
    min_col: np.ndarray
    max_row: np.ndarray
    max_col: np.ndarray
    first: np.ndarray
    border: np.ndarray

    @property
    def n(self) -> int:
        return len(self.count)

    @classmethod
    def empty(cls) -> TileStats:
        return cls(*(np.zeros(0, dtype=np.int64) for _ in STAT_FIELDS))


def tile_stats(
    labels: np.ndarray, n: int, origin: tuple[int, int], image_shape: tuple[int, int]
) -> TileStats:
    """Per-label partial statistics of a labelled tile.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels 1..n of the tile, numbered in raster order of their first pixel
        (as :func:`label` returns them); 0 is background.
    n : int
        Number of labels.
    origin : (row, col)
        Global position of the tile's top-left pixel.
    image_shape : (height, width)
        Shape of the whole image (for the raster index and the border flag).
    """
    if n == 0:
        return TileStats.empty()
    height, width = image_shape
    row0, col0 = origin
    tile_width = labels.shape[1]
    flat = labels.ravel()
    where = np.flatnonzero(flat)
    ids = flat[where]

    count = np.bincount(ids, minlength=n + 1)[1:].astype(np.int64)
    rows, cols = np.divmod(where, tile_width)
    # Tile-local sums stay below 2**53, so float64 weights are exact.
    sum_row = np.bincount(ids, weights=rows, minlength=n + 1)[1:].astype(np.int64) + count * row0
    sum_col = np.bincount(ids, weights=cols, minlength=n + 1)[1:].astype(np.int64) + count * col0

    # Labels are numbered by first appearance in raster order: label k first
    # appears where the running maximum of the ids first reaches k.
    running = np.maximum.accumulate(ids)
    new = np.empty(len(ids), dtype=bool)
    new[0] = True
    np.not_equal(running[1:], running[:-1], out=new[1:])
    first_local = where[new]
    first_rows, first_cols = np.divmod(first_local, tile_width)
    first = (first_rows + row0).astype(np.int64) * width + (first_cols + col0)

    boxes = ndi.find_objects(labels, max_label=n)
    min_row = np.fromiter((b[0].start for b in boxes), np.int64, n) + row0
    max_row = np.fromiter((b[0].stop for b in boxes), np.int64, n) + (row0 - 1)
    min_col = np.fromiter((b[1].start for b in boxes), np.int64, n) + col0
    max_col = np.fromiter((b[1].stop for b in boxes), np.int64, n) + (col0 - 1)

    border = (min_row == 0) | (min_col == 0) | (max_row == height - 1) | (max_col == width - 1)
    return TileStats(
        count=count,
        sum_row=sum_row,
        sum_col=sum_col,
        min_row=min_row,
        min_col=min_col,
        max_row=max_row,
        max_col=max_col,
        first=first,
        border=border.astype(np.int64),
    )


@dataclass(frozen=True)
class Edges:
    """The outermost rows and columns of a labelled tile (local label ids)."""

    top: np.ndarray
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> Edges:
        return cls(
            top=labels[0].copy(),
            bottom=labels[-1].copy(),
            left=labels[:, 0].copy(),
            right=labels[:, -1].copy(),
        )
