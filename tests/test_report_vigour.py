"""`tiler report`: a vegetation index per object (mean and sd), per field, and its choice.

The per-object statistics are made window by window and merged by label; they
are checked against ``scipy.ndimage.mean`` / ``standard_deviation`` on the
whole image, with the index worked out here from DESIGN.md's formulas in
NumPy (not tiler's kernels), over several window sizes, odd ones included.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import zarr
from scipy import ndimage

import tiler
from tiler.errors import ConfigError
from tiler.io.input_identity import reopen
from tiler.report import build, vigour
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.tiling import TileGrid

NDVI_PIPELINE = {
    "bands": [1, 2, 3, 4],
    "preprocess": [{"index": "ndvi", "red": 1, "nir": 4}],
    "threshold": "otsu",
    "refine": [{"opening": {"radius": 1}}, {"remove_small_objects": {"min_area": 20}}],
}


@pytest.fixture(scope="module")
def field_run(tmp_path_factory) -> Path:
    """An RGBA synthetic field (nodata corners), 300 x 260, tiles of 64."""
    folder = tmp_path_factory.mktemp("vigour")
    src = write_geotiff(SyntheticField(height=300, width=260, seed=5), folder / "field.tif")
    tiler.run(src, folder / "out", chunk_size=64, scheduler="sync")
    return folder / "out"


@pytest.fixture(scope="module")
def nir_run(field_run, tmp_path_factory) -> Path:
    """The same field as red, green, blue and a near-infrared band (nodata 0), run on NDVI."""
    folder = tmp_path_factory.mktemp("nir")
    with rasterio.open(whole(field_run)[0]) as ds:
        rgba = ds.read()
        profile = ds.profile
    red, green = rgba[0].astype(np.int64), rgba[1].astype(np.int64)
    nir = np.clip(2 * green - red // 2 + 7, 0, 255)
    bands = np.stack([rgba[0], rgba[1], rgba[2], nir.astype(np.uint8)])
    bands[:, rgba[3] == 0] = 0
    profile.update(count=4, nodata=0, photometric="MINISBLACK")
    src = folder / "nir.tif"
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(bands)
    tiler.run(src, folder / "out", config=NDVI_PIPELINE, chunk_size=96, scheduler="sync")
    return folder / "out"


def whole(dst: Path):
    """The run's input path, its bands as float64, its valid mask and the labels."""
    manifest = json.loads((dst / "run.json").read_text())
    path = manifest["input"]["path"]
    with rasterio.open(path) as ds:
        image = ds.read().astype(np.float64)
        valid = ds.dataset_mask() > 0
    labels = zarr.open_array(str(dst / "labels.zarr" / "labels"), mode="r")[...]
    return path, image, valid, labels


def ratio(numerator, denominator):
    out = np.zeros_like(denominator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def exg_by_hand(image):
    """DESIGN.md section 3: s = (R+G)+B; r, g, b = R/s, G/s, B/s; ExG = (2g - r) - b."""
    s = (image[0] + image[1]) + image[2]
    r, g, b = ratio(image[0], s), ratio(image[1], s), ratio(image[2], s)
    return (2 * g - r) - b


def reference(values, valid, labels, ids):
    """Mean and population sd of ``values`` over each object's valid pixels, whole image."""
    masked = np.where(valid, labels, 0)
    return (
        np.asarray(ndimage.mean(values, masked, index=ids)),
        np.asarray(ndimage.standard_deviation(values, masked, index=ids)),
    )


def windows_of(shape, size):
    return [window for *_, window in TileGrid(shape, (size, size))]


@pytest.mark.parametrize("size", [7, 13, 64, 101, 1000])
def test_per_object_exg_merged_over_windows_equals_the_whole_image(field_run, size):
    _, image, valid, labels = whole(field_run)
    ids = tiler.read_objects(field_run)["label"].to_numpy()
    mean, sd = reference(exg_by_hand(image), valid, labels, ids)
    assert len(ids) > 30 and 0.05 < np.median(sd) and np.ptp(mean) > 0.05  # not trivial
    manifest = json.loads((field_run / "run.json").read_text())
    choice = vigour.choose(None, manifest["config"], 4, "run")
    assert choice == vigour.Vigour("exg", (1, 2, 3))
    source = reopen(manifest["input"])
    got_mean, got_sd = vigour.per_object(
        source, choice, zarr.open_array(str(field_run / "labels.zarr" / "labels"), mode="r"),
        ids, windows_of(labels.shape, size),
    )  # fmt: skip
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_sd, sd, rtol=1e-9, atol=1e-13)


