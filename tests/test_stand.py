"""The stand along rows (tiler.stand) against layouts whose rows, spacings and gaps are known."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import shapely
import shapely.affinity
from hypothesis import given, settings
from hypothesis import strategies as st
from stand_layouts import Layout, layout

from tiler.errors import ConfigError
from tiler.stand import ROW_COLUMNS, Settings, field_columns, find_stand
from tiler.stand.measures import class_names, gap_class, kachman_smith, kachman_smith_grouped


def matching(truth: Layout, found: np.ndarray) -> tuple[dict, dict]:
    """Which found rows each true row's plants went to, and the reverse."""
    to_found, to_truth = defaultdict(set), defaultdict(set)
    crop = (truth.row >= 0) & (found >= 0)
    for t, f in zip(truth.row[crop], found[crop], strict=True):
        to_found[int(t)].add(int(f))
        to_truth[int(f)].add(int(t))
    return to_found, to_truth


def assert_rows_exact(truth: Layout, stand) -> None:
    """Every true row found as one row, none invented, every crop plant on its row, no weed."""
    to_found, to_truth = matching(truth, stand.row_of)
    assert all(len(f) == 1 for f in to_found.values())
    assert all(len(t) == 1 for t in to_truth.values())
    assert len(to_found) == len(set(truth.row[truth.row >= 0])) == len(stand.rows["row"])
    assert (stand.row_of[truth.row >= 0] >= 0).all()
    assert (stand.row_of[truth.row < 0] < 0).all()


@settings(max_examples=12, deadline=None)
@given(
    azimuth=st.floats(0, 180, exclude_max=True),
    spacing=st.sampled_from([0.3, 0.5, 0.76, 1.0]),
    plant=st.floats(0.08, 0.3),
    miss=st.floats(0, 0.2),
    weeds=st.floats(0, 0.2),
    seed=st.integers(0, 2**16),
)
def test_rows_at_any_angle_are_found_exactly(azimuth, spacing, plant, miss, weeds, seed):
    truth = layout(azimuth, spacing, plant, extent=(25.0, 30 * spacing), miss=miss,
                   weeds=weeds, seed=seed)  # fmt: skip
    stand = find_stand(truth.xy)
    assert stand.status == "ok", stand.message
    assert_rows_exact(truth, stand)
    assert stand.row_spacing == pytest.approx(spacing, rel=0.01)
    turn = (stand.row_azimuth - truth.azimuth + 90) % 180 - 90
    assert abs(turn) < 0.5


@pytest.mark.parametrize("curve", [(0.3, 40.0), (1.0, 70.0)])  # up to 5 degrees off
def test_gently_curved_rows_keep_their_numbers(curve):
    truth = layout(71.0, 0.76, 0.2, extent=(60.0, 20.0), curve=curve, seed=3)
    stand = find_stand(truth.xy)
    assert_rows_exact(truth, stand)
    # the lines follow the curve: each plant lies near its row's polyline
    for r, line in enumerate(stand.lines):
        plants = truth.xy[stand.row_of == r]
        assert len(line) > 2
        assert _distance_to_polyline(plants, line).max() < 0.08


def test_rows_turning_9_degrees_are_still_one_row_each():
    truth = layout(71.0, 0.76, 0.2, extent=(60.0, 20.0), curve=(2.0, 80.0), seed=3)
    stand = find_stand(truth.xy)
    to_found, to_truth = matching(truth, stand.row_of)
    assert len(to_found) == len(to_truth) == len(stand.rows["row"]) == 26
    assert all(len(f) == 1 for f in [*to_found.values(), *to_truth.values()])
    assert (stand.row_of[truth.row >= 0] >= 0).mean() > 0.99  # some first plants are off


def _distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    a, b = line[:-1][None], line[1:][None]
    p = points[:, None]
    t = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * (b - a)), axis=-1).min(axis=1)


