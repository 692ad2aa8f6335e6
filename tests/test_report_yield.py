"""``tiler report --yield-model``: the yield per field in the report's table and page.

A real run on a synthetic field with known yield (``tiler synthetic --yield``: the
orthomosaic, yield-monitor points, harvested plots), a model calibrated on the
monitor points (:func:`tiler.yield_.calibrate`), then the report over the plots
with the model. The report's yield columns are checked against ``tiler yield
predict``'s own fields.csv for the same plots (the other command, another
process), its yield map against that command's, the page's table against the
CSV (parsed back with ``html.parser``), the summary card against the area-
weighted mean computed here with pandas, and the calibration plot decoded.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from matplotlib.image import imread
from test_cli import assert_one_line_error, tiler

import tiler as api
from tiler import yield_
from tiler.report import build

UNIT_COLUMNS = ["yield_mean_t_ha", "yield_mean_t_ha_low", "yield_mean_t_ha_high",
                "yield_total_t", "yield_total_t_low", "yield_total_t_high"]  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """The synthetic field, its run, a model calibrated on the monitor points, the report
    with that model and ``tiler yield predict``'s files for the same plots."""
    folder = tmp_path_factory.mktemp("report-yield")
    done = tiler("synthetic", folder, "--extent", "60m", "--pixel-size", "5cm", "--seeds", "2",
                 "--yield", "800", cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = folder / "out"
    api.run(folder / "field-2.tif", run)
    calibrated = yield_.calibrate(
        run, folder / "field-2-yield-points.gpkg", "yield_t_ha", block=20.0
    )  # a 60 m field: 9 blocks for the folds
    plots = folder / "field-2-yield-plots.gpkg"
    warned: list[str] = []
    report = build(run, plots, "plot", folder / "report", yield_model=calibrated.folder,
                   warn=warned.append)  # fmt: skip
    predicted = tiler("yield", "predict", run, "--model", calibrated.folder, "--fields", plots,
                      "--field-id", "plot", "--out", folder / "predicted", cwd=folder)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    return {"run": run, "model": calibrated.folder, "plots": plots, "report": report,
            "predicted": folder / "predicted", "warned": warned,
            "stderr": predicted.stderr}  # fmt: skip


def test_the_yield_columns_are_tiler_yield_predicts(made):
    shown = pd.read_csv(made["report"].csv)
    other = pd.read_csv(made["predicted"] / "fields.csv")
    assert list(shown["plot"]) == list(other["plot"]) == ["A1", "A2", "A3", "B1", "B2", "B3"]
    for name in UNIT_COLUMNS:
        np.testing.assert_array_equal(shown[name].to_numpy(), other[name].to_numpy(), name)
    assert shown["yield_mean_t_ha"].between(1, 20).all()  # t/ha of a crop, not a unit slip
    assert (shown["yield_mean_t_ha_low"] < shown["yield_mean_t_ha"]).all()
    assert (shown["yield_total_t_high"] > shown["yield_total_t"]).all()
    # before the geometry in the GeoParquet, unrounded there
    table = pd.read_parquet(made["report"].parquet)
    assert list(table.columns[-7:]) == [*UNIT_COLUMNS, "geometry"]
    np.testing.assert_allclose(table["yield_total_t"], shown["yield_total_t"], atol=0.005)
    assert not (table["yield_total_t"] == table["yield_total_t"].round(2)).all()


def test_the_yield_columns_against_an_overlay_of_the_yield_map(made):
    """Brute force: every cell of yield.tif as a polygon from the map's own transform,
    intersected with the plots by geopandas' overlay; its weight is its imaged area
    (the run's cells table) times the share of it inside the plot."""
    cells = gpd.read_parquet(made["run"] / "yield" / "cells.parquet")
    with rasterio.open(made["report"].yield_.map_path) as src:
        grid, t, crs = src.read(1), src.transform, src.crs
    r, c = cells["cell_row"].to_numpy(), cells["cell_col"].to_numpy()
    x0, y0 = t * (c, r)  # the cells' corners through the map's affine (north up here)
    x1, y1 = t * (c + 1, r + 1)
    boxes = shapely.box(np.minimum(x0, x1), np.minimum(y0, y1), np.maximum(x0, x1),
                        np.maximum(y0, y1))  # fmt: skip
    mine = gpd.GeoDataFrame({"y": grid[r, c].astype(float), "imaged": cells["imaged_m2"],
                             "full": shapely.area(boxes)}, geometry=boxes, crs=crs)  # fmt: skip
    plots = gpd.read_file(made["plots"]).to_crs(crs)[["plot", "geometry"]]
    pieces = gpd.overlay(mine, plots, how="intersection")
    pieces["w"] = pieces["imaged"] * pieces.area / pieces["full"]
    shown = pd.read_csv(made["report"].csv).set_index("plot")
    for name, part in pieces.groupby("plot"):
        mean = (part["w"] * part["y"]).sum() / part["w"].sum()
        total = mean * part["w"].sum() / 1e4
        assert shown.loc[name, "yield_mean_t_ha"] == pytest.approx(mean, abs=6e-4)
        assert shown.loc[name, "yield_total_t"] == pytest.approx(total, abs=6e-3)
    assert sorted(pieces["plot"].unique()) == sorted(shown.index)


def test_cells_outside_the_calibration_are_told_as_tiler_yield_predict_tells(made):
    # the same cells, the same sentence: in the report's warning, the page and the CLI's line
    assert len(made["warned"]) == 1
    count = int(made["warned"][0].split(" of ")[0])
    assert count == int(made["report"].yield_.cells["outside_range"].sum()) > 0
    assert f"tiler: warning: {made['warned'][0]}" in made["stderr"]  # tiler yield predict's
    page = made["report"].html.read_text()
    assert f"{count} cells have features outside the calibration range" in page


def test_the_yield_map_is_tiler_yield_predicts(made):
    with rasterio.open(made["report"].yield_.map_path) as mine:
        with rasterio.open(made["predicted"] / "yield.tif") as theirs:
            assert mine.transform == theirs.transform and mine.crs == theirs.crs
            np.testing.assert_array_equal(mine.read(1), theirs.read(1))
            assert mine.descriptions == ("yield_t_ha",)
    assert made["report"].yield_.map_path == made["report"].html.parent / "yield.tif"


class _Tables(HTMLParser):
    """Every table's rows of cell texts, by the table's id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: list[list[str]] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self.current is not None:
            self.current.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and self.current is not None:
            self.current[-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _number(text: str) -> float:
    return float(text.replace("\u00a0", "").replace(",", ""))


def test_the_page_shows_the_yield_table_card_and_calibration(made):
    page = made["report"].html.read_text()
    assert '<section id="yield"><h2>Yield</h2>' in page
    assert "95 % prediction intervals from the spatially blocked" in page
    parsed = _Tables()
    parsed.feed(page)
    rows = parsed.tables["yield-fields"]
    shown = pd.read_csv(made["report"].csv)
    assert rows[0][:3] == ["plot", "area imaged (ha)", "mean (t/ha)"]
    assert [r[0] for r in rows[1:]] == list(shown["plot"])
    for row, (_, line) in zip(rows[1:], shown.iterrows(), strict=True):
        assert [_number(v) for v in row[2:8]] == pytest.approx(
            [line[c] for c in UNIT_COLUMNS], abs=1e-9
        )
    assert "fields" in parsed.tables  # the report's own table is still there
    # the card: the plots' means weighted by their predicted area, computed here
    other = pd.read_parquet(made["predicted"] / "fields.parquet")
    expected = (other["yield_mean_t_ha"] * other["area_ha"]).sum() / other["area_ha"].sum()
    card = re.search(r'<div class="card">mean yield \(t/ha\)<b>([^<]+)</b>', page)
    assert card is not None and _number(card.group(1)) == pytest.approx(expected, abs=0.005)
    # the calibration plot: a real PNG, and the blocked CV's figures in its caption
    calibration = page[page.index("<section id='calibration'><h3>") :]
    png = re.search(r"src='data:image/png;base64,([^']+)'", calibration)
    assert png is not None
    image = imread(io.BytesIO(base64.b64decode(png.group(1))), format="png")
    assert image.shape[0] > 200 and image.std() > 0.05
    cv = made["report"].yield_.model.meta["cv"]
    assert f"R² {cv['r2']:.3f}, RMSE {cv['rmse']:.3f} t/ha" in calibration


def test_without_cells_of_the_run_the_report_computes_them_and_keeps_none(made, tmp_path):
    # a copy of the run without RUN/yield: its cells are computed by the report's own pass
    run = tmp_path / "run"
    shutil.copytree(made["run"], run, ignore=shutil.ignore_patterns("yield"))
    logged: list[str] = []
    report = build(run, made["plots"], "plot", tmp_path / "report", yield_model=made["model"],
                   log=logged.append, warn=lambda message: None)  # fmt: skip
    assert not any("reused" in line for line in logged)
    assert not (run / "yield").exists()  # the report only reads the run
    mine, theirs = pd.read_csv(report.csv), pd.read_csv(made["predicted"] / "fields.csv")
    pd.testing.assert_frame_equal(mine[UNIT_COLUMNS], theirs[UNIT_COLUMNS])
    # a report without the model in the same folder: no yield left over from the first
    again = build(run, made["plots"], "plot", tmp_path / "report", overwrite=True)
    assert again.yield_ is None
    assert not set(UNIT_COLUMNS) & set(pd.read_csv(again.csv).columns)
    assert 'id="yield"' not in again.html.read_text()
    assert not (tmp_path / "report" / "yield.tif").exists()


def test_a_bad_model_folder_is_one_line_before_the_pass(made, tmp_path):
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    proc = tiler("report", made["run"], "--out", tmp_path / "report", "--yield-model", bad,
                 cwd=tmp_path)  # fmt: skip
    line = assert_one_line_error(proc, str(bad), "not a tiler yield model")
    assert "model.json" in line
    assert not (tmp_path / "report").exists()  # refused before any file was written


def test_the_cli_prints_each_fields_yield(made, tmp_path):
    proc = tiler("report", made["run"], "--fields", made["plots"], "--field-id", "plot", "--out",
                 tmp_path / "report", "--yield-model", made["model"], cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first = lines.index("== yield, 95% prediction intervals") + 1
    theirs = pd.read_csv(made["predicted"] / "fields.csv")
    for line, (_, row) in zip(lines[first : first + 6], theirs.iterrows(), strict=True):
        numbers = [float(v) for v in re.findall(r"\d+\.\d+", line)]
        assert line.split()[0] == row["plot"]
        assert numbers == pytest.approx([row[c] for c in UNIT_COLUMNS], abs=0.0051)
    assert f"yield map: {tmp_path / 'report' / 'yield.tif'}" in proc.stdout
