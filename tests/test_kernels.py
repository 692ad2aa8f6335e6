"""Kernels agree with the library calls they stand for."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.color import rgb2gray
from skimage.filters import threshold_multiotsu, threshold_otsu
from skimage.measure import label as sk_label
from skimage.measure import regionprops_table
from skimage.morphology import disk

from tiler.config import Index
from tiler.kernels.binning import (
    bin_edges,
    code_foreground,
    histogram,
    histogram_codes,
    masked_histogram,
    masked_range,
)
from tiler.kernels.filters import gaussian
from tiler.kernels.indices import (
    excess_green,
    excess_green_bands,
    excess_green_red,
    gray,
    hsv_channel,
)
from tiler.kernels.label import label, relabel, tile_stats
from tiler.kernels.morphology import dilation, erosion
from tiler.kernels.threshold import (
    binnable,
    foreground,
    interval_histogram,
    multiotsu_from_histogram,
    narrow,
    otsu_from_histogram,
    percentile_from_ranks,
    percentile_ranks,
    threshold_index,
)
from tiler.reference import dtype_maximum, reference_index


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40))
def test_gray_is_rgb2gray_up_to_rounding(seed, h, w):
    image = np.random.default_rng(seed).integers(0, 65536, (3, h, w)).astype(np.float64)
    np.testing.assert_allclose(gray(image), rgb2gray(np.moveaxis(image, 0, -1)), rtol=1e-15)


def test_excess_green_is_zero_where_all_bands_are_zero():
    image = np.zeros((3, 2, 2))
    image[:, 0, 0] = (10, 30, 10)
    out = excess_green(image)
    assert out[0, 0] == (2 * 0.6 - 0.2) - 0.2
    assert (out.ravel()[1:] == 0).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5000), st.integers(1, 8))
def test_summed_tile_histograms_give_scikit_images_otsu(seed, n, parts):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n) * rng.choice([1e-3, 1.0, 1e6]) + rng.choice([0.0, 7.5])
    if rng.random() < 0.1:
        values[:] = values[0]  # a constant image
    vmin, vmax = values.min(), values.max()
    counts = sum(histogram(chunk, vmin, vmax) for chunk in np.array_split(values, parts))
    assert counts.sum() == n
    assert otsu_from_histogram(counts, vmin, vmax) == threshold_otsu(values)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 2000),
    st.one_of(st.sampled_from([0.0, 100.0, 50.0, 99.9999]), st.floats(0, 100)),
    st.booleans(),
)
def test_percentile_from_its_two_order_statistics_is_numpys(seed, n, q, ties):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n) * rng.choice([1e-9, 1.0, 1e12])
    if ties:
        values = np.round(values, 0 if rng.random() < 0.5 else 1)
    lower, upper, gamma = percentile_ranks(n, q)
    ordered = np.sort(values)
    assert 0 <= lower <= upper <= n - 1
    assert percentile_from_ranks(ordered[lower], ordered[upper], gamma) == np.percentile(values, q)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.tuples(st.integers(1, 45), st.integers(1, 45)),
    st.integers(0, 10**6),
)
def test_narrowing_keeps_the_rank_inside(seed, shape, pick):
    """The narrowed interval holds the order statistic, with the right count below it."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=shape) * 10, int(rng.integers(0, 3)))
    valid = rng.random(shape) > 0.2
    valid.flat[0] = True
    ordered = np.sort(values[valid])
    rank = pick % len(ordered)
    lo, hi, below = ordered[0], ordered[-1], 0
    for _ in range(60):
        if lo == hi or not binnable(lo, hi):
            break
        n_below, counts = interval_histogram(values, valid, lo, hi)
        assert n_below == below
        lo, hi, below, count = narrow(lo, hi, below, counts, rank)
        assert below <= rank < below + count
        assert below == np.count_nonzero(ordered < lo)
        assert count == np.count_nonzero((ordered >= lo) & (ordered <= hi))
    assert ordered[rank] == lo == hi or lo <= ordered[rank] <= hi


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3000), st.integers(1, 6), st.integers(2, 4))
def test_summed_tile_histograms_give_scikit_images_multiotsu(seed, n, parts, classes):
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [rng.normal(loc, 1.0, size=n) for loc in rng.choice([0.0, 3.0, 7.0, 20.0], classes)]
    )
    if rng.random() < 0.1:
        values = rng.choice(values[: classes - 1], values.size)  # fewer values than classes
    vmin, vmax = values.min(), values.max()
    counts = sum(histogram(chunk, vmin, vmax) for chunk in np.array_split(values, parts))
    try:
        expected = tuple(threshold_multiotsu(values, classes=classes).tolist())
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            multiotsu_from_histogram(counts, vmin, vmax, classes)
        return
    assert multiotsu_from_histogram(counts, vmin, vmax, classes) == expected