def test_the_report_writes_the_object_table_and_field_means(field_run, tmp_path):
    _, image, valid, labels = whole(field_run)
    objects = tiler.read_objects(field_run)
    ids = objects["label"].to_numpy()
    mean, sd = reference(exg_by_hand(image), valid, labels, ids)
    bounds = objects.total_bounds
    middle = (bounds[0] + bounds[2]) / 2
    fields = gpd.GeoDataFrame(
        {"plot": ["west", "east"]},
        geometry=gpd.GeoSeries.from_wkt(
            [f"POLYGON(({bounds[0] - 1} {bounds[1] - 1}, {middle} {bounds[1] - 1}, "
             f"{middle} {bounds[3] + 1}, {bounds[0] - 1} {bounds[3] + 1}, "
             f"{bounds[0] - 1} {bounds[1] - 1}))",
             f"POLYGON(({middle} {bounds[1] - 1}, {bounds[2] + 1} {bounds[1] - 1}, "
             f"{bounds[2] + 1} {bounds[3] + 1}, {middle} {bounds[3] + 1}, "
             f"{middle} {bounds[1] - 1}))"]
        ),
        crs=objects.crs,
    )  # fmt: skip
    report = build(field_run, fields, "plot", out=tmp_path / "r", scheduler="sync")
    table = gpd.read_parquet(tmp_path / "r" / "objects.parquet")
    assert list(table.columns) == [
        "label", "plot", "area_px", "area_m2", "x", "y", "exg_mean", "exg_sd", "geometry",
    ]  # fmt: skip
    np.testing.assert_array_equal(table["label"], ids)
    np.testing.assert_allclose(table["exg_mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(table["exg_sd"], sd, rtol=1e-9, atol=1e-13)
    assert table.crs == objects.crs and table.geometry.equals(objects.geometry)
    west = objects["x"].to_numpy() < middle
    assert table["plot"].tolist() == np.where(west, "west", "east").tolist()
    csv = pd.read_csv(tmp_path / "r" / "objects.csv")
    np.testing.assert_allclose(csv["exg_mean"], np.round(mean, 6))
    # Per field: the mean of its objects' means.
    fields_table = report.table.set_index("plot")
    assert fields_table.loc["west", "exg_mean"] == pytest.approx(mean[west].mean(), rel=1e-12)
    assert fields_table.loc["east", "exg_mean"] == pytest.approx(mean[~west].mean(), rel=1e-12)
    assert pd.read_csv(report.csv).columns[-1] == "exg_mean"
    page = report.html.read_text()
    assert "<th>mean ExG</th>" in page and "ExG per object<b>" in page
    overall = f"{mean.mean():.3f}"
    assert f"<b>{overall}</b>" in page


def test_ndvi_is_the_runs_own_and_exg_can_be_asked_for(nir_run, tmp_path):
    _, image, valid, labels = whole(nir_run)
    ids = tiler.read_objects(nir_run)["label"].to_numpy()
    ndvi = ratio(image[3] - image[0], image[3] + image[0])
    report = build(nir_run, out=tmp_path / "auto", scheduler="sync")
    assert report.index == vigour.Vigour("ndvi", (1, 4), red=1, nir=4)
    mean, sd = reference(ndvi, valid, labels, ids)
    np.testing.assert_allclose(report.objects["ndvi_mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(report.objects["ndvi_sd"], sd, rtol=1e-9, atol=1e-13)
    assert report.table["ndvi_mean"][0] == pytest.approx(mean.mean(), rel=1e-12)
    asked = build(nir_run, out=tmp_path / "exg", index="exg", scheduler="sync")
    mean, _ = reference(exg_by_hand(image), valid, labels, ids)
    np.testing.assert_allclose(asked.objects["exg_mean"], mean, rtol=1e-12, atol=1e-15)
    assert "ndvi_mean" not in asked.objects.columns
    none = build(nir_run, out=tmp_path / "none", index="none", scheduler="sync")
    assert none.index is None and not set(vigour.COLUMNS) & set(none.objects.columns)
    assert not set(vigour.COLUMNS) & set(pd.read_csv(none.csv).columns)


def test_ndvi_bands_can_be_named_on_an_exg_run(nir_run, field_run):
    config = json.loads((field_run / "run.json").read_text())["config"]
    assert vigour.choose("NDVI:3,4", config, 4, "run") == vigour.Vigour("ndvi", (3, 4), 3, 4)
    for asked, message in [
        ("ndvi", "the run's pipeline names no red/nir bands; give them as --index ndvi:RED,NIR"),
        ("ndvi:1,9", "--index ndvi:1,9: the file has 4 band(s)"),
        ("ndvi:2,2", "red and nir must be different bands"),
        ("ndvi:1", "expected ndvi:RED,NIR, two file band numbers"),
        ("savi", "--index savi: expected exg, exgr, gray, ndvi"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            vigour.choose(asked, config, 4, "run")


def test_a_bad_index_is_one_line_and_writes_nothing(field_run, tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "report", str(field_run), "--out", str(out),
         "--index", "ndvi"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == (
        f"tiler: error: {field_run}: --index ndvi: the run's pipeline names no red/nir bands; "
        "give them as --index ndvi:RED,NIR (file band numbers)\n"
    )
    assert not out.exists()
    good = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "report", str(field_run), "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert f"objects:   {out / 'objects.parquet'}" in good.stdout
    assert " ExG 0." in good.stdout.splitlines()[0]


def test_the_report_merges_its_windows_in_order(tmp_path):
    """1300 x 1100: the report's pass has four 1024-px windows, run in threads; objects on
    the window seams are merged, and the sums do not depend on the completion order."""
    src = write_geotiff(SyntheticField(height=1300, width=1100, seed=8), tmp_path / "f.tif")
    tiler.run(src, tmp_path / "out", chunk_size=512, scheduler="threads")
    _, image, valid, labels = whole(tmp_path / "out")
    seams = np.union1d(labels[1023:1025].ravel(), labels[:, 1023:1025].ravel())
    assert (seams > 0).sum() > 5  # objects across the windows' edges
    ids = tiler.read_objects(tmp_path / "out")["label"].to_numpy()
    mean, sd = reference(exg_by_hand(image), valid, labels, ids)
    first = build(tmp_path / "out", out=tmp_path / "a", scheduler="threads").objects
    np.testing.assert_allclose(first["exg_mean"], mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(first["exg_sd"], sd, rtol=1e-9, atol=1e-13)
    again = build(tmp_path / "out", out=tmp_path / "b", scheduler="sync").objects
    np.testing.assert_array_equal(again["exg_mean"], first["exg_mean"])
    np.testing.assert_array_equal(again["exg_sd"], first["exg_sd"])
