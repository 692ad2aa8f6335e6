"""tiler.yield_.prediction / intervals / page: the yield map, per-field yield with intervals.

Inputs are built here per the issue-20 contract: a features table from a synthetic
field's known yield grids (tiler.synthetic_yield) and a model folder holding a real
scikit-learn Pipeline saved with joblib.
"""

from __future__ import annotations

import json
import re

import geopandas as gpd
import joblib
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import sklearn
from shapely.geometry import Polygon, box
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tiler.errors import InputError, TilerWarning
from tiler.io.grid_raster import cells_transform
from tiler.report.fields import load_fields
from tiler.synthetic import SyntheticField
from tiler.synthetic_yield import yield_truth
from tiler.yield_ import intervals, page
from tiler.yield_.model import load
from tiler.yield_.outputs import write_outputs
from tiler.yield_.prediction import (
    field_yield,
    predict_cells,
    write_fields,
    write_yield_map,
)

CELL = 5.0
PIXEL = 0.05
K = round(CELL / PIXEL)
FEATURES = ["density_per_ha", "object_area_m2", "gap_fraction"]
RESIDUALS = {"sd": 0.6, "nugget": 0.04, "partial_sill": 0.32, "range_m": 20.0, "q95_abs": 1.1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(features table, estimator, meta, model folder, grid shape, cell transform, truth)."""
    field = SyntheticField.at(PIXEL, (80.0, 120.0), seed=3)
    truth = yield_truth(field, CELL, seed=1)
    shape = truth.signal.shape
    rows, cols = np.nonzero(truth.cover > 0)
    x0, y0 = field.origin_xy
    geometry = [box(x0 + c * CELL, y0 - (r + 1) * CELL, x0 + (c + 1) * CELL, y0 - r * CELL)
                for r, c in zip(rows, cols, strict=True)]  # fmt: skip
    cover = truth.cover[rows, cols]
    cells = gpd.GeoDataFrame({
        "cell_row": rows.astype(np.int32), "cell_col": cols.astype(np.int32),
        "x": x0 + (cols + 0.5) * CELL, "y": y0 - (rows + 0.5) * CELL,
        "imaged_m2": cover * CELL * CELL, "imaged_fraction": cover,
        "density_per_ha": truth.density[rows, cols],
        "object_area_m2": np.pi * (0.1 * truth.size[rows, cols]) ** 2,
        "gap_fraction": truth.gap[rows, cols],
    }, geometry=geometry, crs=field.crs)  # fmt: skip
    y = truth.yield_t_ha[rows, cols]
    estimator = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), Ridge(alpha=1.0)
    ).fit(cells[FEATURES], y)  # as tiler's imputes
    folder = tmp_path_factory.mktemp("model")
    joblib.dump(estimator, folder / "model.joblib")
    ranges = {n: [float(cells[n].min()), float(cells[n].max())] for n in FEATURES}
    predicted = estimator.predict(cells[FEATURES])
    meta = {
        "format": "tiler-yield-model/1", "value": "yield_t_ha", "unit": "t/ha",
        "features": FEATURES, "chosen": "ridge",
        "candidates": {"ridge": {"r2": 0.61, "rmse": 0.6, "bias": 0.02}},
        "cv": {"r2": 0.61, "rmse": 0.6, "bias": 0.05, "folds": 5, "block_m": 25.0,
               "n_cells": len(cells), "n_records": 900, "random_r2": 0.7},
        "residuals": RESIDUALS, "cell_m": CELL, "crs_wkt": cells.crs.to_wkt(),
        "truth": {"path": "truth.gpkg", "kind": "points", "records": 900,
                  "flagged": {"headland": 12}},
        "sklearn": sklearn.__version__, "tiler": "test", "ranges": ranges,
    }  # fmt: skip
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "card.md").write_text("# Yield model\n\nRidge on three features.\n")
    pd.DataFrame({"cell_row": rows, "cell_col": cols, "x": cells["x"], "y": cells["y"],
                  "measured": y, "predicted_cv": predicted, "fold": rows % 5,
                  "block": rows // 5}).to_parquet(folder / "cv.parquet")  # fmt: skip
    transform = cells_transform(tuple(field.transform), K)
    return cells, estimator, meta, folder, shape, transform


def test_model_folder_is_read_and_bad_ones_are_one_line(setup, tmp_path):
    cells, estimator, meta, folder, *_ = setup
    loaded, read_meta = load(folder)
    assert read_meta == meta
    np.testing.assert_array_equal(
        loaded.predict(cells[FEATURES]), estimator.predict(cells[FEATURES])
    )
    with pytest.raises(InputError, match="no readable model.json"):
        load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    (tmp_path / "model.joblib").write_bytes(b"junk")
    with pytest.raises(InputError, match="no readable model.json"):
        load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({**meta}))
    with pytest.raises(InputError, match="model.joblib: not a loadable model") as err:
        load(tmp_path)
    assert "\n" not in str(err.value)


def test_predict_cells_missing_features_and_ranges(setup):
    cells, estimator, meta, *_ = setup
    out = predict_cells(cells, estimator, meta)
    np.testing.assert_allclose(out["yield"], estimator.predict(cells[FEATURES]))
    assert out.attrs["missing"] == 0 and out.attrs["outside_range"] == 0
    holes = cells.copy()
    holes.loc[[0, 5, 9], "object_area_m2"] = np.nan
    holes.loc[3, "density_per_ha"] = holes["density_per_ha"].max() * 3  # beyond training
    with pytest.warns(TilerWarning, match="1 of .* outside the range"):
        out = predict_cells(holes, estimator, meta)
    assert out.attrs["missing"] == 3  # imputed by the model, as it was fitted
    np.testing.assert_allclose(out["yield"], estimator.predict(holes[FEATURES]))
    assert out["outside_range"].sum() == 1 and out["outside_range"].iloc[3]
    bare = cells.assign(plants=7, canopy_cover_pct=30.0)
    bare.loc[[2, 4], "plants"] = 0  # no plant: nothing to harvest
    bare.loc[6, "canopy_cover_pct"] = 0.5  # under 1 % cover: no crop either
    out = predict_cells(bare, estimator, meta)
    assert out.attrs["no_crop"] == 3 and (out["yield"].iloc[[2, 4, 6]] == 0).all()
    assert not out["crop"].iloc[[2, 4, 6]].any() and out["crop"].sum() == len(cells) - 3
    with pytest.raises(InputError, match="lacks the model's features gap_fraction"):
        predict_cells(cells.drop(columns="gap_fraction"), estimator, meta)


def test_yield_map_values_at_cell_centres(setup, tmp_path):
    cells, estimator, meta, _, shape, transform = setup
    predicted = predict_cells(cells, estimator, meta)
    path = write_yield_map(tmp_path / "yield.tif", predicted, shape, transform,
                           cells.crs.to_wkt(), meta)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["yield.tif"]  # no partial left
    with rasterio.open(path) as ds:
        assert ds.shape == shape and ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.descriptions == ("yield_t_ha",)
        assert ds.tags(1)["unit"] == "t/ha" and ds.tags()["kind"] == "predicted"
        assert ds.crs == rasterio.crs.CRS.from_user_input(cells.crs)
        sampled = np.array([v[0] for v in ds.sample(zip(cells["x"], cells["y"], strict=True))])
        grid = ds.read(1)
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"), ds.driver
    np.testing.assert_array_equal(sampled, predicted["yield"].to_numpy(np.float32))
    empty = np.ones(shape, bool)
    empty[cells["cell_row"], cells["cell_col"]] = False
    assert np.isnan(grid[empty]).all() and empty.any()
    assert layout == ("COG", "GTiff")


def _brute_force(cells, geometry, residuals, cell_m):
    """Per field by hand: every cell intersected one by one; the full double sum."""
    weights, values, centres = [], [], []
    columns = ("geometry", "yield", "imaged_m2", "cell_row", "cell_col")
    for polygon, value, imaged, r, c in zip(*(cells[n] for n in columns), strict=True):
        part = polygon.intersection(geometry).area / polygon.area
        if part > 0 and np.isfinite(value):
            weights.append(part * imaged)
            values.append(value)
            centres.append((c * cell_m, r * cell_m))
    w, v, c = np.array(weights), np.array(values), np.array(centres)
    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    cov = np.where(d == 0, residuals["nugget"] + residuals["partial_sill"],
                   residuals["partial_sill"] * np.exp(-d / residuals["range_m"]))  # fmt: skip
    variance = w @ cov @ w / w.sum() ** 2
    return w.sum() / 1e4, (w @ v) / w.sum(), variance, len(w)


@pytest.fixture(scope="module")
def fields_file(setup, tmp_path_factory):
    cells = setup[0]
    x0, y0, x1, y1 = cells.total_bounds
    a = Polygon([(x0 + 7, y0 + 9), (x0 + 61, y0 + 4), (x0 + 55, y1 - 13), (x0 + 3, y1 - 21)])
    b = box(x0 + 64.3, y0 + 20.7, x1 + 30, y1 - 2.2)  # reaches beyond the image
    frame = gpd.GeoDataFrame({"name": ["A", "B"]}, geometry=[a, b], crs=cells.crs).to_crs(4326)
    path = tmp_path_factory.mktemp("fields") / "fields.gpkg"
    frame.to_file(path)
    return path


def test_field_yield_against_shapely(setup, fields_file):
    cells, estimator, meta, *_ = setup
    predicted = predict_cells(cells, estimator, meta)
    predicted.loc[predicted.index[40], "yield"] = np.nan  # a cell without prediction
    fields, id_name = load_fields(
        fields_file, "name", cells.crs.to_wkt(), tuple(cells.total_bounds)
    )
    table = field_yield(predicted, fields, id_name, meta)
    assert list(table.columns) == [
        "name", "area_ha", "yield_mean_t_ha", "yield_mean_t_ha_low", "yield_mean_t_ha_high",
        "yield_total_t", "yield_total_t_low", "yield_total_t_high", "cells"]  # fmt: skip
    for (_, row), geometry in zip(table.iterrows(), fields.geometry, strict=True):
        area, mean, variance, n = _brute_force(predicted, geometry, RESIDUALS, CELL)
        half = 1.959963984540054 * np.sqrt(variance + meta["cv"]["bias"] ** 2)
        assert row["cells"] == n
        np.testing.assert_allclose(row["area_ha"], area, rtol=1e-9)
        np.testing.assert_allclose(row["yield_mean_t_ha"], mean, rtol=1e-9)
        np.testing.assert_allclose(row["yield_total_t"], mean * area, rtol=1e-9)
        np.testing.assert_allclose(row["yield_mean_t_ha_high"] - mean, half, rtol=1e-9)
        np.testing.assert_allclose(mean - row["yield_mean_t_ha_low"], half, rtol=1e-9)
        np.testing.assert_allclose(row["yield_total_t_high"] - mean * area, half * area, rtol=1e-9)
    # subsampling the double sum (a limit below the field's cells) moves the interval little
    coarse = field_yield(predicted, fields, id_name, meta, limit=60)
    assert (table["cells"] > 60).all()
    assert "drawn at random with a fixed seed" in page.subsampled(coarse)
    assert page.subsampled(table) == ""
    np.testing.assert_allclose(coarse["yield_mean_t_ha_high"], table["yield_mean_t_ha_high"],
                               rtol=0.02)  # fmt: skip


def test_bad_fields_file_is_one_line(setup, tmp_path):
    cells = setup[0]
    bad = tmp_path / "fields.geojson"
    bad.write_text("{ this is not geojson")
    with pytest.raises(InputError, match=r"fields.geojson: not a readable vector file") as err:
        load_fields(bad, None, cells.crs.to_wkt(), tuple(cells.total_bounds))
    assert "\n" not in str(err.value)


def _exponential_field(shape, cell_m, res):
    rows, cols = np.indices(shape)
    xy = np.column_stack([cols.ravel(), rows.ravel()]) * cell_m
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    cov = res.partial_sill * np.exp(-d / res.range_m) + res.nugget * (d == 0)
    return xy, np.linalg.cholesky(cov + 1e-10 * np.eye(len(xy)))


def test_interval_coverage_with_correlated_residuals():
    """Residual fields drawn with a known exponential covariance: the field mean's 95 %
    interval covers the true mean 93-97 % of the time; the iid one far less often."""
    res = intervals.Residuals(nugget=0.05, partial_sill=0.3, range_m=25.0)
    shape, cell_m = (36, 36), 5.0
    xy, chol = _exponential_field(shape, cell_m, res)
    cells = shapely.box(xy[:, 0] - 2.5, xy[:, 1] - 2.5, xy[:, 0] + 2.5, xy[:, 1] + 2.5)
    field = Polygon([(11, 8), (150, 22), (163, 140), (40, 171), (2, 90)])
    tree = shapely.STRtree(cells)
    from tiler.yield_.prediction import field_weights

    hit, w = field_weights(tree, np.full(len(cells), cell_m**2), field)
    assert len(hit) > 500 and (w < cell_m**2).any()  # partial cells at the edge
    variance = intervals.mean_variance(xy[hit], w, res, limit=400)  # subsampled
    exact = intervals.mean_variance(xy[hit], w, res, limit=len(hit))
    np.testing.assert_allclose(variance, exact, rtol=0.03)
    half = intervals.half_width(variance, res)
    naive = intervals.iid_half_width(len(hit), res)
    draws = chol @ np.random.default_rng(1).standard_normal((len(xy), 4000))
    errors = w @ draws[hit] / w.sum()  # the field mean's error in each simulation
    np.testing.assert_allclose(errors.var(), exact, rtol=0.06)  # 4000 draws: SE of var 2 %
    covered = np.mean(np.abs(errors[:400]) <= half)  # 400 simulations: SE 1.1 %
    assert 0.93 <= covered <= 0.97, covered
    assert np.mean(np.abs(errors[:400]) <= naive) < 0.6  # iid intervals are far too narrow
    assert half > 3 * naive


def test_page_and_fields_files(setup, fields_file, tmp_path):
    cells, estimator, meta, folder, shape, transform = setup
    predicted = predict_cells(cells, estimator, meta)
    fields, id_name = load_fields(
        fields_file, "name", cells.crs.to_wkt(), tuple(cells.total_bounds)
    )
    table = field_yield(predicted, fields, id_name, meta)
    csv_path, parquet_path = write_fields(tmp_path, table, fields)
    csv = pd.read_csv(csv_path)
    np.testing.assert_allclose(csv["yield_mean_t_ha"], table["yield_mean_t_ha"], atol=5e-4)
    np.testing.assert_allclose(csv["yield_total_t_high"], table["yield_total_t_high"], atol=5e-3)
    assert (csv["yield_mean_t_ha"] == csv["yield_mean_t_ha"].round(3)).all()
    back = gpd.read_parquet(parquet_path)
    assert back.crs == fields.crs and list(back["name"]) == ["A", "B"]
    np.testing.assert_allclose(back["area_ha"], table["area_ha"])
    html = page.render(title="test field", cells=predicted, shape=shape,
                       transform_cells=transform, fields=fields, id_name=id_name, table=table,
                       meta=meta, cv=pd.read_parquet(folder / "cv.parquet"),
                       card=(folder / "card.md").read_text())  # fmt: skip
    path = page.write(tmp_path / "yield.html", html)
    text = path.read_text()
    assert text.count("data:image/png;base64,") == 2 and "http" not in text.replace(
        "http-equiv", ""
    )
    assert "95 % prediction intervals from the spatially blocked cross-validation" in text
    assert "R² 0.610" in text and "bias (predicted − measured) +0.050 t/ha" in text
    cells_html = re.findall(r"<tr><td>(A|B)</td>(.*?)</tr>", text)
    assert [c[0] for c in cells_html] == ["A", "B"]
    for (_, row), (_, rest) in zip(table.iterrows(), cells_html, strict=True):
        numbers = [float(v.replace("\u00a0", "")) for v in re.findall(r"<td>([^<]*)</td>", rest)]
        expected = [row["area_ha"], row["yield_mean_t_ha"], row["yield_mean_t_ha_low"],
                    row["yield_mean_t_ha_high"], row["yield_total_t"], row["yield_total_t_low"],
                    row["yield_total_t_high"], row["cells"]]  # fmt: skip
        np.testing.assert_allclose(numbers, expected, atol=0.006)


def test_write_outputs_footprint_and_bad_inputs(setup, tmp_path):
    cells, estimator, meta, folder, shape, transform = setup
    field_transform = (transform[0] / K, 0.0, transform[2], 0.0, transform[4] / K, transform[5])
    image_shape = (shape[0] * K, shape[1] * K)
    common = dict(transform=field_transform, image_shape=image_shape, k=K,
                  crs_wkt=cells.crs.to_wkt())  # fmt: skip
    bad = tmp_path / "bad.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(InputError, match="bad.gpkg: not a readable vector file") as err:
        write_outputs(tmp_path / "out", cells, folder, fields=bad, **common)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    wrong = cells.copy()
    wrong.attrs["cell_m"] = 10.0
    with pytest.raises(InputError, match="calibrated on 5 m cells, the features are of 10 m"):
        write_outputs(tmp_path / "out", wrong, folder, **common)
    done = write_outputs(tmp_path / "out", cells, folder, **common)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "fields.csv", "fields.parquet", "yield.html", "yield.tif"]  # fmt: skip
    y = estimator.predict(cells[FEATURES])
    w = cells["imaged_m2"].to_numpy()
    row = pd.read_csv(done.paths["csv"]).iloc[0]
    assert row["field"] == "footprint" and row["cells"] == len(cells)
    np.testing.assert_allclose(row["yield_mean_t_ha"], w @ y / w.sum(), atol=5e-4)
    np.testing.assert_allclose(row["area_ha"], w.sum() / 1e4, atol=5e-5)
    np.testing.assert_allclose(row["yield_total_t"], w @ y / 1e4, atol=5e-3)
    with rasterio.open(done.paths["map"]) as ds:
        assert ds.transform.almost_equals(rasterio.Affine(*transform))
    assert "footprint" in done.paths["page"].read_text()
