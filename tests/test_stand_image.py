"""The stand from an image: a synthetic field with rows at an angle, gently curved, with
skips, doubles and weeds, through `tiler run`, `tiler report --rows` and `tiler rows`,
against the field's planted truth (computed from the layout, not from the image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import tiler
from tiler.stand import Settings, field_columns
from tiler.stand.measures import kachman_smith
from tiler.synthetic import SyntheticField, write_geotiff

NOMINAL = 0.625  # the field's plant spacing, m


@pytest.fixture(scope="module")
def field() -> SyntheticField:
    return SyntheticField.at(
        0.025, (30.0, 30.0), seed=21, row_angle=-38.0, row_curvature=(8.0, 1600.0),
        skip_rate=0.02, double_rate=0.04, plant_radius=(3.5, 5.0), double_offset=(0.35, 0.5),
    )  # fmt: skip


@pytest.fixture(scope="module")
def run(field, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("stand-image")
    tif = write_geotiff(field, work / "field.tif")
    return tiler.run(tif, work / "run", preset="row-crop-plants", scheduler="threads").dst


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiler.cli", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def reported(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    done = cli("report", str(run), "--rows", "--plant-spacing", "62.5cm", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "== stand along the rows" in done.stdout and "rows  spacing 0.900 m" in done.stdout
    return out


def test_the_report_holds_the_stand_of_tiler_rows(run, reported, tmp_path):
    done = cli("rows", str(run), "--plant-spacing", "62.5cm", "--out", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    alone = pd.read_csv(tmp_path / "s" / "stand.csv")
    in_report = pd.read_csv(reported / "fields.csv")
    columns = [c for c in field_columns(Settings()) if c != "stand_status"]
    assert in_report[columns].to_numpy() == pytest.approx(alone[columns].to_numpy(), nan_ok=True)
    assert pd.read_csv(reported / "stand" / "stand.csv")[columns].equals(alone[columns])
    page = (reported / "report.html").read_text()
    assert "Stand along the rows" in page and "Uniformity per field" in page


def test_the_stand_is_the_planted_one(field, run, reported):
    truth = field.stand_truth()
    found = pd.read_csv(reported / "fields.csv").iloc[0]
    assert found["rows"] == sum(t.plants >= 3 for t in truth.rows)
    assert found["row_spacing_m"] == pytest.approx(truth.row_spacing_m, rel=0.01)
    assert (found["row_azimuth_deg"] - truth.azimuth_deg + 90) % 180 - 90 == pytest.approx(
        0, abs=1.0
    )
    expected = kachman_smith(np.concatenate([t.spacings_m for t in truth.rows]), NOMINAL)
    assert found["miss_pct"] == pytest.approx(expected["miss_pct"], abs=1.5)
    assert found["multiples_pct"] == pytest.approx(expected["multiples_pct"], abs=1.5)
    # the long gaps: each found where it was planted, as long
    gaps = pd.read_parquet(reported / "stand" / "gaps.parquet")
    long = truth.gap_length_m > 2 * NOMINAL
    bounds = gpd_bounds(gaps)
    middle = np.c_[(bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2]
    planted = 0.5 * (truth.gap_start_xy[long] + truth.gap_end_xy[long])
    distance, nearest = cKDTree(middle).query(planted)
    close = distance <= 0.5 * NOMINAL
    error = np.abs(gaps["length_m"].to_numpy()[nearest] - truth.gap_length_m[long])
    assert long.sum() > 20 and np.mean(close & (error <= 0.10)) >= 0.9


def gpd_bounds(table: pd.DataFrame) -> np.ndarray:
    import geopandas as gpd

    return gpd.GeoSeries.from_wkb(table["geometry"]).bounds.to_numpy()


def test_a_report_without_rows_drops_the_stand(run, reported, tmp_path):
    out = tmp_path / "report"
    assert cli("report", str(run), "--rows", "--out", str(out)).returncode == 0
    assert (out / "stand" / "rows.parquet").exists()
    done = cli("report", str(run), "--out", str(out), "--overwrite")
    assert done.returncode == 0, done.stderr
    assert not (out / "stand").exists()
    assert "rows" not in pd.read_csv(out / "fields.csv").columns