# ---------------------------------------------------------------------------
# Our own fast kernels are bit-identical to the library calls they replace.
# ---------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 45), st.integers(1, 45))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([0.3, 0.5, 0.8, 1.0, 1.6, 2.3, 4.7]))
def test_gaussian_is_scipys_bit_for_bit(seed, shape, sigma):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * rng.choice([1e-3, 1.0, 1e9]) + rng.choice([0.0, 1e3])
    expected = ndi.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)
    np.testing.assert_array_equal(gaussian(x, sigma), expected)
    np.testing.assert_array_equal(gaussian(x[:, ::-1], sigma), expected[:, ::-1])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([0.9, 1.0, 1.1]), st.booleans())
def test_nine_tap_gaussian_is_scipys_to_the_bit(seed, shape, sigma, special):
    """The one-pass 9-tap loops: same bytes as SciPy, signed zeros, inf and NaN included."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * rng.choice([1e-300, 1.0, 1e300])
    if special:
        x = np.where(rng.random(shape) < 0.3, rng.choice([0.0, -0.0, np.inf, -np.inf, np.nan]), x)
    for image in (x, x.T):  # and an array that is not C-contiguous
        expected = ndi.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)
        assert gaussian(image, sigma).tobytes() == expected.tobytes()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([np.uint8, np.uint16, np.float32]))
def test_fused_excess_green_is_the_formula_bit_for_bit(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    image = (rng.random((3, *shape)) * 300).astype(dtype)
    image[:, : shape[0] // 3] = 0  # where every band is 0, ExG is 0
    expected = excess_green(image.astype(np.float64))
    np.testing.assert_array_equal(excess_green_bands(*image), expected)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([np.uint8, np.uint16, np.float32]))
def test_fused_excess_green_red_is_the_reference_bit_for_bit(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    image = (rng.random((3, *shape)) * 300).astype(dtype)
    image[:, : shape[0] // 3] = 0
    expected = reference_index(image.astype(np.float64), Index("exgr"), (1, 2, 3))
    np.testing.assert_array_equal(excess_green_red(image), expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([np.uint8, np.uint16, np.float32]))
def test_hsv_of_a_window_is_the_whole_images(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    image = (rng.random((3, *shape)) * (1.0 if dtype == np.float32 else 300)).astype(dtype)
    image[:, : shape[0] // 4] = image[0, : shape[0] // 4]  # grey pixels: hue and saturation 0
    for channel in "hsv":
        whole = hsv_channel(image, channel)
        expected = reference_index(
            image.astype(np.float64), Index("hsv", channel=channel), (1, 2, 3),
            dtype_maximum(image.dtype),
        )  # fmt: skip
        np.testing.assert_array_equal(whole, expected)
        r, c = shape[0] // 2, shape[1] // 3
        np.testing.assert_array_equal(hsv_channel(image[:, r:, c:], channel), whole[r:, c:])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([0.0, 0.3, 0.9]))
def test_masked_histogram_is_numpys(seed, shape, invalid):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * rng.choice([1e-6, 1.0, 1e8]) + rng.choice([0.0, 3.3])
    if rng.random() < 0.15:
        values[:] = values.flat[0]
    valid = rng.random(shape) >= invalid
    valid.flat[0] = True
    vmin, vmax = values[valid].min(), values[valid].max()
    np.testing.assert_array_equal(
        masked_histogram(values, valid, vmin, vmax), histogram(values[valid], vmin, vmax)
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.integers(1, 4), st.sampled_from([0.2, 0.5, 0.9]))
def test_opencv_morphology_is_scipys(seed, shape, radius, density):
    mask = np.random.default_rng(seed).random(shape) < density
    footprint = disk(radius)
    np.testing.assert_array_equal(
        erosion(mask, radius), ndi.binary_erosion(mask, footprint, border_value=1)
    )
    np.testing.assert_array_equal(
        dilation(mask, radius), ndi.binary_dilation(mask, footprint, border_value=0)
    )
    np.testing.assert_array_equal(
        dilation(mask[::-1], radius), ndi.binary_dilation(mask[::-1], footprint, border_value=0)
    )


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([1, 2]), st.sampled_from([0.3, 0.6]))
def test_labels_and_tile_stats_match_scikit_image(seed, shape, connectivity, density):
    mask = np.random.default_rng(seed).random(shape) < density
    labels, n = label(mask, connectivity)
    expected = sk_label(mask, connectivity=connectivity)
    assert n == expected.max()
    # The same partition, whatever the ids: a bijection between the two labellings.
    pairs = np.unique(np.stack([labels.ravel(), expected.ravel()]), axis=1)
    assert pairs.shape[1] == len(np.unique(expected)) == len(np.unique(labels))
    origin, image_shape = (7, 11), (shape[0] + 20, shape[1] + 30)
    stats = tile_stats(labels, n, origin, image_shape)
    # Sorted by first pixel, the statistics are those of regionprops, shifted by origin.
    order = np.argsort(stats.first)
    props = regionprops_table(expected, properties=("area", "bbox", "coords"))
    np.testing.assert_array_equal(stats.count[order], props["area"])
    np.testing.assert_array_equal(stats.min_row[order], props["bbox-0"] + origin[0])
    np.testing.assert_array_equal(stats.min_col[order], props["bbox-1"] + origin[1])
    np.testing.assert_array_equal(stats.max_row[order], props["bbox-2"] - 1 + origin[0])
    np.testing.assert_array_equal(stats.max_col[order], props["bbox-3"] - 1 + origin[1])
    sums = np.array([c.sum(axis=0) for c in props["coords"]]).reshape(-1, 2)
    np.testing.assert_array_equal(stats.sum_row[order], sums[:, 0] + props["area"] * origin[0])
    np.testing.assert_array_equal(stats.sum_col[order], sums[:, 1] + props["area"] * origin[1])
    firsts = [(c[0, 0] + origin[0]) * image_shape[1] + c[0, 1] + origin[1] for c in props["coords"]]
    np.testing.assert_array_equal(stats.first[order], np.array(firsts, dtype=np.int64))
    assert not stats.border.any()


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([np.bool_, np.uint32, np.uint64]))
def test_relabel_is_fancy_indexing(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 30, shape).astype(np.int32)
    lut = rng.integers(0, 2 if dtype is np.bool_ else 2**31, 30).astype(dtype)
    np.testing.assert_array_equal(relabel(labels, lut), lut[labels])


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    shapes,
    st.sampled_from([0.0, 0.3]),
    st.sampled_from(["normal", "edges", "centres", "two"]),
)
def test_bin_codes_threshold_like_the_values(seed, shape, invalid, kind):
    """``code >= k + 2`` is ``x > centers[k]`` for every bin ``k``, at edges and centres too."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * rng.choice([1e-9, 1.0, 1e8]) + rng.choice([0.0, 3.3])
    vmin, vmax = values.min(), values.max()
    edges, centers = bin_edges(vmin, vmax)
    if kind == "edges":  # values exactly on the bin edges and just below them
        values = rng.choice(np.concatenate([edges, np.nextafter(edges, -np.inf)]), shape)
    elif kind == "centres":  # values exactly on the centres and just above them
        values = rng.choice(np.concatenate([centers, np.nextafter(centers, np.inf)]), shape)
    elif kind == "two":  # a two-valued image: Otsu picks the first bin
        values = rng.choice([vmin, vmax], shape)
    valid = rng.random(shape) >= invalid
    valid.flat[0] = True
    vmin, vmax = values[valid].min(), values[valid].max()
    values[~valid] = np.nan  # what lies under nodata must not matter
    _, centers = bin_edges(vmin, vmax)
    core = (slice(shape[0] // 3, shape[0]), slice(0, max(1, shape[1] - 2)))
    counts, codes = histogram_codes(values, valid, core, vmin, vmax)
    np.testing.assert_array_equal(counts, histogram(values[core][valid[core]], vmin, vmax))
    if vmin == vmax:
        assert codes is None  # a constant image has no bins to code
        return
    assert codes is not None
    for k in range(len(centers)):
        for polarity in ("above", "below"):
            expected = foreground(values, valid, centers[k], polarity)
            np.testing.assert_array_equal(code_foreground(codes, k, polarity), expected)
    t = otsu_from_histogram(histogram(values[valid], vmin, vmax), vmin, vmax)
    assert centers[threshold_index(t, vmin, vmax)] == t


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([0.0, 0.5, 1.0]), st.booleans())
def test_masked_range_is_numpys(seed, shape, invalid, with_nan):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape)
    valid = rng.random(shape) >= invalid
    if with_nan:
        values.flat[rng.integers(values.size)] = np.nan
    lo, hi, n = masked_range(values, valid)
    assert n == valid.sum()
    if n == 0:
        assert (lo, hi) == (np.inf, -np.inf)
    else:
        np.testing.assert_array_equal([lo, hi], [values[valid].min(), values[valid].max()])