def test_spacings_gaps_and_indices_equal_the_planted_truth():
    truth = layout(137.0, 0.76, 0.18, extent=(40.0, 15.0), miss=0.04, skips=0.01,
                   doubles=0.02, weeds=0.15, seed=11)  # fmt: skip
    nominal = Settings(plant_spacing=0.18, gap_factor=2.0)
    stand = find_stand(truth.xy, nominal)
    assert_rows_exact(truth, stand)
    row, x = truth.truth_spacings()
    found = stand.spacings
    assert np.sort(found) == pytest.approx(np.sort(x), abs=1e-9)
    expected = kachman_smith(x, 0.18)
    for name, value in expected.items():
        assert stand.summary[name] == pytest.approx(value, abs=1e-9)
    assert 0 < expected["multiples_pct"] < 10 and 0 < expected["miss_pct"] < 20
    long = np.sort(x[x > 2.0 * 0.18])
    assert np.sort(stand.gaps["length_m"]) == pytest.approx(long, abs=1e-9)
    assert stand.summary["gaps"] == len(long) and stand.summary["skips"] == (x > 0.27).sum()
    assert stand.summary["doubles"] == (x <= 0.09).sum()
    # a gap's ends are two plants of its row, as far apart as the gap is long
    ends = np.c_[stand.gaps["x1"] - stand.gaps["x0"], stand.gaps["y1"] - stand.gaps["y0"]]
    assert np.hypot(*ends.T) == pytest.approx(stand.gaps["length_m"])
    plants = np.bincount(truth.row[truth.row >= 0])
    assert sorted(stand.rows["plants"]) == sorted(plants)


def test_figures_per_row_and_field_agree():
    truth = layout(12.0, 0.5, 0.15, extent=(20.0, 10.0), skips=0.02, doubles=0.03, seed=5)
    stand = find_stand(truth.xy, Settings(seeding_rate=140_000))
    rows, s = stand.rows, stand.summary
    assert list(rows) == list(ROW_COLUMNS) and list(s) == field_columns(Settings())
    assert s["plants_in_rows"] == rows["plants"].sum()
    assert s["gaps"] == rows["gaps"].sum() and s["doubles"] == rows["doubles"].sum()
    assert s["gap_length_m"] == pytest.approx(rows["gap_length_m"].sum())
    per_m = (rows["plants"] - 1).sum() / rows["length_m"].sum()
    assert rows["plants_per_m"] == pytest.approx(1 / rows["spacing_mean_m"], rel=0.02)
    assert s["plants_per_row_m"] == pytest.approx(per_m)
    assert s["stand_per_ha"] == pytest.approx(per_m * 10_000 / stand.row_spacing)
    assert s["emergence_pct"] == pytest.approx(s["stand_per_ha"] / 140_000 * 100)
    # a straight row's line runs from its first plant to its last (projected on the row)
    for r, line in enumerate(stand.lines):
        assert len(line) == 2
        plants = truth.xy[stand.row_of == r]
        assert _distance_to_polyline(plants, line).max() < 0.05
        assert rows["length_m"][r] == pytest.approx(np.hypot(*(line[1] - line[0])))
    per_row = kachman_smith_grouped(stand.spacings, _spacing_rows(stand), len(rows["row"]),
                                    stand.plant_spacing)  # fmt: skip
    for name in per_row:
        assert rows[name] == pytest.approx(per_row[name], nan_ok=True)


def _spacing_rows(stand) -> np.ndarray:
    counts = stand.rows["plants"] - 1
    return np.repeat(np.arange(len(counts)), counts)


def test_kachman_smith_by_hand():
    x = np.array([0.05, 0.2, 0.2, 0.4, 0.18])
    ks = kachman_smith(x, 0.2)
    assert ks["multiples_pct"] == pytest.approx(20.0)
    assert ks["miss_pct"] == pytest.approx(20.0)
    assert ks["quality_of_feed_pct"] == pytest.approx(60.0)
    assert ks["precision_pct"] == pytest.approx(np.std([0.2, 0.2, 0.18], ddof=1) / 0.2 * 100)
    grouped = kachman_smith_grouped(np.r_[x, x[:2]], np.r_[[0] * 5, [1, 1]], 2, 0.2)
    assert grouped["multiples_pct"] == pytest.approx([20.0, 50.0])
    assert np.isnan(grouped["precision_pct"][1])  # one spacing in range: no SD


def test_gap_classes():
    assert class_names((0.5, 1.0, 2.0)) == ["<0.5 m", "0.5-1 m", "1-2 m", ">=2 m"]
    assert gap_class(np.array([0.3, 0.5, 0.99, 1.0, 2.0, 7.0]), (0.5, 1.0, 2.0)).tolist() == [
        0, 1, 1, 2, 3, 3,
    ]  # fmt: skip


def test_random_points_have_no_rows():
    rng = np.random.default_rng(7)
    stand = find_stand(rng.uniform(0, 40, (3000, 2)))
    assert stand.status == "no rows" and "no row structure" in stand.message
    assert (stand.row_of == -1).all() and len(stand.lines) == 0
    assert stand.summary["stand_status"] == "no rows" and stand.summary["rows"] == 0


def test_too_few_plants_are_flagged():
    stand = find_stand(layout(extent=(10.0, 5.0), seed=1).xy[:12])
    assert stand.status == "too few plants" and "12 plants" in stand.message
    assert np.isnan(stand.summary["stand_per_ha"])


