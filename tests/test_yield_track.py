"""The track checks of yield-monitor records (tiler.yield_.faults: pass ends, position
jumps), on hand-made tracks and on simulated monitor files with their recording time."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from yield_data import features, grid_of, truth_of

from tiler.errors import InputError
from tiler.synthetic_yield import GPS_LAG, HEADLAND, ZERO, yield_monitor_points
from tiler.yield_ import faults
from tiler.yield_.truth import read_truth


def _serpentine(passes: int = 3, length: float = 100.0, swath: float = 6.0, step: float = 2.0):
    """A combine's path: ``passes`` passes of ``length`` m joined by turns ``swath`` m wide,
    sampled every ``step`` m; and each record's distance to the nearest turn corner."""
    corners = []
    for k in range(passes):
        ends = [(0.0, k * swath), (length, k * swath)]
        corners += ends if k % 2 == 0 else ends[::-1]
    corners = np.array(corners)
    seg = np.hypot(*np.diff(corners, axis=0).T)
    s_corner = np.r_[0.0, np.cumsum(seg)]
    s = np.arange(0.0, s_corner[-1], step)
    xy = np.column_stack([np.interp(s, s_corner, corners[:, 0]),
                          np.interp(s, s_corner, corners[:, 1])])  # fmt: skip
    inner = s_corner[1:-1]  # the turns' corners (not the path's own ends)
    return xy, np.min(np.abs(s[:, None] - inner[None, :]), axis=1, initial=np.inf)


def test_pass_ends_are_the_records_near_the_turns():
    xy, to_corner = _serpentine()
    flagged = faults.pass_ends(xy)
    # the heading over 5 m turns by over 45 degrees within ~5 m of a corner; 10 m more
    assert flagged[to_corner <= faults.PASS_END_M].all()
    assert not flagged[to_corner > faults.PASS_END_M + faults.TURN_M].any()
    assert flagged.mean() < 0.35


def test_a_displaced_run_is_a_position_jump_not_a_turn():
    xy, _ = _serpentine(passes=1, length=300.0, step=0.75)  # 4 m is five records here
    shifted = xy.copy()
    shifted[200:210, 0] += 4.0
    assert not faults.pass_ends(shifted, ~faults.position_jumps(shifted)).any()
    reason = faults.flag(np.full(len(xy), 9.0), np.ones(len(xy), bool), np.ones(len(xy), bool),
                         shifted, track=True)  # fmt: skip
    assert set(np.flatnonzero(reason == "position jump")) == set(range(200, 210))
    assert (reason[:200] == "").all() and (reason[210:] == "").all()


def test_position_jumps_flag_exactly_the_displaced_run():
    xy, _ = _serpentine(passes=1, length=300.0, step=3.0)
    shifted = xy.copy()
    run = slice(40, 50)  # ten records recorded 4 m ahead of where they were cut
    shifted[run, 0] += 4.0
    flagged = faults.position_jumps(shifted)
    expected = np.zeros(len(xy), bool)
    expected[run] = True
    np.testing.assert_array_equal(flagged, expected)
    assert not faults.position_jumps(xy).any()


def test_a_file_out_of_order_is_no_track():
    xy, _ = _serpentine()
    assert faults.is_track(xy)
    assert not faults.is_track(xy[np.random.default_rng(0).permutation(len(xy))])


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    truth = truth_of(seed=1)
    pts = yield_monitor_points(truth, n=2000, seed=2)
    table = gpd.GeoDataFrame(
        {"yield_t_ha": pts["yield_t_ha"], "time_s": pts["time_s"], "fault": pts["fault"]},
        geometry=gpd.points_from_xy(pts["x"], pts["y"]), crs=truth.field.crs,
    )  # fmt: skip
    return truth, features(truth), table, tmp_path_factory.mktemp("track")


def test_with_recording_time_the_simulated_faults_are_flagged(monitored):
    truth, cells, table, folder = monitored
    path = folder / "monitor.gpkg"
    table.to_file(path)
    reason = read_truth(path, "yield_t_ha", cells, grid_of()).records["reason"].to_numpy()
    fault, flagged = table["fault"].to_numpy(), reason != ""
    recall = {name: flagged[(fault & bit) > 0].mean() for name, bit in
              (("zero", ZERO), ("headland", HEADLAND), ("lag", GPS_LAG))}  # fmt: skip
    # measured: zero 1.00, headland 0.97, GPS lag 0.93 (without the time: 0.72 and 0.16)
    assert recall["zero"] >= 0.95 and recall["headland"] >= 0.9 and recall["lag"] >= 0.85, recall
    lagged = reason[((fault & GPS_LAG) > 0) & (fault & ZERO == 0) & flagged]
    assert (lagged == "position jump").mean() >= 0.6, pd.Series(lagged).value_counts()
    good = fault == 0
    assert (reason[good] == "").mean() >= 0.8  # pass ends cost some good records, by design


def test_time_orders_the_track_whatever_the_file_order(monitored):
    truth, cells, table, folder = monitored
    in_order, shuffled = folder / "in-order.gpkg", folder / "shuffled.gpkg"
    table.to_file(in_order)
    mixed = table.sample(frac=1.0, random_state=3)
    mixed.assign(when=pd.Timestamp("2026-09-01") + pd.to_timedelta(mixed["time_s"], "s")).drop(
        columns="time_s"
    ).to_file(shuffled)
    a = read_truth(in_order, "yield_t_ha", cells, grid_of()).records["reason"]
    b = read_truth(shuffled, "yield_t_ha", cells, grid_of(), time="when").records["reason"]
    np.testing.assert_array_equal(b.to_numpy(), a.to_numpy()[mixed.index.to_numpy()])
    with pytest.raises(InputError, match="no time column 'clock'") as err:
        read_truth(in_order, "yield_t_ha", cells, grid_of(), time="clock")
    assert str(in_order) in str(err.value) and "\n" not in str(err.value)
