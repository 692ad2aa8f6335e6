"""Tests of the yield model: calibration by spatially blocked CV, the model folder
(tiler.yield_.model, tiler.yield_.blocked_cv, tiler.yield_.card)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
import sklearn
from pyproj import CRS
from sklearn.metrics import mean_squared_error, r2_score
from yield_data import CELL, grid_of, known, monitor_file

from tiler.errors import InputError, OutputError
from tiler.synthetic_yield import correlated_noise
from tiler.yield_ import blocked_cv
from tiler.yield_.cells import CellGrid
from tiler.yield_.model import calibrate, load, save
from tiler.yield_.truth import read_truth


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "monitor.gpkg"
    truth, cells = known()
    monitor_file(truth, path)
    measured = read_truth(path, "yield_t_ha", cells, grid_of())
    return measured, calibrate(cells, measured)


def _r2(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(r2_score(truth, pred))


def test_calibration_recovers_the_known_relation(calibrated):
    measured, cal = calibrated
    truth, cells = known()
    pred = cal.estimator.predict(cells[cal.meta["features"]])
    valid = truth.valid.ravel()
    # the map tracks the noise-free yield of the stand (measured 0.91)
    assert _r2(truth.signal.ravel()[valid], pred[valid]) >= 0.8
    rows = measured.rows
    oracle = _r2(rows["measured"], truth.signal[rows["cell_row"], rows["cell_col"]])
    # the true signal explains 0.42 of the cleaned cell means (1.7 records a cell, monitor
    # noise 0.4 t/ha, field noise 0.5); the blocked CV reaches 0.57: over the oracle, as the
    # headland records left in edge cells lower their means with their cover, which the
    # features see and the signal does not
    assert cal.meta["cv"]["r2"] >= oracle - 0.05
    assert cal.meta["cv"]["r2"] <= truth.best_r2


def test_faults_left_in_cost_the_map_little(calibrated, tmp_path):
    measured, cal = calibrated
    truth, cells = known()
    table = gpd.read_file(measured.path)
    table[table["fault"] == 0].to_file(tmp_path / "clean.gpkg")  # what no filter can reach
    clean = calibrate(cells, read_truth(tmp_path / "clean.gpkg", "yield_t_ha", cells, grid_of()))
    valid = truth.valid.ravel()

    def vs_signal(c) -> float:
        pred = c.estimator.predict(cells[c.meta["features"]])
        return _r2(truth.signal.ravel()[valid], pred[valid])

    # measured 0.914 with the faults left after flagging (28 % of the headland records,
    # 84 % of the GPS-lagged ones), 0.966 from the fault-free records
    assert vs_signal(cal) >= vs_signal(clean) - 0.08


def test_cv_scores_are_those_of_the_cv_table(calibrated):
    measured, cal = calibrated
    cv, meta = cal.cv, cal.meta
    assert list(cv.columns) == ["cell_row", "cell_col", "x", "y", "measured", "predicted_cv",
                                "fold", "block"]  # fmt: skip
    assert meta["cv"]["r2"] == pytest.approx(r2_score(cv["measured"], cv["predicted_cv"]))
    rmse = np.sqrt(mean_squared_error(cv["measured"], cv["predicted_cv"]))
    assert meta["cv"]["rmse"] == pytest.approx(rmse)
    assert meta["cv"]["bias"] == pytest.approx((cv["predicted_cv"] - cv["measured"]).mean())
    # blocks are dealt whole: no block in two folds, and each a square of 10 x 10 cells
    assert (cv.groupby("block")["fold"].nunique() == 1).all()
    assert sorted(cv["fold"].unique()) == [0, 1, 2, 3, 4]
    span = cv.groupby("block")[["cell_row", "cell_col"]].agg(
        lambda v: v.max() // 10 - v.min() // 10
    )
    assert (span.to_numpy() == 0).all()
    assert meta["cv"]["n_cells"] == len(cv) == len(measured.rows)
    assert meta["chosen"] == max(meta["candidates"], key=lambda m: meta["candidates"][m]["r2"])


def _stand_and_nuisance(seed: int, size: int = 50) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Cells whose yield is 8 + 2 x a smooth ``stand`` feature + correlated noise (1.5 t/ha
    over 25 m), with three ``soil_*`` features that are smooth noise unrelated to yield."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    stand = correlated_noise(shape, CELL, 40.0, 1.0, rng)
    noise = correlated_noise(shape, CELL, 25.0, 1.5, rng)
    row, col = np.indices(shape)
    x, y = 500000.0 + (col + 0.5) * CELL, 4100000.0 - (row + 0.5) * CELL
    table = {"cell_row": row, "cell_col": col, "x": x, "y": y, "plants": np.full(shape, 10),
             "canopy_cover_pct": np.full(shape, 50.0),
             "stand": stand + 0.05 * rng.standard_normal(shape)}  # fmt: skip
    for i in range(3):
        table[f"soil_{i}"] = correlated_noise(shape, CELL, 25.0, 1.0, rng)
    flat = {k: v.ravel() for k, v in table.items()}
    boxes = shapely.box(flat["x"] - 2.5, flat["y"] - 2.5, flat["x"] + 2.5, flat["y"] + 2.5)
    return gpd.GeoDataFrame(flat, geometry=boxes, crs="EPSG:32611"), (8 + 2 * stand + noise).ravel()


def test_blocked_cv_is_honest_where_random_cv_is_optimistic(tmp_path):
    cells, value = _stand_and_nuisance(0)
    path = tmp_path / "cells.gpkg"
    gpd.GeoDataFrame({"t_ha": value}, geometry=gpd.points_from_xy(cells["x"], cells["y"]),
                     crs="EPSG:32611").to_file(path)  # fmt: skip
    transform = (CELL, 0.0, 500000.0, 0.0, -CELL, 4100000.0)
    grid = CellGrid(1, CELL, CELL, (50, 50), (50, 50), transform, CRS("EPSG:32611").to_wkt())
    cal = calibrate(cells, read_truth(path, "t_ha", cells, grid), models=("gbm",))
    other, other_value = _stand_and_nuisance(100)  # an independent field of the same kind
    held_out = _r2(other_value, cal.estimator.predict(other[cal.meta["features"]]))
    scores = cal.meta["candidates"]["gbm"]
    # measured: random CV 0.75, held out 0.51, blocked CV 0.53: boosting learns the noise
    # from each cell's neighbours through the soil features' values, which random CV rewards
    assert scores["random_r2"] - held_out >= 0.15
    assert abs(scores["r2"] - held_out) <= 0.08
    assert cal.meta["cv"]["random_r2"] == scores["random_r2"]


def test_folds_take_whole_blocks_evenly():
    rng = np.random.default_rng(5)
    row, col = rng.integers(0, 60, 2000), rng.integers(0, 60, 2000)
    block = blocked_cv.blocks(row, col, 5.0, 50.0)
    fold = blocked_cv.assign_folds(block, 5, seed=3)
    assert pd.Series(fold).groupby(block).nunique().max() == 1
    brute = (row // 10) * 1000 + col // 10  # the same squares, numbered another way
    assert len(np.unique(block)) == len(np.unique(brute)) == len(np.unique(block * 7919 + brute))
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= np.bincount(np.unique(block, return_inverse=True)[1]).max()
    np.testing.assert_array_equal(fold, blocked_cv.assign_folds(block, 5, seed=3))


def test_residual_covariance_fits_a_known_exponential():
    rng = np.random.default_rng(0)
    xy = np.stack(np.meshgrid(np.arange(30.0), np.arange(30.0)), -1).reshape(-1, 2) * 5.0
    h = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    cov = 0.3 * np.eye(len(xy)) + 1.0 * np.exp(-h / 20.0)  # nugget 0.3, sill 1, range 20 m
    chol = np.linalg.cholesky(cov)
    fits = [blocked_cv.fit_covariance(xy, chol @ rng.standard_normal(len(xy)), 5.0)
            for _ in range(8)]  # fmt: skip
    total = np.mean([f["nugget"] + f["partial_sill"] for f in fits])
    assert total == pytest.approx(1.3, rel=0.25)
    assert np.median([f["nugget"] for f in fits]) == pytest.approx(0.3, abs=0.2)
    assert 8.0 <= np.median([f["range_m"] for f in fits]) <= 40.0


def test_save_load_round_trip(calibrated, tmp_path):
    _, cal = calibrated
    _, cells = known()
    folder = save(cal, tmp_path / "M")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["M"]  # no partial folder left
    assert sorted(p.name for p in folder.iterdir()) == ["card.md", "cv.parquet", "model.joblib",
                                                        "model.json"]  # fmt: skip
    estimator, meta = load(folder)
    assert meta == json.loads(json.dumps(cal.meta))
    x = cells[meta["features"]]
    np.testing.assert_array_equal(estimator.predict(x), cal.estimator.predict(x))
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "cv.parquet"), cal.cv)
    card = (folder / "card.md").read_text()
    chosen = meta["candidates"][meta["chosen"]]
    assert f"| {meta['chosen']} (chosen) | {chosen['r2']:.3f} | {chosen['rmse']:.3f} |" in card
    flagged = meta["truth"]["flagged"]
    assert f"- records: 2000, kept {2000 - sum(flagged.values())}; left out: " in card
    assert f"{flagged['zero']} zero, {flagged['outlier']} outlier" in card
    with pytest.raises(OutputError, match="already exists"):
        save(cal, folder)
    assert save(cal, folder, overwrite=True) == folder
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a tiler yield model folder: refusing"):
        save(cal, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"


def test_load_refuses_what_is_not_a_model(calibrated, tmp_path):
    _, cal = calibrated
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text('{"format": "something else"}')
    for bad in (tmp_path, tmp_path / "other"):
        with pytest.raises(InputError, match=f"^{bad}: not a tiler yield model"):
            load(bad)
    folder = save(cal, tmp_path / "M")
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "sklearn": "0.24.2"}))
    with pytest.raises(InputError) as err:
        load(folder)
    assert str(err.value) == (
        f"{folder}: saved with scikit-learn 0.24.2, this is {sklearn.__version__}: "
        "calibrate it again"
    )


def test_plots_calibrate_one_row_per_plot(tmp_path):
    truth, cells = known()
    plots = gpd.read_file(_plot_file(tmp_path, truth))
    measured = read_truth(tmp_path / "plots.gpkg", "t_ha", cells, grid_of())
    cal = calibrate(cells, measured)
    kept = measured.records["reason"].to_numpy() == ""
    assert list(cal.cv["plot"]) == list(np.flatnonzero(kept))
    np.testing.assert_allclose(cal.cv["measured"], plots["t_ha"][kept])
    assert cal.meta["truth"]["kind"] == "polygons" and cal.meta["cv"]["n_cells"] == kept.sum()


def _plot_file(tmp_path, truth):
    """48 plots (6 x 8) whose yield is the mean of the known yield of the cells they cover."""
    from tiler.synthetic import plots

    grid = plots(truth.field, rows=6, cols=8, gap=0.01)
    b = grid.geometry.bounds.to_numpy()
    x0, y0 = truth.field.origin_xy
    c0, c1 = np.floor((b[:, 0] - x0) / CELL).astype(int), np.ceil((b[:, 2] - x0) / CELL).astype(int)
    r0, r1 = np.floor((y0 - b[:, 3]) / CELL).astype(int), np.ceil((y0 - b[:, 1]) / CELL).astype(int)
    y = truth.yield_t_ha
    grid["t_ha"] = [np.nanmean(y[a:b_, c:d]) for a, b_, c, d in zip(r0, r1, c0, c1, strict=True)]
    grid.to_file(tmp_path / "plots.gpkg")
    return tmp_path / "plots.gpkg"