def test_given_direction_and_spacing_are_used():
    truth = layout(64.0, 0.9, 0.25, extent=(25.0, 20.0), seed=9)
    free = find_stand(truth.xy)
    given_ = find_stand(truth.xy, Settings(row_spacing=0.9, row_azimuth=64.0))
    assert given_.row_spacing == 0.9 and given_.row_azimuth == 64.0
    assert_rows_exact(truth, given_)
    assert given_.summary["plants_in_rows"] == free.summary["plants_in_rows"]


def test_emergence_from_the_nominal_spacing():
    truth = layout(0.0, 0.76, 0.2, extent=(30.0, 10.0), miss=0.1, weeds=0.0, seed=2)
    stand = find_stand(truth.xy, Settings(plant_spacing=0.2))
    assert stand.summary["emergence_pct"] == pytest.approx(
        stand.summary["plants_per_row_m"] * 0.2 * 100
    )
    assert 85 < stand.summary["emergence_pct"] < 95  # 10 % missing


@pytest.mark.parametrize(
    "bad",
    [
        dict(row_spacing=0.0),
        dict(plant_spacing=-1.0),
        dict(gap_classes=(1.0, 0.5)),
        dict(seeding_rate=float("nan")),
        dict(gap_factor=0.0),
    ],  # fmt: skip
)
def test_bad_settings_are_refused_in_one_line(bad):
    with pytest.raises(ConfigError) as info:
        Settings(**bad)
    assert "\n" not in str(info.value)


def test_headlands_planted_across_the_rows_join_no_row():
    truth = layout(33.0, 0.76, 0.2, extent=(40.0, 20.0), headland=6.0, seed=3)
    stand = find_stand(truth.xy)
    to_found, to_truth = matching(truth, stand.row_of)
    assert len(to_found) == len(to_truth) == len(stand.rows["row"]) == 26
    assert all(len(f) == 1 for f in [*to_found.values(), *to_truth.values()])
    assert (stand.row_of[truth.row == -2] == -1).all()  # 2 x 8 headland rows across
    assert (stand.row_of[truth.row >= 0] >= 0).mean() > 0.97


def test_field_edges_at_an_angle_to_the_rows():
    truth = layout(100.0, 0.76, 0.2, extent=(40.0, 40.0), seed=4)
    centre = np.median(truth.xy, axis=0)
    field = shapely.affinity.rotate(shapely.box(*(centre - 14), *(centre + 14)), 27, tuple(centre))
    inside = shapely.contains_xy(field, *truth.xy.T)
    clipped = Layout(truth.xy[inside], truth.row[inside], truth.order[inside],
                     truth.azimuth, truth.spacing, truth.plant)  # fmt: skip
    stand = find_stand(clipped.xy)
    rows_in, counts = np.unique(clipped.row[clipped.row >= 0], return_counts=True)
    long_enough = set(rows_in[counts >= 3].tolist())
    to_found, to_truth = matching(clipped, stand.row_of)
    assert set(to_found) == long_enough and len(to_truth) == len(stand.rows["row"])
    assert all(len(f) == 1 for f in [*to_found.values(), *to_truth.values()])
    lengths = np.sort(stand.rows["length_m"])
    assert lengths[0] < 0.5 * lengths[-1]  # corner rows are short: the edges cut them


@pytest.mark.parametrize("rows", [2, 3, 4])
@pytest.mark.parametrize("azimuth", [0.0, 37.0, 90.0])
def test_trial_plots_of_two_to_four_rows(rows, azimuth):
    """Two rows are as strong at three spacings as at one (R = |cos|): the spacing whose
    lattice holds the plants is the one kept."""
    truth = layout(azimuth, 0.76, 0.18, extent=(8.0, rows * 0.76 + 0.01), miss=0.05,
                   weeds=0.05, seed=rows)  # fmt: skip
    stand = find_stand(truth.xy)
    assert_rows_exact(truth, stand)
    assert stand.row_spacing == pytest.approx(0.76, rel=0.01)


def test_one_row_has_no_row_spacing():
    truth = layout(20.0, 0.76, 0.18, extent=(8.0, 0.77), miss=0.0, weeds=0.0, seed=1)
    stand = find_stand(truth.xy, Settings(row_azimuth=20.0))
    assert stand.summary["rows"] == 1 and np.isnan(stand.summary["row_spacing_m"])
    assert np.isnan(stand.summary["stand_per_ha"]) and stand.summary["plants_per_row_m"] > 5


def test_plants_all_at_one_place_have_no_rows():
    stand = find_stand(np.zeros((30, 2)))
    assert stand.status == "no rows" and stand.summary["rows"] == 0
