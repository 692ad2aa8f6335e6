"""The tiles of an image: a grid of ``chunks``-sized windows (DESIGN.md 6, ``tiling/``).

Tiles are numbered in row-major order; they are also the output Zarr chunks.
Pure Python: no NumPy, dask, rasterio or zarr.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from tiler.tiling.window import Shape, Window


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``chunks`` over an image of ``shape``; the last row/column may be thinner."""

    shape: Shape
    chunks: Shape

    def __post_init__(self) -> None:
        if min(self.chunks) < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.chunks}")

    @property
    def grid(self) -> Shape:
        """Tile rows and columns."""
        return (
            math.ceil(self.shape[0] / self.chunks[0]),
            math.ceil(self.shape[1] / self.chunks[1]),
        )

    def __len__(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def stride(self) -> int:
        """Provisional-id stride: more than the pixels of any tile."""
        return self.chunks[0] * self.chunks[1] + 1

    def index(self, i: int, j: int) -> int:
        """The number of tile ``(i, j)``."""
        return i * self.grid[1] + j

    def in_strips(self, width: int) -> list[int]:
        """Tile numbers in vertical strips ``width`` pixels (at least a tile) wide, each row-major.

        Run in this order, a tile's neighbours above and to the left ran a
        strip's width of tiles before it, not an image's: the decoded
        blocks they share (:mod:`tiler.io.blocks`) are still at hand.
        """
        rows, cols = self.grid
        step = max(1, width // self.chunks[1])
        return [
            self.index(i, j)
            for first in range(0, cols, step)
            for i in range(rows)
            for j in range(first, min(first + step, cols))
        ]

    def window(self, i: int, j: int) -> Window:
        """Tile ``(i, j)``'s pixels (its core)."""
        (h, w), (ch, cw) = self.shape, self.chunks
        return Window(i * ch, min((i + 1) * ch, h), j * cw, min((j + 1) * cw, w))

    def __iter__(self) -> Iterator[tuple[int, int, int, Window]]:
        """``(tile_index, i, j, window)`` in row-major order."""
        rows, cols = self.grid
        for i in range(rows):
            for j in range(cols):
                yield self.index(i, j), i, j, self.window(i, j)

    def neighbours(self, i: int, j: int, halo: int) -> list[tuple[int, int]]:
        """Tiles other than ``(i, j)`` whose cores meet its window grown by ``halo``.

        The 8 neighbours (fewer at the image border) when ``halo`` is at most
        the chunk size; more rings of tiles beyond that.
        """
        (rows, cols), (ch, cw) = self.grid, self.chunks
        reach_rows, reach_cols = math.ceil(halo / ch), math.ceil(halo / cw)
        return [
            (a, b)
            for a in range(max(i - reach_rows, 0), min(i + reach_rows + 1, rows))
            for b in range(max(j - reach_cols, 0), min(j + reach_cols + 1, cols))
            if (a, b) != (i, j)
        ]


def smallest_chunk(shape: Shape, limit: int) -> int:
    """The smallest square chunk size that tiles ``shape`` in at most ``limit`` tiles."""
    low, high = 1, max(shape)  # one tile at the high end
    while low < high:
        mid = (low + high) // 2
        if len(TileGrid(shape, (mid, mid))) <= limit:
            high = mid
        else:
            low = mid + 1
    return low
