"""`tiler report`: counts per field against independent computations, the pyramid, the page.

Counts are checked against a point-in-polygon test written here with
matplotlib's Path (not shapely, which the report uses), canopy cover against
the whole image rasterized at once, and the page is rendered in headless
Chromium.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import zarr
from affine import Affine
from matplotlib.image import imread
from matplotlib.path import Path as PolygonPath
from rasterio.features import rasterize
from shapely.geometry import Polygon, box

import tiler
from tiler.errors import InputError, OutputError
from tiler.report import build, maps, pyramid
from tiler.synthetic import SyntheticField, write_geotiff

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished run on a 700 x 620 synthetic field, tiles of 128."""
    folder = tmp_path_factory.mktemp("report")
    src = write_geotiff(SyntheticField(height=700, width=620, seed=21), folder / "field.tif")
    dst = folder / "out"
    tiler.run(src, dst, chunk_size=128, scheduler="sync")
    return dst


def corners(dst: Path):
    manifest = json.loads((dst / "run.json").read_text())
    transform = Affine(*manifest["input"]["transform"])
    h, w = manifest["input"]["height"], manifest["input"]["width"]
    return transform, h, w, manifest["input"]["crs_wkt"]


def xy(transform: Affine, row: float, col: float) -> tuple[float, float]:
    return transform * (col, row)


@pytest.fixture(scope="module")
def fields(run, tmp_path_factory) -> Path:
    """Five fields in the raster's CRS: inside, rotated and overlapping, across the edge,
    outside, and one holding a hole."""
    transform, h, w, crs = corners(run)
    p = lambda r, c: xy(transform, r, c)  # noqa: E731
    shapes = {
        "north": Polygon([p(10.3, 20.7), p(10.3, 600.2), p(240.9, 600.2), p(240.9, 20.7)]),
        "tilted": Polygon([p(150.2, 80.4), p(300.6, 300.1), p(450.3, 160.8), p(290.1, 10.5)]),
        "edge": Polygon([p(400.5, 500.3), p(400.5, 700.0), p(650.2, 700.0), p(650.2, 500.3)]),
        "away": box(*p(-900, -900), *p(-800, -800)).normalize(),
        "ring": Polygon(
            [p(460, 40), p(460, 380), p(690, 380), p(690, 40)],
            [[p(520, 120), p(520, 300), p(630, 300), p(630, 120)]],
        ),
    }
    frame = gpd.GeoDataFrame(
        {"name": list(shapes), "crop": ["maize"] * len(shapes)},
        geometry=list(shapes.values()),
        crs=crs,
    )
    path = tmp_path_factory.mktemp("fields") / "fields.gpkg"
    frame.to_file(path)
    return path


@pytest.fixture(scope="module")
def report(run, fields, tmp_path_factory):
    return build(run, fields, field_id="name", out=tmp_path_factory.mktemp("out") / "report")


def independent_counts(dst: Path, frame: gpd.GeoDataFrame) -> dict[str, int]:
    """Objects whose centroid is inside each polygon (holes excluded), by matplotlib's Path."""
    objects = pd.read_parquet(dst / "objects.parquet", columns=["x", "y"]).to_numpy()
    counts = {}
    for name, polygon in zip(frame["name"], frame.geometry, strict=True):
        inside = PolygonPath(np.asarray(polygon.exterior.coords)).contains_points(objects)
        for hole in polygon.interiors:
            inside &= ~PolygonPath(np.asarray(hole.coords)).contains_points(objects)
        counts[name] = int(inside.sum())
    return counts


def test_objects_are_counted_by_centroid_exactly(run, fields, report):
    frame = gpd.read_file(fields)
    expected = independent_counts(run, frame)
    table = report.table.set_index("name")
    assert {k: int(table.loc[k, "objects"]) for k in expected} == expected
    assert expected["north"] > 100 and expected["tilted"] > 20 and expected["away"] == 0
    # Overlapping fields both count the objects they share.
    assert expected["north"] + expected["tilted"] > independent_union(run, frame)


def independent_union(dst, frame) -> int:
    objects = pd.read_parquet(dst / "objects.parquet", columns=["x", "y"]).to_numpy()
    inside = np.zeros(len(objects), bool)
    for name in ("north", "tilted"):
        polygon = frame.set_index("name").geometry[name]
        inside |= PolygonPath(np.asarray(polygon.exterior.coords)).contains_points(objects)
    return int(inside.sum())


