"""`tiler yield features|calibrate|predict|potential` end to end, as real subprocesses.

One small synthetic field (60 m at 5 cm, with its known yield, 800 yield-monitor records
and six harvested trial plots from `tiler synthetic --yield`) is segmented and its rows
found once for the module; each command then runs on it. The numbers each command prints
are checked against the files it wrote (read back with pandas, rasterio and json), and
every bad input gives one line and no finished output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from test_cli import assert_one_line_error, tiler

SEED = 1
POINTS, PLOTS = f"field-{SEED}-yield-points.gpkg", f"field-{SEED}-yield-plots.gpkg"
BLOCK = "20m"  # a 60 m field has 9 blocks of 20 m: enough for 5 folds


def ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def labelled(text: str, label: str) -> str:
    """The rest of the one line printed as ``label:  value``."""
    found = re.findall(rf"^{re.escape(label)}:\s+(.*)$", text, flags=re.MULTILINE)
    assert len(found) == 1, (label, text)
    return found[0].strip()


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    """A work folder holding ``synthetic/`` (the field and its yield) and ``run/`` (a
    finished run of it, with its rows in ``run/stand``)."""
    work = tmp_path_factory.mktemp("yield-cli")
    ok(tiler("synthetic", "synthetic", "--extent", "60m", "--pixel-size", "5cm",
             "--yield", 800, "--seeds", SEED, cwd=work))  # fmt: skip
    ok(tiler("run", f"synthetic/field-{SEED}.tif", "run", "--preset", "row-crop-plants", "-q",
             cwd=work))  # fmt: skip
    ok(tiler("rows", "run", "-q", cwd=work))
    return work


@pytest.fixture(scope="module")
def features(field) -> str:
    return ok(tiler("yield", "features", "run", "-q", cwd=field))


@pytest.fixture(scope="module")
def calibrated(field, features) -> str:
    return ok(tiler("yield", "calibrate", "run", "--truth", f"synthetic/{POINTS}", "--value",
                    "yield_t_ha", "--block", BLOCK, "-q", cwd=field))  # fmt: skip


@pytest.fixture(scope="module")
def predicted(field, calibrated) -> str:
    return ok(tiler("yield", "predict", "run", "--model", "run/yield/model", "--fields",
                    f"synthetic/{PLOTS}", "--field-id", "plot", "-q", cwd=field))  # fmt: skip


def test_features_prints_its_cells_and_writes_table_and_raster(field, features):
    cells = gpd.read_parquet(field / "run/yield/cells.parquet")
    first = features.splitlines()[0]
    count, names = re.fullmatch(r"(\d+) cells of 5 m \(100 px\), features: (.*)", first).groups()
    assert int(count) == len(cells)
    # 60 m at 5 cm is 1200 px: 12 x 12 cells of 100 px, each one row of the table
    assert len(cells) == 144
    assert sorted(zip(cells["cell_row"], cells["cell_col"], strict=True)) == [
        (r, c) for r in range(12) for c in range(12)
    ]
    names = names.split(", ")
    assert {"plants", "density_per_ha", "plants_per_row_m", "gap_fraction"} <= set(names)
    assert labelled(features, "table") == "run/yield/cells.parquet"
    assert labelled(features, "raster") == "run/yield/features.tif"
    with rasterio.open(field / "run/yield/features.tif") as ds:
        assert ds.count == len(names)
        assert list(ds.descriptions) == names
        assert ds.res == pytest.approx((5.0, 5.0))
        band = ds.read(names.index("plants") + 1)
    # the raster holds the table's values, cell for cell
    grid = np.full((12, 12), np.nan)
    grid[cells["cell_row"], cells["cell_col"]] = cells["plants"]
    np.testing.assert_allclose(band, grid)
    # the plants of the cells add up to the run's objects that are plants (at most all)
    objects = pd.read_parquet(field / "run/objects.parquet")
    assert 0.9 * len(objects) < cells["plants"].sum() <= len(objects)


def test_calibrate_prints_the_model_json_numbers(field, calibrated):
    folder = field / "run/yield/model"
    assert sorted(p.name for p in folder.iterdir()) == [
        "card.md", "cv.parquet", "model.joblib", "model.json",
    ]  # fmt: skip
    meta = json.loads((folder / "model.json").read_text())
    cv, truth = meta["cv"], meta["truth"]
    flagged = ", ".join(f"{n} {reason}" for reason, n in truth["flagged"].items() if n)
    assert labelled(calibrated, "truth") == f"800 records, left out: {flagged}"
    assert truth["records"] == 800
    assert truth["kept"] + sum(truth["flagged"].values()) == 800
    assert labelled(calibrated, "matched") == f"{cv['n_cells']} cells"
    for name, scores in meta["candidates"].items():
        line = labelled(calibrated, name)
        r2, rmse, bias = re.match(
            r"blocked-CV R² (\S+)  RMSE (\S+) t/ha  bias (\S+)", line
        ).groups()
        assert float(r2) == round(scores["r2"], 3)
        assert float(rmse) == round(scores["rmse"], 3)
        assert float(bias) == round(scores["bias"], 3)
        assert line.endswith("(chosen)") == (name == meta["chosen"])
    assert meta["candidates"][meta["chosen"]]["r2"] == cv["r2"]
    assert float(labelled(calibrated, "random CV").split()[1]) == round(cv["random_r2"], 3)
    assert labelled(calibrated, "model") == "run/yield/model"
    assert cv["block_m"] == 20.0 and cv["folds"] == 5
    # the CV table: one line per matched cell; its R² is the one printed
    table = pd.read_parquet(folder / "cv.parquet")
    assert len(table) == cv["n_cells"]
    card = (folder / "card.md").read_text()
    assert f"{cv['r2']:.3f}" in card
    # the field's yield is known: the blocked-CV R² is real skill, below the noise's ceiling
    with rasterio.open(field / f"synthetic/field-{SEED}-yield.tif") as ds:
        ceiling = float(ds.tags()["best_r2"])
    assert 0.2 < cv["r2"] < ceiling


def _fields_csv_lines(table: pd.DataFrame) -> list[tuple]:
    return [tuple(row) for row in table.itertuples(index=False)]


def test_predict_prints_the_fields_csv_numbers(field, predicted):
    table = pd.read_csv(field / "run/yield/fields.csv")
    assert list(table["plot"]) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    lines = [line for line in predicted.splitlines() if re.match(r"[AB]\d ", line)]
    assert len(lines) == 6
    number = r"([\d,.]+)"
    for line, row in zip(lines, table.itertuples(index=False), strict=True):
        found = re.fullmatch(
            rf"(\S+)\s+{number} t/ha \[{number}, {number}\]  total {number} t "
            rf"\[{number}, {number}\] \(95 % prediction intervals\)",
            line,
        )
        assert found, line
        name, *values = found.groups()
        assert name == row.plot
        expected = [row.yield_mean_t_ha, row.yield_mean_t_ha_low, row.yield_mean_t_ha_high,
                    row.yield_total_t, row.yield_total_t_low, row.yield_total_t_high]  # fmt: skip
        assert [float(v.replace(",", "")) for v in values] == pytest.approx(expected, abs=6e-3)
        assert row.yield_mean_t_ha_low < row.yield_mean_t_ha < row.yield_mean_t_ha_high
    # the total is the mean times the plot's area (t/ha x ha)
    np.testing.assert_allclose(
        table["yield_total_t"], table["yield_mean_t_ha"] * table["area_ha"], atol=0.01
    )
    for name in ("map", "csv", "parquet", "page"):
        path = field / labelled(predicted, name)
        assert path.is_file() and path.stat().st_size > 0, name
    assert labelled(predicted, "map") == "run/yield/yield.tif"
    assert labelled(predicted, "csv") == "run/yield/fields.csv"
    page = (field / "run/yield/yield.html").read_text()
    assert all(plot in page for plot in table["plot"])


def test_yield_map_is_the_plot_means(field, predicted):
    """A plot's mean and area in fields.csv, computed again from yield.tif and the cells'
    imaged area: each cell weighted by its imaged m² times the share of it inside the plot
    (shapely, cell by cell over the raster)."""
    import shapely

    plots = gpd.read_file(field / f"synthetic/{PLOTS}")
    table = pd.read_csv(field / "run/yield/fields.csv").set_index("plot")
    cells = gpd.read_parquet(field / "run/yield/cells.parquet")
    with rasterio.open(field / "run/yield/yield.tif") as ds:
        values = ds.read(1)
        transform = ds.transform
    imaged = np.zeros(values.shape)
    imaged[cells["cell_row"], cells["cell_col"]] = cells["imaged_m2"]
    rows, cols = np.nonzero(np.isfinite(values))
    boxes = shapely.box(*(transform * (cols, rows + 1)), *(transform * (cols + 1, rows)))
    for name, plot in zip(plots["plot"], plots.geometry, strict=True):
        share = shapely.area(shapely.intersection(boxes, plot)) / shapely.area(boxes)
        weights = share * imaged[rows, cols]
        mean = float(np.sum(weights * values[rows, cols]) / np.sum(weights))
        assert mean == pytest.approx(table.loc[name, "yield_mean_t_ha"], abs=1e-3), name
        assert weights.sum() / 1e4 == pytest.approx(table.loc[name, "area_ha"], abs=1e-4)
        assert np.count_nonzero(weights) == table.loc[name, "cells"]


def test_predict_with_plots_in_longitude_latitude_gives_the_same_fields(field, predicted, tmp_path):
    plots = gpd.read_file(field / f"synthetic/{PLOTS}")
    assert plots.crs.to_epsg() != 4326
    lonlat = tmp_path / "plots-4326.gpkg"
    plots.to_crs(4326).to_file(lonlat, driver="GPKG")
    out = tmp_path / "out"
    proc = tiler("yield", "predict", field / "run", "--model", field / "run/yield/model",
                 "--fields", lonlat, "--field-id", "plot", "--out", out, "-q",
                 cwd=field)  # fmt: skip
    ok(proc)
    here = pd.read_csv(field / "run/yield/fields.csv")
    there = pd.read_csv(out / "fields.csv")
    assert list(there.columns) == list(here.columns)
    assert list(there["plot"]) == list(here["plot"])
    assert (there["cells"] == here["cells"]).all()
    numbers = [c for c in here.columns if c not in ("plot", "cells")]
    np.testing.assert_allclose(there[numbers], here[numbers], atol=1.5e-3)


def test_potential_prints_the_csv_numbers(field):
    out = ok(tiler("yield", "potential", "run", "--per-plant", "150g", "--fields",
                   f"synthetic/{PLOTS}", "--field-id", "plot", "-q", cwd=field))  # fmt: skip
    table = pd.read_csv(field / "run/yield/potential.csv")
    assert list(table["plot"]) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    lines = [line for line in out.splitlines() if re.match(r"[AB]\d ", line)]
    for line, row in zip(lines, table.itertuples(index=False), strict=True):
        found = re.fullmatch(
            r"(\S+)\s+potential (\S+) t/ha, lost to gaps (\S+), to uneven spacing (\S+) "
            r"\(estimates\)", line,
        )  # fmt: skip
        assert found, line
        assert found.group(1) == row.plot
        printed = [float(v) for v in found.groups()[1:]]
        expected = [row.potential_t_ha_estimate, row.gap_loss_t_ha_estimate,
                    row.spacing_loss_t_ha_estimate]  # fmt: skip
        assert printed == pytest.approx(expected, abs=6e-3)
    # independently: stand per ha (the plots' stand.csv) x 0.15 kg / 1000
    stand = pd.read_csv(field / "run/yield/stand/stand.csv").set_index("plot")
    np.testing.assert_allclose(
        table["potential_t_ha_estimate"],
        stand.loc[table["plot"], "stand_per_ha"].to_numpy() * 0.15 / 1000, atol=6e-3,
    )  # fmt: skip
    assert labelled(out, "table") == "run/yield/potential.csv"
    page = (field / labelled(out, "page")).read_text()
    assert "estimate" in page


# ---------------------------------------------------------------------------
# Bad inputs: one line, no finished output
# ---------------------------------------------------------------------------


def _shifted(field: Path, tmp: Path) -> Path:
    points = gpd.read_file(field / f"synthetic/{POINTS}")
    path = tmp / "far.gpkg"
    points.set_geometry(points.geometry.translate(10_000, 10_000)).to_file(path, driver="GPKG")
    return path


def _few(field: Path, tmp: Path) -> Path:
    points = gpd.read_file(field / f"synthetic/{POINTS}")
    path = tmp / "few.gpkg"
    points[points["fault"] == 0].head(10).to_file(path, driver="GPKG")
    return path


BAD_TRUTH = {
    "missing": (lambda field, tmp: tmp / "nope.gpkg", "yield_t_ha", "no such truth file"),
    "no column": (lambda field, tmp: field / f"synthetic/{POINTS}", "t_ha", "'t_ha'"),
    "outside": (_shifted, "yield_t_ha", "far.gpkg"),
    "too few": (_few, "yield_t_ha", "too few"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRUTH))
def test_bad_truth_is_one_line_and_no_model(case, field, features, tmp_path):
    make, value, words = BAD_TRUTH[case]
    truth = make(field, tmp_path)
    model = tmp_path / "model"
    proc = tiler("yield", "calibrate", field / "run", "--truth", truth, "--value", value,
                 "--block", BLOCK, "--model", model, "-q", cwd=field)  # fmt: skip
    assert_one_line_error(proc, truth.name, words)
    assert not model.exists()


def test_predict_with_a_folder_that_is_no_model(field, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    proc = tiler("yield", "predict", field / "run", "--model", folder, "--out", out, cwd=field)
    assert_one_line_error(proc, "not-a-model", "not a tiler yield model")
    assert not out.exists()


def test_per_plant_without_a_unit_is_refused(field, tmp_path):
    out = tmp_path / "out"
    proc = tiler("yield", "potential", field / "run", "--per-plant", "0.15", "--out", out,
                 cwd=field)  # fmt: skip
    # a usage error: click's own message, exit 2, one "Error:" line naming the option
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--per-plant" in errors[0] and "0.15kg" in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("cell", ["0m", "-5m"])
def test_cell_not_positive_is_one_line(cell, field, tmp_path):
    out = tmp_path / "out"
    proc = tiler("yield", "features", field / "run", "--cell", cell, "--out", out, cwd=field)
    assert_one_line_error(proc, "cell size")
    assert not out.exists()


def test_missing_run_is_one_line(tmp_path):
    out = tmp_path / "out"
    proc = tiler("yield", "features", tmp_path / "no-run", "--out", out, cwd=tmp_path)
    assert_one_line_error(proc, "no-run")
    assert not out.exists()
