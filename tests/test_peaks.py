"""Peaks and growth (tiler.kernels.peaks) equal their brute-force definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiler.kernels.peaks import find_peaks, grow_peaks


def brute_peaks(conf: np.ndarray, threshold: float, radius: int) -> np.ndarray:
    """The contract's definition, pixel by pixel."""
    h, w = conf.shape
    found = []
    for r in range(h):
        for c in range(w):
            v = conf[r, c]
            if not v >= threshold:
                continue
            ok = True
            for q in range(max(0, r - radius), min(h, r + radius + 1)):
                for p in range(max(0, c - radius), min(w, c + radius + 1)):
                    if (q, p) == (r, c):
                        continue
                    u = conf[q, p]
                    if not (v > u or np.isnan(u) or (v == u and (r, c) < (q, p))):
                        ok = False
            if ok:
                found.append((r, c))
    return np.array(found, np.int64).reshape(-1, 2)


def brute_grow(conf, peaks, radius, mask_threshold):
    labels = np.zeros(conf.shape, np.int32)
    spots = {tuple(p) for p in peaks.tolist()}
    for r in range(conf.shape[0]):
        for c in range(conf.shape[1]):
            if not (conf[r, c] >= mask_threshold or (r, c) in spots):
                continue
            best = None
            for k, (pr, pc) in enumerate(peaks.tolist()):
                d2 = (pr - r) ** 2 + (pc - c) ** 2
                if d2 <= radius * radius and (best is None or d2 < best[0]):
                    best = (d2, k + 1)
            labels[r, c] = 0 if best is None else best[1]
    return labels


@st.composite
def maps(draw, max_side=14):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([2, 3, 5, 256, 0]))  # 0: continuous
    rng = np.random.default_rng(seed)
    conf = rng.random((h, w)).astype(np.float32)
    if levels:
        conf = np.floor(conf * levels) / levels  # quantised: plateaus everywhere
    if draw(st.booleans()):
        conf[rng.random((h, w)) < 0.05] = np.nan
    return conf


@settings(max_examples=150, deadline=None)
@given(maps(), st.integers(0, 4), st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_find_peaks_is_the_definition(conf, radius, threshold):
    got = find_peaks(conf, threshold, radius)
    assert got.dtype == np.int64 and got.shape[1] == 2
    np.testing.assert_array_equal(got, brute_peaks(conf, threshold, radius))


def test_a_plateau_is_one_peak_at_its_first_pixel():
    conf = np.zeros((4, 9), np.float32)
    conf[1:3, 2:] = 0.8  # one long plateau: each pixel has an equal, earlier one within 1 px
    np.testing.assert_array_equal(find_peaks(conf, 0.5, 2), [[1, 2]])
    np.testing.assert_array_equal(find_peaks(conf, 0.5, 0), np.argwhere(conf >= 0.5))


@settings(max_examples=100, deadline=None)
@given(
    maps(),
    st.integers(0, 3),
    st.sampled_from([0.0, 1.0, 1.5, 2.0, 2.9, 4.3]),
    st.sampled_from([0.0, 0.2, 0.6]),
)
def test_grow_peaks_is_the_nearest_peak(conf, radius, grow, mask_threshold):
    peaks = find_peaks(conf, 0.4, radius)
    got = grow_peaks(conf, peaks, grow, mask_threshold)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, brute_grow(conf, peaks, grow, mask_threshold))


def test_equal_distances_go_to_the_earlier_peak():
    conf = np.ones((5, 5), np.float32)
    peaks = np.array([[0, 2], [2, 0], [2, 4], [4, 2]])
    labels = grow_peaks(conf, peaks, 3.0, 0.5)
    assert labels[2, 2] == 1  # four peaks at distance 2: the first in raster order
    assert labels[1, 1] == 1 and labels[3, 3] == 3 and labels[3, 1] == 2


@pytest.mark.parametrize("bad", [-1, float("nan")])
def test_negative_radius_is_refused(bad):
    with pytest.raises(ValueError, match="radius"):
        find_peaks(np.zeros((3, 3)), 0.5, bad)
    with pytest.raises(ValueError, match="radius"):
        grow_peaks(np.zeros((3, 3)), np.zeros((0, 2)), bad, 0.5)


def test_a_float32_map_is_compared_with_the_threshold_as_given():
    """float32(0.7) is below 0.7: not a peak at threshold 0.7, a peak at float32(0.7)."""
    conf = np.zeros((5, 5), np.float32)
    conf[2, 2] = np.float32(0.7)
    assert find_peaks(conf, 0.7, 1).shape == (0, 2)
    np.testing.assert_array_equal(find_peaks(conf, float(np.float32(0.7)), 1), [[2, 2]])
    np.testing.assert_array_equal(find_peaks(conf.astype(np.float64), 0.6, 1), [[2, 2]])