def test_canopy_cover_is_the_whole_image_rasterized_at_once(run, fields, report):
    transform, h, w, _ = corners(run)
    labels = zarr.open_array(str(run / "labels.zarr" / "labels"), mode="r")[...]
    manifest = json.loads((run / "run.json").read_text())
    with rasterio.open(manifest["input"]["path"]) as ds:
        valid = ds.dataset_mask() > 0
    table = report.table.set_index("name")
    frame = gpd.read_file(fields)
    pixel_ha = abs(transform.a * transform.e) / 1e4
    for name, polygon in zip(frame["name"], frame.geometry, strict=True):
        inside = rasterize([(polygon, 1)], out_shape=(h, w), transform=transform).astype(bool)
        row = table.loc[name]
        if not inside.any():
            assert row["no_image"] and row["imaged_area_ha"] == 0
            assert np.isnan(row["canopy_cover_pct"]) and np.isnan(row["density_per_ha"])
            continue
        imaged = inside & valid
        assert row["canopy_cover_pct"] == 100 * (imaged & (labels > 0)).sum() / imaged.sum()
        assert row["imaged_area_ha"] == pytest.approx(imaged.sum() * pixel_ha, rel=1e-12)
    assert 5 < table.loc["north", "canopy_cover_pct"] < 60


def test_areas_density_sizes_and_flags(run, fields, report):
    table = report.table.set_index("name")
    frame = gpd.read_file(fields).set_index("name")
    objects = tiler.read_objects(run)
    for name in frame.index:
        row = table.loc[name]
        assert row["area_ha"] == pytest.approx(frame.geometry[name].area / 1e4, rel=1e-12)
        if not row["no_image"]:
            assert row["density_per_ha"] == pytest.approx(row["objects"] / row["imaged_area_ha"])
    assert table.loc["away", "no_image"] and table.loc["away", "imaged_pct"] == 0
    assert 30 < table.loc["edge", "imaged_pct"] < 70 and not table.loc["edge", "no_image"]
    assert 60 < table.loc["north", "imaged_pct"] < 95  # inside the raster; nodata corners
    # Sizes: the areas of the objects counted in the field.
    polygon = frame.geometry["north"]
    inside = PolygonPath(np.asarray(polygon.exterior.coords)).contains_points(objects[["x", "y"]])
    sizes = objects["area_m2"].to_numpy()[inside]
    assert table.loc["north", "area_median_m2"] == pytest.approx(np.median(sizes))
    assert table.loc["north", "area_p90_m2"] == pytest.approx(np.percentile(sizes, 90))
    assert np.isnan(table.loc["away", "area_mean_m2"])


def test_the_files_are_real_tables_with_geometry(report):
    csv = pd.read_csv(report.csv)
    # The fields file's own columns (its id under its name), then ours.
    assert list(csv.columns) == ["name", "crop", *tiler.report.fields.COLUMNS, "exg_mean"]
    assert report.field_id == "name" and csv["crop"].tolist() == ["maize"] * 5
    assert csv["name"].tolist() == ["north", "tilted", "edge", "away", "ring"]
    for column, digits in tiler.report.fields.COLUMNS.items():  # rounded, as named
        if digits is not None:
            np.testing.assert_allclose(csv[column], report.table[column].round(digits))
    text = pd.read_csv(report.csv, dtype=str, keep_default_na=False)
    assert all(re.fullmatch(r"\d+(\.\d)?", v) for v in text["density_per_ha"] if v)
    assert text.set_index("name").loc["away", "density_per_ha"] == ""  # no image: no density
    geo = gpd.read_parquet(report.parquet)
    assert geo.crs == report.table.crs
    assert geo.geometry.geom_type.tolist()[:1] == ["Polygon"]
    np.testing.assert_array_equal(geo["objects"].to_numpy(), csv["objects"].to_numpy())


