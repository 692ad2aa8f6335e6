"""Kernels agree with the library calls they stand for."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

from tiler.kernels.indices import excess_green, gray
from tiler.kernels.threshold import histogram, otsu_from_histogram


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
