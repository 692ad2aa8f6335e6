"""Tests of the synthetic field's row layout and stand truth (tiler.synthetic_rows)."""

from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_dilation
from scipy.spatial import cKDTree

from tiler.synthetic import SyntheticField
from tiler.synthetic_rows import sin_turns
from tiler.tiling import Window

H, W = 600, 800
STAND = dict(row_angle=-61.0, row_curvature=(10.0, 300.0), skip_rate=0.05, double_rate=0.1)
FIELD = SyntheticField(height=H, width=W, seed=3, **STAND)
EXG_GREEN = 40


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.mark.parametrize(
    "field, window, image, centres",
    [
        (SyntheticField(), Window(3000, 3400, 5000, 5500),
         "b8827a727455c2ff88111e6c4e014b18d0dc77464c840f96c1088c8aadb3dc3e",
         "de0ef4f5b5ff0522cfc70f6391355784b1f1acaefa7ca7eafdc383726e80ab17"),
        (SyntheticField(seed=7), Window(300, 700, 7300, 7800),
         "665fc1fcd004c0af600e2dcccb298a5600467e39f71a412c228f5818ee3fa560",
         "b1db7d838b42c3988d59d407f12fbeec2dabae455d6757bda4b20dbec9794d35"),
        (SyntheticField.at(0.01, (20, 30), seed=3), Window(500, 1200, 800, 1700),
         "0de868e39d16549a89e832cdaf28cc031b5600582fc6df1cb1f53de61f870448",
         "eaeb90ba62f012baeca58b01dc6048ff8b1557c14362f622d5b81a9b4ca20770"),
        (SyntheticField.at(0.04, (30, 20), seed=2), None,
         "4d720a9b6cbf1db74ec52e5a5f13d34af2e3293fafec40173c28c30969175beb",
         "b1602c533d7c3f61a0e48885e82f4f1dffbe11ea223b35220e15b937f50e4400"),
    ],
)  # fmt: skip
def test_default_fields_are_the_fields_drawn_before_rows_could_turn(field, window, image, centres):
    """Digests of the fields drawn before row_angle, curvature, skips and doubles existed."""
    window = window or Window.whole(field.shape)
    assert sha(field.read(window)) == image
    assert sha(field.plant_centres(window)) == centres


@functools.cache
def full_image() -> np.ndarray:
    return FIELD.read(Window.whole(FIELD.shape))


def exg(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[i].astype(np.int32) for i in range(3))
    return 2 * g - r - b


@settings(max_examples=40, deadline=None, database=None)
@given(r=st.tuples(st.integers(0, H - 1), st.integers(1, H)),
       c=st.tuples(st.integers(0, W - 1), st.integers(1, W)))  # fmt: skip
def test_turned_curved_window_equals_slice_of_full_image(r, c):
    window = Window(r[0], max(r[0] + 1, r[1]), c[0], max(c[0] + 1, c[1]))
    np.testing.assert_array_equal(FIELD.read(window), full_image()[(slice(None), *window.slices)])


def test_turned_windows_agree_far_from_origin():
    layout = dict(row_angle=23.7, row_curvature=(6.0, 2000.0), skip_rate=0.02, double_rate=0.05)
    field = SyntheticField(height=200_000, width=200_000, seed=11, **layout)
    a = field.read(Window(100_000, 100_300, 120_000, 120_400))
    b = field.read(Window(100_123, 100_201, 119_950, 120_333))
    np.testing.assert_array_equal(a[:, 123:201, :333], b[:, :, 50:])
    assert (exg(a) > EXG_GREEN).any()


def test_sin_turns():
    t = np.linspace(-3.7, 5.2, 10_001)
    np.testing.assert_allclose(sin_turns(t), np.sin(2 * np.pi * t), atol=1e-7, rtol=0)


def test_truth_plants_are_the_drawn_plants():
    truth = FIELD.stand_truth()
    xy = FIELD.plant_xy()
    assert len(truth.plants_xy) == len(xy) == len(FIELD.plant_centres()) > 100
    assert set(map(tuple, truth.plants_xy)) == set(map(tuple, xy))
    rows, cols = FIELD.plant_centres().astype(np.int64).T
    assert (exg(full_image())[rows, cols] > EXG_GREEN).mean() > 0.95
    assert truth.slot_double.any() and truth.slot_skipped.any()
    assert sum(r.plants for r in truth.rows) == len(xy)
    assert np.array_equal(truth.plant_row, np.sort(truth.plant_row))
    # a window's truth is the plants of the whole field's truth inside it
    window = Window(100, 400, 200, 600)
    sub = FIELD.stand_truth(window)
    assert set(map(tuple, sub.plants_xy)) == set(map(tuple, FIELD.plant_xy(window)))