def test_fields_in_another_crs_are_reprojected(run, fields, tmp_path):
    frame = gpd.read_file(fields)
    path = tmp_path / "fields-wgs84.geojson"
    frame.to_crs("EPSG:4326").to_file(path)
    again = build(run, path, field_id="name", out=tmp_path / "again").table.set_index("name")
    table = gpd.read_file(fields).set_index("name")
    assert again.crs == frame.crs
    for name in table.index:  # the round trip through degrees moves vertices by nanometres
        assert again.loc[name, "area_ha"] == pytest.approx(
            table.geometry[name].area / 1e4, rel=1e-6
        )
    assert int(again.loc["north", "objects"]) == independent_counts(run, frame)["north"]


def test_without_fields_the_footprint_is_reported(run, tmp_path):
    table = build(run, out=tmp_path / "whole").table
    assert table["field"].tolist() == ["footprint"]
    assert int(table["objects"][0]) == len(tiler.read_objects(run))
    _, h, w, _ = corners(run)
    labels = zarr.open_array(str(run / "labels.zarr" / "labels"), mode="r")[...]
    with rasterio.open(json.loads((run / "run.json").read_text())["input"]["path"]) as ds:
        valid = ds.dataset_mask() > 0
    assert table["canopy_cover_pct"][0] == 100 * ((labels > 0) & valid).sum() / valid.sum()


