"""`tiler evaluate`: scores equal those computed another way, on real files; bad truth is
one line naming the file, and no --out is written."""

from __future__ import annotations

import json
import math
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from test_accuracy import harness  # noqa: F401  (benchmarks.accuracy, importable)
from test_cli import assert_one_line_error
from test_cli import tiler as tiler_cli

import tiler
from tiler.accuracy import combine_scores, match_points
from tiler.evaluate import evaluate
from tiler.synthetic import SyntheticField, write_geotiff

NAIP = "tests/data/urban_trees_naip"
WITHIN_M = 0.3125  # half the synthetic plant spacing (benchmarks/accuracy.py)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A small synthetic field, and its plant centres as CSV (map x,y), CSV (pixel col,row)
    and GeoJSON polygons (little squares around each plant: their centroids are the plants)."""
    folder = tmp_path_factory.mktemp("field")
    synthetic = SyntheticField(height=800, width=800, seed=5)
    tif = write_geotiff(synthetic, folder / "field.tif")
    xy = synthetic.plant_xy()
    pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).to_csv(folder / "truth.csv", index=False)
    rows, cols = synthetic.plant_centres().T
    pd.DataFrame({"col": cols, "row": rows}).to_csv(folder / "pixels.csv", index=False)
    boxes = [shapely.box(x - 0.05, y - 0.05, x + 0.05, y + 0.05) for x, y in xy]
    gpd.GeoDataFrame(geometry=boxes, crs=synthetic.crs).to_file(folder / "truth.geojson")
    return {"dir": folder, "tif": tif, "xy": xy, "crs": synthetic.crs}


def test_field_scores_equal_a_run_matched_by_hand_for_csv_geojson_and_pixels(field, tmp_path):
    folder = field["dir"]
    result = evaluate(
        "row-crop-plants",
        [field["tif"]] * 2,
        [folder / "truth.csv", folder / "truth.geojson"],
        within_m=WITHIN_M,
        scheduler="sync",
    )
    pixels = evaluate(
        "row-crop-plants",
        [field["tif"]],
        [folder / "pixels.csv"],
        within_m=WITHIN_M,
        truth_pixels=True,
        scheduler="sync",
    )
    tiler.run(field["tif"], tmp_path / "run", preset="row-crop-plants", scheduler="sync")
    objects = tiler.read_objects(tmp_path / "run")
    pred = np.column_stack([objects["x"].to_numpy(), objects["y"].to_numpy()])
    matches = match_points(pred, field["xy"], WITHIN_M)
    expected = matches.score()
    assert expected.tp > 100 and expected.fp + expected.fn > 0  # a real test of the counts
    assert [i.name for i in result.images] == ["1-field", "2-field"]
    for image in [*result.images, *pixels.images]:
        assert (image.score.tp, image.score.fp, image.score.fn) == (
            expected.tp,
            expected.fp,
            expected.fn,
        )
        # within a nanometre: a box's centroid is its point but for rounding
        assert image.score.mean_distance == pytest.approx(expected.mean_distance, abs=1e-9)
        # RMSE is sqrt(mean(d^2)) of the matched distances (the CRS is in metres)
        assert image.rmse_m == pytest.approx(math.sqrt(np.mean(matches.distance**2)), abs=1e-9)
    pooled = combine_scores([expected, expected])
    assert (result.pooled.tp, result.pooled.fp, result.pooled.fn) == (
        pooled.tp,
        pooled.fp,
        pooled.fn,
    )
    assert result.pooled_rmse_m == pytest.approx(result.images[0].rmse_m, rel=1e-9)


def test_an_empty_truth_file_is_a_tile_without_objects(field, tmp_path):
    (tmp_path / "none.csv").write_text("x,y\n")
    result = evaluate(
        "row-crop-plants",
        [field["tif"]],
        [tmp_path / "none.csv"],
        within_m=WITHIN_M,
        scheduler="sync",
    )
    score = result.images[0].score
    assert score.n_truth == 0 and score.tp == 0 and score.fp == score.n_pred > 0
    assert math.isnan(result.pooled_rmse_m)


def test_a_missing_truth_file_is_an_error_or_with_missing_empty_a_tile_without_objects(
    field, tmp_path
):
    gone = tmp_path / "gone.csv"
    args = ["--images", field["tif"], "--truth", gone, "--within", "30cm", "--scheduler", "sync"]
    proc = tiler_cli("evaluate", "row-crop-plants", *args, cwd=tmp_path)
    assert_one_line_error(proc, "gone.csv", "not found")
    proc = tiler_cli("evaluate", "row-crop-plants", *args, "--missing-truth", "empty", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pooled = proc.stdout.splitlines()[-1].split()
    assert pooled[:2] == ["pooled", "0"] and int(pooled[2]) == int(pooled[4]) > 0  # found = fp


def test_naip_pooled_counts_equal_the_benchmark_harness(harness, tmp_path):  # noqa: F811
    tiles = harness.naip_tiles()
    pipeline = tiler.presets.load("tree-crowns-classical")
    result = evaluate(
        "tree-crowns-classical",
        [tif for tif, _ in tiles],
        [truth for _, truth in tiles],
        within_m=3.0,
        scheduler="sync",
        keep=tmp_path / "runs",
    )
    bench = harness.score_naip(pipeline, tmp_path / "bench")
    bench_pooled = combine_scores(t.score for t in bench)
    assert [(i.name, i.score.tp, i.score.fp, i.score.fn) for i in result.images] == [
        (t.name, t.score.tp, t.score.fp, t.score.fn) for t in bench
    ]
    assert (result.pooled.tp, result.pooled.fp, result.pooled.fn) == (
        bench_pooled.tp,
        bench_pooled.fp,
        bench_pooled.fn,
    )
    # pooled RMSE: sqrt(mean(d^2)) over every matched pair of every tile (UTM: metres)
    distances = []
    for tif, truth in tiles:
        objects = tiler.read_objects(tmp_path / "runs" / tif.stem)
        pred = np.column_stack([objects["x"].to_numpy(), objects["y"].to_numpy()])
        distances.append(match_points(pred, harness.read_truth_points(truth), 3.0).distance)
    assert result.pooled_rmse_m == pytest.approx(
        math.sqrt(np.mean(np.concatenate(distances) ** 2)), rel=1e-9
    )


def test_cli_prints_the_table_and_writes_csv_and_json(field, tmp_path):
    folder = field["dir"]
    expected = evaluate(
        "row-crop-plants",
        [field["tif"]],
        [folder / "truth.csv"],
        within_m=WITHIN_M,
        scheduler="sync",
    )
    args = ["row-crop-plants", "--images", field["tif"], "--truth", folder / "truth.csv"]
    args += ["--within", "31.25cm", "--scheduler", "sync", "-q"]
    proc = tiler_cli("evaluate", *args, "--out", tmp_path / "s.json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pooled = [line for line in proc.stdout.splitlines() if line.startswith("pooled")]
    assert len(pooled) == 1 and f" {expected.pooled.tp} " in pooled[0]
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["pooled"]["tp"] == expected.pooled.tp
    assert data["pooled"]["rmse_m"] == pytest.approx(expected.pooled_rmse_m)
    assert data["within_m"] == pytest.approx(WITHIN_M)
    proc = tiler_cli("evaluate", *args, "--out", tmp_path / "s.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "s.csv")
    assert table[["image", "tp", "fp", "fn"]].values.tolist() == [
        ["field", *(getattr(expected.images[0].score, k) for k in ("tp", "fp", "fn"))]
    ]
    assert " tile(s) of " not in proc.stderr  # -q: no progress lines
    args.remove("-q")
    proc = tiler_cli("evaluate", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "field.tif: 800 x 800 px, 1 tile(s) of (2048, 2048)" in proc.stderr


def _write_tif(path, crs, transform):
    profile = {"driver": "GTiff", "width": 20, "height": 20, "count": 3, "dtype": "uint8"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the identity transform
        with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as ds:
            ds.write(np.full((3, 20, 20), 100, np.uint8))
    return path


@pytest.mark.parametrize(
    "case", ["outside", "count", "unknown-format", "no-columns", "geographic", "pixel-only"]
)
def test_bad_input_is_one_line_and_no_out(case, field, tmp_path):
    folder = field["dir"]
    images, truths = [field["tif"]], [folder / "truth.csv"]
    names = []
    if case == "outside":  # map coordinates given as if in another zone: 10 km off
        bad = tmp_path / "shifted.csv"
        xy = field["xy"] + [10_000.0, 0.0]
        pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).to_csv(bad, index=False)
        truths, names = [bad], [bad.name, f"{len(xy)} of {len(xy)}", "--truth-pixels"]
    elif case == "count":
        images, names = [field["tif"]] * 2, ["2 image(s) but 1 truth file(s)"]
    elif case == "unknown-format":
        bad = tmp_path / "truth.txt"
        bad.write_text("these are my trees, roughly\n")
        truths, names = [bad], [bad.name, "cannot read"]
    elif case == "no-columns":
        bad = tmp_path / "lonlat.csv"
        bad.write_text("lon,lat\n1,2\n")
        truths, names = [bad], [bad.name, "x,y", "lon, lat"]
    elif case == "geographic":
        deg = Affine(1e-5, 0.0, -120.0, 0.0, -1e-5, 37.0)
        images = [_write_tif(tmp_path / "wgs84.tif", "EPSG:4326", deg)]
        names = ["wgs84.tif", "geographic CRS", "projected"]
    else:
        images = [_write_tif(tmp_path / "pixels.tif", "EPSG:32611", Affine.identity())]
        names = ["pixels.tif", "no map coordinates"]
    out = tmp_path / "scores.csv"
    args = ["--images", *images, "--truth", *truths, "--within", "3m", "--out", out]
    proc = tiler_cli("evaluate", "row-crop-plants", *args, "--scheduler", "sync", cwd=tmp_path)
    assert_one_line_error(proc, *map(str, names))
    assert not out.exists()
