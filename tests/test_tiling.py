"""Property tests of the tiling geometry (tiler.tiling): grid, halos, slicing, intersection."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tiler.tiling import TileGrid, Window, expand, smallest_chunk

sides = st.integers(1, 40)
shapes = st.tuples(sides, sides)
chunks = st.tuples(st.integers(1, 50), st.integers(1, 50))
halos = st.integers(0, 60)


@st.composite
def windows(draw: st.DrawFn, shape: tuple[int, int] | None = None) -> Window:
    """A window inside ``shape`` (may be empty), or anywhere in -20..60 without one."""
    lo, (h, w) = (0, shape) if shape is not None else (-20, (60, 60))
    r0, r1 = sorted(draw(st.tuples(st.integers(lo, h), st.integers(lo, h))))
    c0, c1 = sorted(draw(st.tuples(st.integers(lo, w), st.integers(lo, w))))
    return Window(r0, r1, c0, c1)


def mask(window: Window, shape: tuple[int, int] = (100, 100), at: int = 30) -> np.ndarray:
    """``window`` as a boolean mask of a canvas whose [at, at] is image pixel (0, 0)."""
    canvas = np.zeros(shape, bool)
    canvas[window.translate(at, at).slices] = True
    return canvas


@settings(max_examples=200)
@given(shapes, chunks)
def test_tiles_partition_the_image(shape, chunk):
    grid = TileGrid(shape, chunk)
    cover = np.zeros(shape, np.int64)
    seen = []
    for t, i, j, window in grid:
        assert t == grid.index(i, j) == len(seen)
        assert window == grid.window(i, j) and window.size > 0
        assert window.height <= chunk[0] and window.width <= chunk[1]
        cover[window.slices] += 1
        seen.append(window)
    assert (cover == 1).all()  # every pixel in exactly one tile
    assert len(seen) == len(grid) == grid.grid[0] * grid.grid[1]
    assert sorted(seen) == seen  # windows order as raster order (validate sorts bad blocks so)
    assert grid.stride > max(w.size for w in seen)


@settings(max_examples=200)
@given(shapes, chunks, halos, st.data())
def test_grown_window_is_clipped_and_crops_back_to_the_tile(shape, chunk, halo, data):
    grid = TileGrid(shape, chunk)
    i = data.draw(st.integers(0, grid.grid[0] - 1))
    j = data.draw(st.integers(0, grid.grid[1] - 1))
    core = grid.window(i, j)
    outer = core.grow(halo, shape)
    assert Window.whole(shape).contains(outer) and outer.contains(core)
    unclipped = Window(
        core.row_start - halo, core.row_stop + halo, core.col_start - halo, core.col_stop + halo
    )
    assert outer == unclipped.intersection(Window.whole(shape))  # padded, then cut to the image
    image = np.arange(shape[0] * shape[1]).reshape(shape)
    read = image[outer.slices]
    assert read.shape == outer.shape
    assert (read[core.within(outer)] == image[core.slices]).all()
    assert expand(core, halo, shape) == (outer, core.within(outer))  # slice, then crop: the tile
    # shrinking by the halo gives the tile back where the halo was not cut by the border
    (h, w), u = shape, unclipped
    if all(
        (edge in (0, side)) or 0 < grown < side
        for edge, grown, side in zip(
            core.rows + core.cols, u.rows + u.cols, (h, h, w, w), strict=True
        )
    ):
        assert outer.shrink(halo, shape) == core
    # the neighbours are exactly the other tiles whose cores meet the grown window
    meets = {(a, b) for _, a, b, w in grid if w.intersection(outer).size and (a, b) != (i, j)}
    assert set(grid.neighbours(i, j, halo)) == meets
    assert len(grid.neighbours(i, j, halo)) == len(meets)


@settings(max_examples=300)
@given(windows(), windows())
def test_intersection_is_commutative_and_is_the_masks_and(a, b):
    both = a.intersection(b)
    assert both == b.intersection(a)
    assert (mask(both) == (mask(a) & mask(b))).all()
    assert both.size == int((mask(a) & mask(b)).sum())
    assert both.height >= 0 and both.width >= 0
    if both.size:
        assert a.contains(both) and b.contains(both)
    assert a.intersection(a) == a


@given(windows(), st.integers(-30, 30), st.integers(-30, 30))
def test_translate_and_relative_to_are_inverse(window, dr, dc):
    moved = window.translate(dr, dc)
    assert moved.shape == window.shape
    assert moved.relative_to((dr, dc)) == window
    assert window.within(window) == (slice(0, window.height), slice(0, window.width))


@given(windows())
def test_window_value_type(window):
    assert Window.of(window.rows, window.cols) == window
    assert pickle.loads(pickle.dumps(window)) == window
    assert {window: 1}[Window.of(window.rows, window.cols)] == 1  # hashable, by value
    col, row, width, height = window.xywh
    assert (row, col, height, width) == (*window.origin, *window.shape)
    r0, r1, c0, c1 = window.row_start, window.row_stop, window.col_start, window.col_stop
    assert str(window) == f"rows {r0}:{r1}, cols {c0}:{c1}"


def test_one_pixel_image_and_chunks_larger_than_it():
    grid = TileGrid((1, 1), (7, 3))
    assert list(grid) == [(0, 0, 0, Window(0, 1, 0, 1))]
    assert grid.window(0, 0).grow(5, (1, 1)) == Window(0, 1, 0, 1)
    assert grid.neighbours(0, 0, 5) == []


@given(shapes, st.integers(1, 50))
def test_smallest_chunk_is_the_smallest_that_fits(shape, limit):
    c = smallest_chunk(shape, limit)
    assert len(TileGrid(shape, (c, c))) <= limit
    assert c == 1 or len(TileGrid(shape, (c - 1, c - 1))) > limit
