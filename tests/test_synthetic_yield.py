"""Tests of the synthetic yield truth and yield-monitor points (tiler.synthetic_yield)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from tiler.synthetic import SyntheticField
from tiler.synthetic_yield import (
    GPS_LAG,
    HEADLAND,
    ZERO,
    YieldModel,
    correlated_noise,
    plant_sizes,
    planted,
    yield_monitor_points,
    yield_truth,
)
from tiler.tiling import Window

STAND = dict(row_angle=-61.0, row_curvature=(10.0, 300.0), skip_rate=0.05, double_rate=0.1)
FIELD = SyntheticField.at(0.05, (60, 80), seed=3, **STAND)


@functools.cache
def truth():
    return yield_truth(FIELD, seed=1)


@functools.cache
def points():
    return yield_monitor_points(truth(), n=2000, seed=2)


def test_same_seed_same_truth_and_points():
    again = yield_truth(FIELD, seed=1)
    for name in ("density", "size", "gap", "cover", "signal", "noise"):
        np.testing.assert_array_equal(getattr(again, name), getattr(truth(), name))
    other = yield_monitor_points(again, n=2000, seed=2)
    for name, values in points().items():
        np.testing.assert_array_equal(other[name], values)
    assert not np.array_equal(yield_truth(FIELD, seed=9).noise, truth().noise, equal_nan=True)


def test_plant_sizes_are_the_fields_plants():
    xy, radius = plant_sizes(FIELD)
    np.testing.assert_array_equal(xy, FIELD.plant_xy())
    lo, hi = (r * FIELD.unit_m for r in FIELD.plant_radius)
    assert radius.min() >= lo and radius.max() <= hi


def test_cells_count_every_plant_and_cover_the_footprint():
    t = truth()
    plants = t.density * t.cover * t.cell**2 / 1e4
    assert round(plants.sum()) == len(FIELD.plant_xy())
    alpha = FIELD.read(Window.whole(FIELD.shape))[3] > 0
    assert t.cover.sum() * t.cell**2 == pytest.approx(alpha.sum() * FIELD.pixel_size**2)
    assert ((t.cover >= 0) & (t.cover <= 1 + 1e-12)).all() and (t.cover == 1).any()


def test_yield_rises_with_density_to_a_plateau_and_size_and_falls_with_gaps():
    m = YieldModel()
    d = np.array([0, 5e3, 1e4, 2e4, 4e4, 1e6])
    y = m.signal(d, 1.0, 0.0)
    assert y[0] == 0 and (np.diff(y) > 0).all()
    assert np.diff(y)[-1] / (d[-1] - d[-2]) < 0.01 * y[1] / d[1]  # flattens
    assert y[-1] < m.y_max and m.signal(1e9, 1.0, 0.0) == pytest.approx(m.y_max, rel=1e-4)
    assert (np.diff(m.signal(2e4, np.array([0.5, 1.0, 1.5]), 0.0)) > 0).all()
    gaps = m.signal(2e4, 1.0, np.array([0.0, 0.2, 0.5, 1.0]))
    assert (np.diff(gaps) < 0).all() and gaps[-1] == pytest.approx(gaps[0] * (1 - m.gap_penalty))


def test_a_field_with_more_gaps_yields_less():
    sparse = SyntheticField.at(0.05, (60, 80), seed=3, **{**STAND, "skip_rate": 0.15})
    a, b = truth(), yield_truth(sparse, seed=1)
    assert b.gap[b.valid].mean() > a.gap[a.valid].mean()
    assert b.density[b.valid].mean() < a.density[a.valid].mean()
    assert b.signal[b.valid].mean() < a.signal[a.valid].mean() - 0.5


@pytest.mark.parametrize("length", [15.0, 25.0])
def test_noise_correlation_length_and_sd(length):
    cell = 5.0
    noise = correlated_noise((300, 300), cell, length, 0.7, np.random.default_rng(4))
    assert noise.std() == pytest.approx(0.7) and abs(noise.mean()) < 1e-12
    z = noise / noise.std()
    for lag in (1, 2, 3, 4, 6):
        rho = 0.5 * ((z[:, lag:] * z[:, :-lag]).mean() + (z[lag:] * z[:-lag]).mean())
        assert rho == pytest.approx(math.exp(-((lag * cell / length) ** 2)), abs=0.05)


def test_best_r2_is_its_definition():
    t = truth()
    v = t.valid
    s, n = t.signal[v], t.noise[v]
    assert 0 < t.best_r2 < 1
    assert t.best_r2 == pytest.approx(s.var() / (s.var() + n.var()))
    # and it is the R² of the signal as a predictor of the yield (noise ~ uncorrelated)
    y = t.yield_t_ha[v]
    r2 = 1 - ((y - s - (y - s).mean()) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 == pytest.approx(t.best_r2, abs=0.1)
    assert np.isnan(t.signal[t.cover == 0]).all() and not np.isnan(t.signal[t.cover > 0]).any()


def test_monitor_points_and_fault_fractions():
    p = points()
    assert all(a.shape == (2000,) for a in p.values())
    fault = p["fault"]
    assert np.mean(fault & GPS_LAG > 0) == pytest.approx(0.1, abs=0.04)
    assert np.mean(fault & ZERO > 0) == pytest.approx(0.03, abs=0.02)
    assert 0.05 < np.mean(fault & HEADLAND > 0) < 0.5
    none = yield_monitor_points(truth(), n=500, seed=2, lag_fraction=0.0, zero_fraction=0.0)
    assert not (none["fault"] & (GPS_LAG | ZERO)).any()


def test_gps_lag_moves_records_ahead_along_travel():
    p = points()
    lag = p["fault"] & GPS_LAG > 0
    dx, dy = p["x"] - p["true_x"], p["y"] - p["true_y"]
    heading = np.radians(p["heading_deg"])
    np.testing.assert_allclose(dx[lag], 4.0 * np.sin(heading[lag]), atol=1e-9)
    np.testing.assert_allclose(dy[lag], 4.0 * np.cos(heading[lag]), atol=1e-9)
    assert (dx[~lag] == 0).all() and (dy[~lag] == 0).all()
    inside = (p["fault"] & HEADLAND) == 0  # in the field the combine drives along the rows
    azimuth = (90.0 + 61.0) % 180.0
    assert np.allclose(p["heading_deg"][inside] % 180.0, azimuth)


def test_headland_records_are_outside_the_planted_area_and_zeros_are_zero():
    p = points()
    head = p["fault"] & HEADLAND > 0
    assert not planted(FIELD, p["true_x"][head], p["true_y"][head]).any()
    assert planted(FIELD, p["true_x"][~head], p["true_y"][~head]).all()
    zero = p["fault"] & ZERO > 0
    assert (p["yield_t_ha"][zero] == 0).all()
    full = ~zero & ~head  # headland and edge cells' records may read 0
    row, col = truth().cell_of(p["true_x"][full], p["true_y"][full])
    full[full] = truth().valid[row, col]
    assert (p["yield_t_ha"][full] > 0).all()
    good = p["fault"] == 0
    error = p["yield_t_ha"][good] - truth().at(p["x"][good], p["y"][good])
    assert abs(error.mean()) < 0.1 and error.std() == pytest.approx(0.4, abs=0.05)


def test_plot_yield_is_the_planted_area_weighted_mean():
    """Against a fine lattice of map points: each point's cell yield, over the planted
    points inside the plot."""
    from tiler.synthetic import plots
    from tiler.synthetic_yield import plot_yield

    shapes = plots(FIELD, rows=2, cols=2, gap=0.1)
    got = plot_yield(truth(), list(shapes.geometry))
    x0, y0 = FIELD.origin_xy
    step = 0.1  # m: planted cover resolved at two pixels
    xs = x0 + (np.arange(int(FIELD.width * FIELD.pixel_size / step)) + 0.5) * step
    ys = y0 - (np.arange(int(FIELD.height * FIELD.pixel_size / step)) + 0.5) * step
    x, y = (a.ravel() for a in np.meshgrid(xs, ys))
    on = planted(FIELD, x, y)
    import shapely

    for value, plot in zip(got, shapes.geometry, strict=True):
        inside = on & shapely.contains_xy(plot, x, y)
        assert value == pytest.approx(np.nanmean(truth().at(x[inside], y[inside])), rel=2e-3)


def test_cli_writes_the_yield_surface_points_and_plots(tmp_path):
    import geopandas as gpd
    import rasterio
    from test_cli import tiler

    done = tiler("synthetic", tmp_path, "--extent", "40m", "--pixel-size", "5cm", "--seeds", "4",
                 "--yield", "300", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    field = SyntheticField.at(0.05, (40, 40), seed=4)
    known = yield_truth(field, seed=4)
    with rasterio.open(tmp_path / "field-4-yield.tif") as src:
        assert src.descriptions == ("yield_t_ha", "signal_t_ha")
        assert src.transform.a == known.cell and src.crs.to_epsg() == 32611
        np.testing.assert_array_equal(src.read(1), known.yield_t_ha.astype(np.float32))
    records = gpd.read_file(tmp_path / "field-4-yield-points.gpkg")
    expected = yield_monitor_points(known, n=300, seed=4)
    assert len(records) == 300 and records.crs.to_epsg() == 32611
    np.testing.assert_allclose(records.geometry.x, expected["x"])
    np.testing.assert_array_equal(records["fault"], expected["fault"])
    plots = gpd.read_file(tmp_path / "field-4-yield-plots.gpkg")
    assert list(plots["plot"]) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    assert plots["yield_t_ha"].between(1, 16).all()
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_gap_fraction_counts_each_interval_in_the_cells_it_crosses():
    """Against points every 1 cm along each in-row interval, each in its own cell."""
    t, stand = truth(), FIELD.stand_truth()
    steps = np.maximum(1, np.ceil(stand.gap_length_m / 0.01)).astype(int)
    k = np.repeat(np.arange(steps.size), steps)
    f = (np.concatenate([np.arange(n) for n in steps]) + 0.5) / steps[k]
    xy = stand.gap_start_xy[k] + f[:, None] * (stand.gap_end_xy[k] - stand.gap_start_xy[k])
    row, col = t.cell_of(xy[:, 0], xy[:, 1])
    ok = (row >= 0) & (row < t.gap.shape[0]) & (col >= 0) & (col < t.gap.shape[1])
    flat = row[ok] * t.gap.shape[1] + col[ok]
    step = (stand.gap_length_m / steps)[k][ok]
    is_gap = (stand.gap_length_m > t.model.gap_factor * stand.plant_spacing_m)[k][ok]
    total = np.bincount(flat, step, t.gap.size).reshape(t.gap.shape)
    gaps = np.bincount(flat, step * is_gap, t.gap.size).reshape(t.gap.shape)
    has = total > 0.5  # m of row: where 1 cm steps resolve the share well
    np.testing.assert_allclose(t.gap[has], (gaps / np.where(has, total, 1))[has], atol=0.01)
    assert (t.gap[total == 0] == 1).all()