def test_the_pyramid_is_ome_zarr_and_exact(run, report):
    labels = zarr.open_array(str(run / "labels.zarr" / "labels"), mode="r")[...]
    group = zarr.open_group(str(report.html.parent / "pyramid.zarr"), mode="r")
    _, h, w, _ = corners(run)
    shapes = pyramid.level_shapes((h, w))
    assert shapes[0] == (175, 155) and len(shapes) == 1  # 700 x 620 / 4, already under 256
    for k, shape in enumerate(shapes):
        f = 4 * 2**k
        np.testing.assert_array_equal(group[f"labels/objects/{k}"][...], labels[::f, ::f])
        assert group[str(k)].shape == (4, *shape)
    # Level 0 of the image: each 4 x 4 block's mean over its valid pixels.
    manifest = json.loads((run / "run.json").read_text())
    with rasterio.open(manifest["input"]["path"]) as ds:
        rgb, valid = ds.read([1, 2, 3]).astype(float), ds.dataset_mask() > 0
    level = group["0"][...]
    for r, c in [(0, 0), (10, 17), (100, 100), (174, 154)]:
        block = valid[4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
        if block.any():
            means = rgb[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4][:, block].mean(axis=1)
            np.testing.assert_array_equal(level[:3, r, c], np.rint(means).astype(np.uint8))
        assert level[3, r, c] == (255 if block.any() else 0)
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    assert [d["path"] for d in ome["multiscales"][0]["datasets"]] == ["0"]
    scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale[1:] == pytest.approx([abs(manifest["input"]["transform"][4]) * 4] * 2)


def test_the_pyramid_is_read_by_ome_zarr_as_an_image_with_labels(run, report):
    """ome-zarr-py is the reader napari-ome-zarr is built on."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(report.html.parent / "pyramid.zarr")))())
    kinds = {type(spec).__name__ for node in nodes for spec in node.specs}
    assert {"Multiscales", "Labels", "Label"} <= kinds
    image = next(n for n in nodes if n.metadata.get("name") == "image")
    assert image.data[0].shape == (4, 175, 155)
    objects = next(n for n in nodes if n.metadata.get("name") == "objects")
    labels = zarr.open_array(str(run / "labels.zarr" / "labels"), mode="r")[...]
    np.testing.assert_array_equal(np.asarray(objects.data[0]), labels[::4, ::4])


def test_a_larger_image_gets_coarser_levels(tmp_path):
    """3000 x 2200: levels 750, 375, 188 rows; each coarser level from the one above."""
    src = write_geotiff(SyntheticField(height=3000, width=2200, seed=2), tmp_path / "f.tif")
    dst = tmp_path / "out"
    tiler.run(src, dst, chunk_size=1000, scheduler="threads")
    build(dst, out=tmp_path / "r")
    group = zarr.open_group(str(tmp_path / "r" / "pyramid.zarr"), mode="r")
    labels = zarr.open_array(str(dst / "labels.zarr" / "labels"), mode="r")[...]
    assert [group[str(k)].shape[1:] for k in range(3)] == [(750, 550), (375, 275), (188, 138)]
    assert "3" not in group
    for k in range(3):
        np.testing.assert_array_equal(
            group[f"labels/objects/{k}"][...], labels[:: 4 << k, :: 4 << k]
        )
    finer, coarser = group["0"][...].astype(float), group["1"][...]
    alpha = finer[3] > 0
    block = alpha[200:202, 300:302]
    means = finer[:3, 200:202, 300:302][:, block].mean(axis=1)
    np.testing.assert_array_equal(coarser[:3, 100, 150], np.rint(means).astype(np.uint8))


def test_bad_fields_and_runs_are_one_clear_error(run, fields, tmp_path):
    with pytest.raises(InputError, match=r"no column 'plot' for --field-id; columns: name, crop"):
        build(run, fields, field_id="plot", out=tmp_path / "a")
    points = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy([1], [2]), crs="EPSG:4326").to_file(points)
    with pytest.raises(InputError, match=r"fields must be polygons; found \['Point'\]"):
        build(run, points, out=tmp_path / "b")
    with pytest.raises(InputError, match="no such file"):
        build(run, tmp_path / "missing.gpkg", out=tmp_path / "c")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(OutputError, match="no run.json; not a finished tiler run"):
        build(unfinished)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_cli_prints_each_field_and_the_files(run, fields, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "report", str(run), "--fields", str(fields),
         "--field-id", "name", "--out", str(tmp_path / "cli"), "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"^away\s+0 objects  no image: outside the raster or only nodata$", proc.stdout, re.M
    )
    assert f"report:    {tmp_path / 'cli' / 'report.html'}" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "report", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 3
    assert bad.stderr == f"tiler: error: {tmp_path}: no run.json; not a finished tiler run\n"


# ---------------------------------------------------------------------------
# The page, in a real browser
# ---------------------------------------------------------------------------


def chromium(page: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    assert browser, "Chromium is needed to render the report: `make test` installs it"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={out / 'profile'}", "--enable-logging=stderr",
         "--v=0", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_sees_errors(tmp_path):
    """The check below can fail: a page with a script error shows in the console lines."""
    page = tmp_path / "bad.html"
    page.write_text("<p>x</p><script>console.error('boom'); missing();</script>")
    proc = chromium(page, tmp_path, "--dump-dom")
    assert any("missing is not defined" in line for line in console_messages(proc.stderr))


def test_the_report_renders_in_chromium(report, tmp_path):
    text = report.html.read_text()
    assert not re.search(r"""(src|href)=["']?https?:""", text)  # self-contained
    assert text.count("data:image/png;base64,") == 3
    dom = chromium(report.html, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    assert console_messages(dom.stderr) == []
    for section in ("summary", "quicklook", "density", "sizes", "table", "provenance"):
        assert f'<section id="{section}">' in dom.stdout
    assert "<h1>Plant count report</h1>" in dom.stdout
    assert dom.stdout.count("<tr") == 6  # header and five fields
    shot = tmp_path / "report.png"
    proc = chromium(report.html, tmp_path, "--window-size=1200,1600", f"--screenshot={shot}")
    assert proc.returncode == 0, proc.stderr
    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels[..., :3].std() > 0.08  # a page with pictures, not a blank one


def test_the_maps_are_framed_on_the_image(report):
    """The 'away' field, 900 px off the image, neither frames nor widens the pictures; big
    per-hectare numbers are kept on one line (no-break spaces, cells that do not wrap)."""
    text = report.html.read_text()
    image_ratio = 620 / 700  # width / height of the run's image
    sizes = {}
    for alt in ("orthomosaic with objects", "density per field and on a grid"):
        found = re.search(rf'alt="{alt}"\s+src="data:image/png;base64,([^"]+)"', text)
        sizes[alt] = imread(io.BytesIO(base64.b64decode(found.group(1)))).shape[:2]
    h, w = sizes["orthomosaic with objects"]
    assert w / h == pytest.approx(image_ratio, rel=0.03) and h < 1.05 * maps.WIDTH_IN * maps.DPI
    h, w = sizes["density per field and on a grid"]  # two panels and a colour bar
    assert h < 1.1 * (maps.PANEL_IN + 0.4) * maps.DPI and 2 * image_ratio < w / h < 3.5
    assert re.search(r"<td>\d{1,3}\u00a0\d{3}</td>", text)  # e.g. 16 433 objects per ha
    assert "td { white-space: nowrap; }" in text
