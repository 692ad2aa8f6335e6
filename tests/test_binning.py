"""The per-tile statistics are plain NumPy's, bit for bit, on awkward values too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tiler.kernels.binning import (
    bin_edges,
    codes_possible,
    edge_step,
    histogram_codes,
    masked_histogram,
    masked_range,
    outer_edges,
)
from tiler.kernels.threshold import binnable

KINDS = ["normal", "edges", "centres", "grid", "ulps", "zeros", "two", "constant"]


def awkward_values(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    """Values of ``kind``: on and next to bin edges and centres, a grid, a range of few ulps..."""
    scale = rng.choice([1e-9, 1.0, 1e8, 1e300])
    values = rng.normal(size=shape) * scale + rng.choice([0.0, 3.3, -1e5])
    if kind in ("edges", "centres") and binnable(float(values.min()), float(values.max())):
        edges, centers = bin_edges(float(values.min()), float(values.max()))
        ends = edges if kind == "edges" else centers
        near = np.concatenate([ends, np.nextafter(ends, -np.inf), np.nextafter(ends, np.inf)])
        values = rng.choice(near, shape)
    elif kind == "grid":  # an index of 8-bit bands: few distinct values, often on edges
        values = rng.integers(0, 256, shape) / rng.choice([255.0, 64.0, 3.0])
    elif kind == "ulps":  # a range of a few hundred ulps: NumPy's scaled index can miss
        values = 1.0 + rng.integers(0, rng.choice([300, 600, 5000]), shape) * 2.0**-52
    elif kind == "zeros":
        # zeros as the minimum, the maximum, neither
        extremes = [[1.0], [np.inf], [1.0, -1.0]][rng.integers(3)]
        values = rng.choice([-0.0, 0.0, *extremes], shape) * rng.choice([1.0, -1.0])
    elif kind == "two":
        values = rng.choice([values.min(), values.max()], shape)
    elif kind == "constant":
        values[:] = values.flat[0]
    return values


def numpy_bin(x: float, vmin: float, vmax: float) -> int:
    """The bin NumPy's own ``histogram`` puts ``x`` in (-1: none)."""
    counts, _ = np.histogram(np.array([x]), bins=256, range=outer_edges(vmin, vmax))
    found = np.flatnonzero(counts)
    return int(found[0]) if len(found) else -1


def random_core(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[slice, slice]:
    r0, c0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    return slice(r0, rng.integers(r0, shape[0] + 1)), slice(c0, rng.integers(c0, shape[1] + 1))


shapes = st.tuples(st.integers(1, 30), st.integers(1, 50))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from(KINDS), st.sampled_from([0.0, 0.3]))
def test_histogram_and_codes_are_numpys(seed, shape, kind, invalid):
    """Counts are ``numpy.histogram``'s; codes follow ``1 + b + (x > centers[b])`` with NumPy's bin.

    The codes are None exactly when that rule cannot stand for every pixel: a
    valid value out of the range or NaN, NumPy's bin not the one of the edges
    (ranges of a few ulps), or centres not inside their bins.
    """
    rng = np.random.default_rng(seed)
    values = awkward_values(rng, shape, kind)
    valid = rng.random(shape) >= invalid
    valid.flat[0] = True
    values[~valid] = rng.choice([np.nan, np.inf, -np.inf, 1e308], int((~valid).sum()))
    finite = values[valid & np.isfinite(values)]
    if len(finite) == 0:
        return
    vmin, vmax = float(finite.min()), float(finite.max())
    if rng.random() < 0.2:  # a tile holding a value outside the global range, or a NaN
        values[np.unravel_index(rng.integers(values.size), shape)] = rng.choice([np.nan, vmax * 2])
    core = random_core(rng, shape)
    try:
        expected = np.histogram(values[core][valid[core]], bins=256, range=outer_edges(vmin, vmax))
    except ValueError:  # NumPy cannot split this range into 256 bins, nor can we
        with pytest.raises(ValueError):
            histogram_codes(values, valid, core, vmin, vmax)
        return
    counts, codes = histogram_codes(values, valid, core, vmin, vmax)
    np.testing.assert_array_equal(counts, expected[0])
    np.testing.assert_array_equal(masked_histogram(values, valid, vmin, vmax, core), expected[0])

    edges, centers = bin_edges(vmin, vmax)
    rule = np.zeros(shape, dtype=np.int64)
    sound = codes_possible(vmin, vmax)
    distinct, inverse = np.unique(values[valid], return_inverse=True)
    for x, b in zip(distinct, [numpy_bin(x, vmin, vmax) for x in distinct], strict=True):
        sound &= b >= 0 and edges[b] <= x and (x < edges[b + 1] or b == len(centers) - 1)
    bins = np.array([numpy_bin(x, vmin, vmax) for x in distinct])[inverse]
    rule[valid] = 1 + bins + (values[valid] > centers[bins])
    if not sound:
        assert codes is None
        return
    assert codes is not None
    np.testing.assert_array_equal(codes, rule)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from(["normal", "edges", "grid"]))
def test_edges_by_arithmetic_are_numpys(seed, shape, kind):
    """Where :func:`edge_step` gives a step, ``k * step + lo`` are NumPy's edges bit for bit."""
    values = awkward_values(np.random.default_rng(seed), shape, kind)
    assume(binnable(float(values.min()), float(values.max())))
    edges, _ = bin_edges(float(values.min()), float(values.max()))
    step = edge_step(edges)
    assert step is not None
    arithmetic = np.append(np.arange(256) * step + edges[0], edges[-1])
    assert arithmetic.tobytes() == edges.tobytes()


def test_edges_that_are_not_arithmetic_are_refused():
    edges, _ = bin_edges(0.0, 1.0)
    edges[100] = np.nextafter(edges[100], 2.0)
    assert edge_step(edges) is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    shapes,
    st.sampled_from(["normal", "zeros", "constant"]),
    st.sampled_from([0.0, 0.5, 1.0]),
    st.booleans(),
)
def test_masked_range_is_the_first_extreme_in_raster_order(seed, shape, kind, invalid, with_nan):
    """``min``/``max``/count of the valid values; of ``-0.0`` and ``0.0``, the first met."""
    rng = np.random.default_rng(seed)
    values = awkward_values(rng, shape, kind)
    valid = rng.random(shape) >= invalid
    values[~valid] = rng.choice([np.nan, np.inf, -np.inf, -0.0], int((~valid).sum()))
    if with_nan:
        values[np.unravel_index(rng.integers(values.size), shape)] = np.nan
    core = random_core(rng, shape)
    found = values[core][valid[core]]  # raster order
    lo, hi, n = masked_range(values, valid, core)
    assert n == len(found)
    if n == 0:
        expected = (np.inf, -np.inf)
    elif np.isnan(found).any():
        expected = (np.nan, np.nan)
    else:
        expected = (found[np.argmax(found == found.min())], found[np.argmax(found == found.max())])
    assert np.array(expected).tobytes() == np.array([lo, hi]).tobytes()
    assert repr(masked_range(values[core], valid[core])) == repr((lo, hi, n))  # a view too


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_zero_extreme_is_the_first_zero_in_raster_order(sign):
    """Column by column, ``-0.0`` (column 0) would come first; in raster order ``0.0`` does."""
    values = np.array([[1.0, 0.0], [-0.0, 1.0]]) * sign
    lo, hi, _ = masked_range(values, np.ones(values.shape, dtype=bool))
    zero = lo if sign > 0 else hi
    assert zero == 0.0 and np.signbit(zero) == (sign < 0)
