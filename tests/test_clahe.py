"""Tiled CLAHE is ``skimage.exposure.equalize_adapthist``, bit for bit."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.exposure import equalize_adapthist

from tiler.kernels.clahe import (
    _axis_window,
    clahe_reach,
    clahe_tile,
    clahe_tile_range,
    clahe_unscaled,
    clahe_window,
)
from tiler.tiling import Window

CLIP_LIMITS = [0.005, 0.01, 0.05, 1.0]


@st.composite
def images(draw, max_side: int = 120) -> np.ndarray:
    """Float images within [-1, 1]: spread, narrow, few distinct values, or constant."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lo = draw(st.floats(-1.0, 1.0))
    hi = draw(st.floats(lo, 1.0))
    kind = draw(st.sampled_from(["uniform", "levels", "constant"]))
    if kind == "constant":
        return np.full((h, w), lo)
    x = rng.uniform(lo, hi, (h, w))
    if kind == "levels":
        x = rng.choice(np.linspace(lo, hi, draw(st.integers(2, 6))), (h, w))
    return x


kernel_sizes = st.one_of(st.integers(2, 40), st.tuples(st.integers(2, 40), st.integers(2, 40)))


@st.composite
def cuts(draw, size: int) -> list[int]:
    """Tile boundaries along an axis: regular tiles of any size, or irregular ones."""
    if draw(st.booleans()):
        step = draw(st.integers(1, size))
        inner = list(range(step, size, step))
    else:
        inner = sorted(draw(st.sets(st.integers(1, size - 1), max_size=6))) if size > 1 else []
    return [0, *inner, size]


def _tiled(x, kernel_size, clip_limit, row_cuts, col_cuts, halo: bool) -> np.ndarray:
    """Assemble clahe_tile over a tiling, with the exact window or a reach halo."""
    shape = x.shape
    stats = {"kernel_size": kernel_size, "clip_limit": clip_limit}
    stats.update(vmin=float(x.min()), vmax=float(x.max()))
    pairs = [(r, c) for r in pairwise(row_cuts) for c in pairwise(col_cuts)]
    cores = [Window.of(rows, cols) for rows, cols in pairs]
    windows = {core: _window(core, shape, kernel_size, halo) for core in cores}

    def values(window):
        return x[window.slices]

    ranges = [
        clahe_tile_range(clahe_unscaled(values(windows[c]), windows[c], c, shape, **stats))
        for c in cores
    ]
    out_min, out_max = min(r[0] for r in ranges), max(r[1] for r in ranges)
    out = np.full(shape, np.nan)
    for core in cores:
        w = windows[core]
        out[core.slices] = clahe_tile(
            values(w), w, core, shape, **stats, out_min=out_min, out_max=out_max
        )
    return out


def _window(core, shape, kernel_size, halo: bool):
    if not halo:
        return clahe_window(core, shape, kernel_size)
    return core.grow(clahe_reach(kernel_size), shape)


@settings(max_examples=100, deadline=None)
@given(st.data(), images(), kernel_sizes, st.sampled_from(CLIP_LIMITS), st.booleans())
def test_tiled_clahe_is_equalize_adapthist(data, x, kernel_size, clip_limit, halo):
    row_cuts = data.draw(cuts(x.shape[0]))
    col_cuts = data.draw(cuts(x.shape[1]))
    expected = equalize_adapthist(x, kernel_size=kernel_size, clip_limit=clip_limit, nbins=256)
    tiled = _tiled(x, kernel_size, clip_limit, row_cuts, col_cuts, halo)
    np.testing.assert_array_equal(tiled, expected)


@settings(max_examples=25, deadline=None)
@given(images(max_side=24), kernel_sizes, st.sampled_from(CLIP_LIMITS))
def test_one_pixel_tiles(x, kernel_size, clip_limit):
    expected = equalize_adapthist(x, kernel_size=kernel_size, clip_limit=clip_limit, nbins=256)
    rows, cols = list(range(x.shape[0] + 1)), list(range(x.shape[1] + 1))
    np.testing.assert_array_equal(_tiled(x, kernel_size, clip_limit, rows, cols, False), expected)


@pytest.mark.parametrize("k", range(1, 13))
def test_reach_bounds_every_window(k):
    reach = clahe_reach(k)
    for size in range(1, 6 * k + 3):
        for a in range(size):
            w0, w1 = _axis_window((a, a + 1), size, k)
            assert a - w0 <= reach and w1 - (a + 1) <= reach
    assert reach == k + (k + 1) // 2 - 1  # attained: the bound is tight


def test_out_of_range_images_fail_like_scikit_image():
    x = np.array([[0.0, 1.5], [-0.5, 0.25]])
    with pytest.raises(ValueError, match="between -1 and 1"):
        equalize_adapthist(x, kernel_size=2)
    core = Window(0, 2, 0, 2)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        clahe_unscaled(x, core, core, x.shape, kernel_size=2, clip_limit=0.01, vmin=-0.5, vmax=1.5)


@pytest.mark.parametrize("kernel_size", [None, 0, (3,), (2, 2.5)])
def test_kernel_size_is_explicit_and_valid(kernel_size):
    with pytest.raises(ValueError, match="kernel_size"):
        clahe_reach(kernel_size)


def test_window_too_small_is_refused():
    x = np.linspace(0, 1, 100).reshape(10, 10)
    core = Window(4, 6, 4, 6)
    with pytest.raises(ValueError, match="misses pixels"):
        clahe_unscaled(
            x[4:6, 4:6], core, core, x.shape, kernel_size=4, clip_limit=0.01, vmin=0.0, vmax=1.0
        )
