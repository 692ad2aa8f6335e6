"""Tests of reading measured yield, flagging its faults and matching it to cells
(tiler.yield_.truth, tiler.yield_.faults), on real GeoPackage / GeoJSON / CSV files."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from yield_data import CELL, FIELD, grid_of, known, monitor_file, truth_of

from tiler.errors import InputError
from tiler.synthetic import plots
from tiler.synthetic_yield import GPS_LAG, HEADLAND, ZERO
from tiler.yield_.truth import MIN_ROWS, read_truth


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "monitor.gpkg"
    truth, cells = known()
    pts = monitor_file(truth, path)
    return path, pts, read_truth(path, "yield_t_ha", cells, grid_of())


def test_faults_flag_zero_and_headland_records(monitor):
    _, pts, truth = monitor
    reason, fault = truth.records["reason"].to_numpy(), pts["fault"]
    flagged = reason != ""
    recall = {name: flagged[(fault & bit) > 0].mean() for name, bit in
              (("zero", ZERO), ("headland", HEADLAND), ("lag", GPS_LAG))}  # fmt: skip
    precision = (fault[flagged] > 0).mean()  # flagged records that had a fault
    # measured: zero 1.00, headland 0.72 (the rest lie in edge cells with crop in them),
    # GPS lag 0.16 (a 4 m shift inside the crop changes little), precision 0.99
    assert recall["zero"] >= 0.95 and recall["headland"] >= 0.65, recall
    assert precision >= 0.95
    assert set(reason[(fault & ZERO) > 0]) <= {"zero", "no crop", "outside"}
    counts = pd.Series(reason[flagged]).value_counts().to_dict()
    assert {r: n for r, n in truth.flagged.items() if n} == counts


def test_points_are_averaged_per_cell(monitor):
    _, pts, truth = monitor
    x0, y0 = FIELD.origin_xy
    kept = truth.records["reason"].to_numpy() == ""
    direct = pd.DataFrame({
        "cell_row": np.floor((y0 - pts["y"]) / CELL).astype(int)[kept],
        "cell_col": np.floor((pts["x"] - x0) / CELL).astype(int)[kept],
        "v": pts["yield_t_ha"][kept],
    }).groupby(["cell_row", "cell_col"])["v"].agg(["mean", "size"]).reset_index()  # fmt: skip
    rows = truth.rows
    np.testing.assert_array_equal(rows[["cell_row", "cell_col"]], direct[["cell_row", "cell_col"]])
    np.testing.assert_allclose(rows["measured"], direct["mean"])
    np.testing.assert_array_equal(rows["n"], direct["size"])
    assert rows["n"].sum() == kept.sum()
    _, cells = known()
    at = rows["cell_row"] * truth_of().signal.shape[1] + rows["cell_col"]
    np.testing.assert_allclose(rows["density_per_ha"], cells["density_per_ha"].to_numpy()[at])


def test_plots_take_area_weighted_features(tmp_path):
    truth, cells = known()
    grid = plots(FIELD, rows=6, cols=6, gap=0.02)
    centre = grid.geometry.centroid
    grid["t_ha"] = truth.at(centre.x.to_numpy(), centre.y.to_numpy())
    path = tmp_path / "plots.gpkg"
    grid.to_file(path)
    got = read_truth(path, "t_ha", cells, grid_of())
    assert got.kind == "polygons"
    # the overlap of axis-aligned rectangles with every cell of the grid, brute force
    x0, y0, x1, y1 = (np.asarray(v)[:, None] for v in grid.geometry.bounds.T.to_numpy())
    cx, cy = cells["x"].to_numpy()[None], cells["y"].to_numpy()[None]
    w = np.clip(np.minimum(x1, cx + CELL / 2) - np.maximum(x0, cx - CELL / 2), 0, None) * np.clip(
        np.minimum(y1, cy + CELL / 2) - np.maximum(y0, cy - CELL / 2), 0, None
    )
    np.testing.assert_allclose(w.sum(1), shapely.area(grid.geometry.to_numpy()))
    crop = (cells["canopy_cover_pct"].to_numpy() >= 1) & (cells["plants"].to_numpy() > 0)
    keep = (w * crop).sum(1) > 0.5 * w.sum(1)  # a plot mostly on the crop
    assert got.flagged["no crop"] == (~keep).sum() == 1  # the corner plot off the footprint
    np.testing.assert_array_equal(got.rows["plot"], np.flatnonzero(keep))
    for name in ("density_per_ha", "gap_fraction", "object_area_m2"):
        v = cells[name].to_numpy()[None]
        ok = np.isfinite(v)
        expect = (w * np.where(ok, v, 0)).sum(1) / (w * ok).sum(1)
        np.testing.assert_allclose(got.rows[name], expect[keep], rtol=1e-9)
    np.testing.assert_allclose(got.rows["measured"], grid["t_ha"][keep])


def test_another_crs_and_csv_give_the_same_rows(monitor, tmp_path):
    path, _, truth = monitor
    _, cells = known()
    table = gpd.read_file(path)
    lonlat = tmp_path / "monitor.geojson"
    table.to_crs("EPSG:4326").to_file(lonlat)
    csv = tmp_path / "monitor.csv"
    table.assign(x=table.geometry.x, y=table.geometry.y).drop(columns="geometry").to_csv(csv)
    for other in (lonlat, csv):
        again = read_truth(other, "yield_t_ha", cells, grid_of())
        pd.testing.assert_frame_equal(again.rows, truth.rows, rtol=1e-9)


def _message(path, value="yield_t_ha", cells=None) -> str:
    with pytest.raises(InputError) as err:
        read_truth(path, value, known()[1] if cells is None else cells, grid_of())
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    return text


def _points(tmp_path, name, **columns) -> gpd.GeoDataFrame:
    x0, y0 = FIELD.origin_xy
    n = len(next(iter(columns.values())))
    xy = np.random.default_rng(0).uniform(20, 180, (2, n))
    table = gpd.GeoDataFrame(columns, geometry=gpd.points_from_xy(x0 + xy[0], y0 - xy[1]),
                             crs=FIELD.crs)  # fmt: skip
    return table


def test_bad_truth_files_get_one_line(tmp_path):
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage at all")
    assert "cannot read the truth file" in _message(garbage)
    assert "no such truth file" in _message(tmp_path / "absent.gpkg")
    pts = _points(tmp_path, "p", yield_t_ha=np.full(50, 8.0), other=np.arange(50))
    good = tmp_path / "good.gpkg"
    pts.to_file(good)
    assert "no column 'Yield' (it has: yield_t_ha, other)" in _message(good, "Yield")
    words = pts.assign(yield_t_ha=["8.5"] * 48 + ["abc", "n/a"])
    path = tmp_path / "words.gpkg"
    words.to_file(path)
    assert "column 'yield_t_ha' has 2 non-numeric values (e.g. 'abc')" in _message(path)
    mixed = pts.copy()
    mixed.loc[:4, "geometry"] = mixed.geometry[:5].buffer(2.0)
    path = tmp_path / "mixed.geojson"
    mixed.to_file(path)
    assert "mixed geometry kinds (45 Point, 5 Polygon)" in _message(path)
    path = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        pts.set_crs(None, allow_override=True).to_file(path)
    assert "has no CRS" in _message(path)
    path = tmp_path / "away.gpkg"
    pts.set_geometry(pts.geometry.translate(10_000, 0)).to_file(path)
    text = _message(path)
    x0, y0 = FIELD.origin_xy
    assert f"all 50 truth records fall outside the image (image x {x0:.6g}..{x0 + 200:.6g}" in text
    path = tmp_path / "few.gpkg"
    pts.iloc[:20].to_file(path)
    text = _message(path)
    assert "too few usable truth cells: 20 in" in text
    assert f"at least {MIN_ROWS} cells in 5 blocks are needed" in text


def test_too_few_after_filtering_counts_what_was_left_out(tmp_path):
    x0, y0 = FIELD.origin_xy
    v = np.r_[np.full(33, 8.0), np.zeros(30)]  # 28 usable records: too few
    xy = np.random.default_rng(1).uniform(40, 160, (2, v.size))  # inside the footprint
    outside = np.r_[np.zeros(28, bool), np.ones(5, bool), np.zeros(30, bool)]
    xy[0, outside] += 1000
    path = tmp_path / "zeros.gpkg"
    gpd.GeoDataFrame({"y": v}, geometry=gpd.points_from_xy(x0 + xy[0], y0 - xy[1]),
                     crs=FIELD.crs).to_file(path)  # fmt: skip
    text = _message(path, "y")
    usable = ~outside[:33]
    cells = {(int(yy // CELL), int(xx // CELL)) for xx, yy in xy[:, :33][:, usable].T}
    assert f"too few usable truth cells: {len(cells)} in" in text
    assert "records left out: 5 outside, 30 zero)" in text