def slots_of_plants(truth):
    """Each plant's slot entry (nearest present slot of its row; None at the edges)."""
    present = np.flatnonzero(truth.slot_present)
    dist, near = cKDTree(truth.slot_xy[present]).query(truth.plants_xy)
    assert np.median(dist) < 0.1
    found = present[near]
    return np.where((dist < 0.15) & (truth.slot_row[found] == truth.plant_row), found, -1)


def test_skips_and_doubles_in_the_spacings():
    field = SyntheticField.at(0.025, (30.0, 30.0), seed=5, row_angle=35.0, skip_rate=0.04,
                              double_rate=0.08, missing_fraction=0.0)  # fmt: skip
    truth = field.stand_truth()
    slot = slots_of_plants(truth)
    sp = truth.plant_spacing_m
    first, last = slot[:-1], slot[1:]
    same = truth.plant_row[1:] == truth.plant_row[:-1]
    pair = same & (first >= 0) & (last >= 0)
    step = np.hypot(*(truth.plants_xy[1:] - truth.plants_xy[:-1]).T)
    assert np.array_equal(truth.gap_length_m, step[same])
    assert np.array_equal(truth.gap_start_xy, truth.plants_xy[:-1][same])
    assert np.array_equal(np.concatenate([r.spacings_m for r in truth.rows]), truth.gap_length_m)
    seconds = pair & truth.slot_second[np.maximum(last, 0)]
    assert seconds.sum() > 20
    assert (step[seconds] <= 0.5 * sp).all() and (step[seconds] >= 0.25 * sp).all()
    # a skip of k slots: the plants either side are k + 1 slots apart (a double's second
    # plant starts the interval when the slot before the skip holds one)
    runs = 0
    for i in np.flatnonzero(pair & ~truth.slot_second[np.maximum(first, 0)]):
        a, b = truth.slot_index[first[i]], truth.slot_index[last[i]]
        if b - a < 2:
            continue
        runs += 1
        jitter = 2 * field.plant_jitter[1] * field.unit_m + 2 * field.pixel_size
        assert step[i] == pytest.approx((b - a) * sp, abs=jitter)
    assert runs > 20


@pytest.mark.parametrize("angle", [0.0, 23.7, -61.0, 90.0, 135.0])
def test_rows_run_at_the_angle_asked_for(angle):
    field = SyntheticField.at(0.025, (25.0, 25.0), seed=2, row_angle=angle)
    truth = field.stand_truth()
    assert truth.azimuth_deg == pytest.approx((90.0 - angle) % 180.0)
    long = [r for r in truth.rows if r.plants > 20]
    assert len(long) > 10
    for r in long:
        xy = truth.plants_xy[truth.plant_row == r.row]
        _, _, vt = np.linalg.svd(xy - xy.mean(axis=0), full_matrices=False)
        dx, dy = vt[0]
        azimuth = math.degrees(math.atan2(dx, dy)) % 180.0
        assert abs((azimuth - truth.azimuth_deg + 90) % 180 - 90) < 1.0
        assert len(r.line) == 2
        (x0, y0), (x1, y1) = r.line
        line_azimuth = math.degrees(math.atan2(x1 - x0, y1 - y0)) % 180.0
        assert abs((line_azimuth - truth.azimuth_deg + 90) % 180 - 90) < 1e-6
        assert r.length_m == pytest.approx(math.hypot(x1 - x0, y1 - y0))
        if angle == 0:
            assert y0 == y1  # horizontal in the image, east-west on the map
    across = np.diff([np.mean(r.line[:, 1 if angle == 0 else 0]) for r in long])
    if angle == 0:
        np.testing.assert_allclose(np.abs(across), truth.row_spacing_m, rtol=1e-9)


