"""Points tiled equal points on the whole map: every peak one object, counted once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from tiler.points import PointSettings, points_in_memory, reference_points


@st.composite
def confidence_maps(draw, max_side=40):
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    noise = rng.random((h, w))
    sigma = draw(st.sampled_from([0.0, 1.0, 2.5]))
    conf = ndi.gaussian_filter(noise, sigma) if sigma else noise
    conf = (conf - conf.min()) / max(np.ptp(conf), 1e-9)
    levels = draw(st.sampled_from([0, 3, 8, 64]))  # quantised: plateaus across seams
    if levels:
        conf = np.round(conf * levels) / levels
    return conf.astype(np.float32)


def assert_tiles_exactly(conf, chunks, point_settings):
    labels, peaks = reference_points(conf, point_settings)
    tiled = points_in_memory(lambda w: conf[w.slices], conf.shape, chunks, point_settings)
    np.testing.assert_array_equal(tiled.labels, labels)
    assert tiled.n == len(peaks["peak_row"]) == labels.max(initial=0)
    for key, values in peaks.items():
        np.testing.assert_array_equal(tiled.peaks[key], values, err_msg=key)
    return tiled


@settings(max_examples=120, deadline=None)
@given(
    confidence_maps(),
    st.integers(1, 13),
    st.integers(1, 13),
    st.integers(0, 4),
    st.sampled_from([0.0, 1.0, 1.5, 2.9, 4.0]),
    st.sampled_from([0.2, 0.5, 0.8]),
    st.sampled_from([None, 0.1, 0.6]),
)
def test_tiled_points_equal_the_whole_map(conf, ch, cw, radius, grow, threshold, mask_threshold):
    point_settings = PointSettings(threshold, radius, grow, mask_threshold)
    assert_tiles_exactly(conf, (ch, cw), point_settings)


@pytest.mark.parametrize("chunks", [(4, 4), (1, 1), (3, 5), (8, 2)])
def test_a_plateau_across_seams_is_one_object(chunks):
    conf = np.zeros((8, 8), np.float32)
    conf[2:5, 2:5] = 0.9  # straddles the seams of a 4 x 4 tiling
    conf[7, 7] = 0.7  # a peak in a corner tile
    tiled = assert_tiles_exactly(conf, chunks, PointSettings(0.5, 2, 3.0, 0.5))
    assert tiled.n == 2
    assert (tiled.peaks["peak_row"].tolist(), tiled.peaks["peak_col"].tolist()) == ([2, 7], [2, 7])
    assert tiled.labels[4, 4] == 1 and tiled.labels[7, 7] == 2


def test_peaks_on_a_seam_are_counted_once():
    conf = np.zeros((6, 12), np.float32)
    conf[:, 5:7] = 0.8  # a ridge on the seam of 6 px tiles, plateau two wide
    conf[3, 6] = 1.0  # its highest pixel just right of the seam
    tiled = assert_tiles_exactly(conf, (6, 6), PointSettings(0.5, 1, 1.5))
    assert tiled.peaks["confidence"].tolist()[tiled.labels[3, 6] - 1] == 1.0


@pytest.mark.parametrize(
    ("field", "value"), [("radius", -1), ("grow", -0.5), ("grow", float("nan"))]
)
def test_bad_settings_are_refused_in_one_line(field, value):
    kwargs = {"threshold": 0.5, "radius": 1, field: value}
    with pytest.raises(ValueError, match=f"points {field}: must be >= 0") as caught:
        PointSettings(**kwargs)
    assert "\n" not in str(caught.value)
