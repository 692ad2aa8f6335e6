"""A rectangle of pixels: the one window type of tiler (DESIGN.md 6, ``tiling/``).

Rows and columns are half-open ``[start, stop)`` in image pixel coordinates,
row first, as NumPy indexes an ``(rows, cols)`` array. ``Window`` is a frozen
dataclass of four ints rather than rasterio's ``Window``: rasterio's is
``(col_off, row_off, width, height)`` of floats, column first, which every
slice, intersection and halo would round and reorder; and a dataclass is a
plain literal to dask (a tuple is walked, a named tuple becomes a task of its
own), hashable for caches and sets, and small to pickle to a worker. The one
conversion to rasterio's order is :attr:`Window.xywh`, at the I/O edge.

Pure Python: no NumPy, dask, rasterio or zarr.
"""

from __future__ import annotations

from dataclasses import dataclass

Shape = tuple[int, int]
Slices = tuple[slice, slice]


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """Rows ``row_start:row_stop`` and columns ``col_start:col_stop`` of an image.

    Windows order as their ``(row_start, row_stop, col_start, col_stop)``:
    raster order for the tiles of a grid.
    """

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    @classmethod
    def of(cls, rows: tuple[int, int], cols: tuple[int, int]) -> Window:
        """The window of the ``(start, stop)`` pairs ``rows`` and ``cols``."""
        return cls(rows[0], rows[1], cols[0], cols[1])

    @classmethod
    def whole(cls, shape: Shape) -> Window:
        """All of an image of ``shape``."""
        return cls(0, shape[0], 0, shape[1])

    @property
    def rows(self) -> tuple[int, int]:
        return (self.row_start, self.row_stop)

    @property
    def cols(self) -> tuple[int, int]:
        return (self.col_start, self.col_stop)

    @property
    def origin(self) -> tuple[int, int]:
        """``(row, col)`` of the first pixel."""
        return (self.row_start, self.col_start)

    @property
    def height(self) -> int:
        return self.row_stop - self.row_start

    @property
    def width(self) -> int:
        return self.col_stop - self.col_start

    @property
    def shape(self) -> Shape:
        return (self.height, self.width)

    @property
    def size(self) -> int:
        """Pixels in the window (0 when it is empty)."""
        return max(self.height, 0) * max(self.width, 0)

    @property
    def slices(self) -> Slices:
        """The window as the index of an image-sized array."""
        return (slice(self.row_start, self.row_stop), slice(self.col_start, self.col_stop))

    @property
    def xywh(self) -> tuple[int, int, int, int]:
        """``(col_off, row_off, width, height)``: rasterio's ``Window`` arguments."""
        return (self.col_start, self.row_start, self.width, self.height)

    def __str__(self) -> str:
        return f"rows {self.row_start}:{self.row_stop}, cols {self.col_start}:{self.col_stop}"

    def contains(self, other: Window) -> bool:
        """Whether every pixel of ``other`` is in this window."""
        return (
            self.row_start <= other.row_start
            and other.row_stop <= self.row_stop
            and self.col_start <= other.col_start
            and other.col_stop <= self.col_stop
        )

    def intersection(self, other: Window) -> Window:
        """The pixels in both; empty (``stop == start``) at the larger start if none."""
        r0, c0 = max(self.row_start, other.row_start), max(self.col_start, other.col_start)
        return Window(
            r0,
            max(r0, min(self.row_stop, other.row_stop)),
            c0,
            max(c0, min(self.col_stop, other.col_stop)),
        )

    def grow(self, halo: int, shape: Shape) -> Window:
        """The window grown by ``halo`` pixels on each side, clipped to an image of ``shape``.

        Clipping (rather than padding) keeps the image border where the whole
        image has it, so every step's own border rule applies there unchanged.
        """
        return Window(
            max(self.row_start - halo, 0),
            min(self.row_stop + halo, shape[0]),
            max(self.col_start - halo, 0),
            min(self.col_stop + halo, shape[1]),
        )

    def shrink(self, by: int, shape: Shape) -> Window:
        """The window less ``by`` pixels on each side that is not the image's border."""
        return Window(
            self.row_start if self.row_start == 0 else self.row_start + by,
            self.row_stop if self.row_stop == shape[0] else self.row_stop - by,
            self.col_start if self.col_start == 0 else self.col_start + by,
            self.col_stop if self.col_stop == shape[1] else self.col_stop - by,
        )

    def translate(self, rows: int, cols: int) -> Window:
        """The window moved by ``rows`` down and ``cols`` right."""
        return Window(
            self.row_start + rows, self.row_stop + rows, self.col_start + cols, self.col_stop + cols
        )

    def relative_to(self, origin: tuple[int, int]) -> Window:
        """The window in the coordinates of an array whose ``[0, 0]`` is image pixel ``origin``."""
        return self.translate(-origin[0], -origin[1])

    def within(self, outer: Window) -> Slices:
        """The slices of this window in an array that covers ``outer``."""
        return self.relative_to(outer.origin).slices


def expand(window: Window, halo: int, shape: Shape) -> tuple[Window, Slices]:
    """``window`` grown by ``halo`` clipped to the image (:meth:`Window.grow`), and its crop.

    The crop is the slices of ``window`` in an array read over the grown window.
    """
    outer = window.grow(halo, shape)
    return outer, window.within(outer)