def test_curved_rows_follow_their_curve():
    field = SyntheticField.at(0.025, (30.0, 30.0), seed=4, row_angle=10.0,
                              row_curvature=(12.0, 800.0))  # fmt: skip
    truth = field.stand_truth()
    r = max(truth.rows, key=lambda r: r.plants)
    seg = np.hypot(*np.diff(r.line, axis=0).T)
    assert len(r.line) > 20 and seg.max() < 1.05 and r.length_m == pytest.approx(seg.sum())
    # every plant of the row is within its jitter (and a pixel) of the polyline
    xy = truth.plants_xy[truth.plant_row == r.row]
    fine = np.concatenate(
        [np.linspace(a, b, 50) for a, b in zip(r.line[:-1], r.line[1:], strict=True)]
    )
    dist, _ = cKDTree(fine).query(xy)
    assert dist.max() < (max(field.plant_jitter) + 1) * field.unit_m
    chord = np.hypot(*(r.line[-1] - r.line[0]))
    assert r.length_m > chord * 1.001  # the curve is longer than its chord


@pytest.mark.parametrize(
    "kwargs",
    [dict(row_curvature=(1.0, 0.0)), dict(skip_rate=1.5), dict(skip_length=(3, 2)),
     dict(double_offset=(0.5, 1.2)), dict(row_angle=math.inf)],
)  # fmt: skip
def test_bad_layouts_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticField(height=10, width=10, **kwargs)


def test_cli_writes_the_rows_and_gaps(tmp_path):
    import geopandas as gpd
    from test_cli import assert_one_line_error
    from test_cli import tiler as tiler_cli

    args = ["--extent", "8m", "--row-angle", "30", "--curvature", "0.2m,10m", "--skips", "0.05",
            "--doubles", "0.1", "--missing", "0.02", "--weeds", "0.3"]  # fmt: skip
    proc = tiler_cli("synthetic", "f", "--seeds", "2", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    field = SyntheticField.at(0.025, (8.0, 8.0), seed=2, row_angle=30.0, row_curvature=(8.0, 400.0),
                              skip_rate=0.05, double_rate=0.1, missing_fraction=0.02,
                              weed_density=0.3)  # fmt: skip
    truth = field.stand_truth()
    rows = gpd.read_file(tmp_path / "f" / "field-2-rows.geojson")
    gaps = gpd.read_file(tmp_path / "f" / "field-2-gaps.geojson")
    assert rows.crs.to_epsg() == gaps.crs.to_epsg() == 32611
    assert list(rows["row"]) == [r.row for r in truth.rows]
    assert list(rows["plants"]) == [r.plants for r in truth.rows] and rows["plants"].sum() > 50
    np.testing.assert_allclose(rows["length_m"], rows.geometry.length, rtol=1e-9)
    np.testing.assert_allclose(rows.geometry[0].coords, truth.rows[0].line)
    assert len(gaps) == len(truth.gap_length_m) == rows["plants"].sum() - len(rows)
    np.testing.assert_allclose(gaps["length_m"], gaps.geometry.length, rtol=1e-9)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(
        f"field-2{e}" for e in (".tif", ".csv", "-rows.geojson", "-gaps.geojson")
    )
    for option, bad, words in [("--curvature", "1m", "AMPLITUDE,WAVELENGTH"),
                               ("--curvature", "1m,0m", "wavelength > 0"),
                               ("--skips", "2", "between 0 and 1"),
                               ("--doubles", "-0.1", "between 0 and 1")]:  # fmt: skip
        proc = tiler_cli("synthetic", "g", option, bad, cwd=tmp_path)
        assert_one_line_error(proc, option, words)


def test_soil_beds_follow_the_turned_curved_rows():
    """The soil is brightest along the crop rows: under the plants' centres."""
    field = SyntheticField(height=H, width=W, seed=3, row_angle=-50.0, row_curvature=(15.0, 500.0),
                           weed_density=0.0, missing_fraction=0.0)  # fmt: skip
    rows, cols = field.plant_centres().astype(np.int64).T
    beds = field._layout.beds(field._units(np.arange(W)), field._units(np.arange(H)))
    assert beds.shape == (H, W) and beds.max() == 5 and beds.min() == -5
    assert (beds[rows, cols] >= 4).mean() > 0.9
    soil = field._soil(0, H, 0, W)
    ring = np.hypot(*np.mgrid[-12:13, -12:13]) <= 12  # a crop plant's reach
    under = np.zeros((H, W), bool)
    under[rows, cols] = True
    near = binary_dilation(under, ring)
    assert soil[near].mean() > soil[~near].mean() + 2
