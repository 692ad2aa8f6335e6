"""`tiler rows`: the stand per field of a finished run, against find_stand on each field's
points selected another way (geopandas' spatial join on the whole table), the files as
GeoParquet, a geographic CRS against UTM, a distributed cluster, the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import CRS, Transformer

import tiler
from tiler.analysis import analyse
from tiler.errors import InputError, OutputError
from tiler.io import objects_table, output, run_record
from tiler.io.targets import claim
from tiler.stand import Settings, field_columns, find_stand

UTM = CRS.from_epsg(32633)
ORIGIN = (500_000.0, 5_000_000.0)  # UTM 33N: 15 E, about 45.1 N


def planted(
    rng, centre, size, azimuth, row_spacing=0.76, plant_spacing=0.18, missing=0.1, weeds=0.02
) -> np.ndarray:
    """Plants on straight rows at ``azimuth`` (degrees clockwise from north) over a square of
    side ``size`` m about ``centre``, with ``missing`` of them gone and ``weeds`` anywhere."""
    half = size / 2 * np.sqrt(2)
    across = np.arange(-half, half, row_spacing)
    along = np.arange(-half, half, plant_spacing)
    u, v = (a.ravel() for a in np.meshgrid(across, along))
    v = v + rng.normal(0, 0.02, v.shape)
    keep = rng.random(u.size) >= missing
    u, v = u[keep], v[keep]
    t = np.radians(azimuth)  # v along the row (azimuth), u across it
    x, y = u * np.cos(t) + v * np.sin(t), -u * np.sin(t) + v * np.cos(t)
    inside = (np.abs(x) < size / 2) & (np.abs(y) < size / 2)
    xy = np.column_stack([x[inside], y[inside]])
    n_weeds = int(weeds * len(xy))
    xy = np.vstack([xy, rng.uniform(-size / 2, size / 2, (n_weeds, 2))])
    return xy + np.asarray(centre)


def finished_run(folder: Path, xy: np.ndarray, crs: CRS, pixel: float, **input_extra) -> Path:
    """A finished run folder as `tiler run` writes it: objects.parquet (the real writer)
    and a complete run.json, its image the points' extent at ``pixel`` units a pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    x0, y1 = xy[:, 0].min() - 5 * pixel, xy[:, 1].max() + 5 * pixel
    width = int(np.ceil((xy[:, 0].max() + 5 * pixel - x0) / pixel))
    height = int(np.ceil((y1 - (xy[:, 1].min() - 5 * pixel)) / pixel))
    transform = (pixel, 0.0, x0, 0.0, -pixel, y1)
    n = len(xy)
    cols, rows = (xy[:, 0] - x0) / pixel - 0.5, (y1 - xy[:, 1]) / pixel - 0.5
    stats = {
        "count": np.full(n, 4.0), "sum_row": rows * 4, "sum_col": cols * 4,
        "min_row": rows.astype(np.int64), "min_col": cols.astype(np.int64),
        "max_row": rows.astype(np.int64), "max_col": cols.astype(np.int64),
    }  # fmt: skip
    columns = objects_table.object_columns(stats, transform, crs.to_wkt())
    objects_table.write_objects(folder, columns, crs.to_wkt())
    inputs = {"crs_wkt": crs.to_wkt(), "transform": transform, "height": height, "width": width}
    run_record.write_manifest(folder, {"complete": True, "input": {**inputs, **input_extra}})
    return folder


@pytest.fixture(scope="module")
def layout():
    """Four 40 m plots in UTM: rows at 20, 75 and 150 degrees, and random points."""
    rng = np.random.default_rng(16)
    centres = [(ORIGIN[0] + 50 * i, ORIGIN[1]) for i in range(4)]
    parts = [planted(rng, c, 40, a) for c, a in zip(centres, (20, 75, 150), strict=False)]
    parts.append(rng.uniform(-20, 20, (3000, 2)) + centres[3])
    plots = [shapely.box(cx - 19, cy - 19, cx + 19, cy + 19) for cx, cy in centres]
    fields = gpd.GeoDataFrame({"plot": ["A", "B", "C", "R"]}, geometry=plots, crs=UTM)
    return np.vstack(parts), fields


@pytest.fixture(scope="module")
def utm_run(layout, tmp_path_factory):
    xy, _ = layout
    return finished_run(tmp_path_factory.mktemp("rows") / "run", xy, UTM, 0.01)


@pytest.fixture(scope="module")
def stand(utm_run, layout, tmp_path_factory):
    _, fields = layout
    out = tmp_path_factory.mktemp("stand") / "out"
    return analyse(utm_run, fields, "plot", out, scheduler="sync")


def independent_points(run: Path, fields: gpd.GeoDataFrame) -> dict[str, np.ndarray]:
    """Each field's points by geopandas' spatial join of the whole table (in table order)."""
    objects = gpd.read_parquet(run / "objects.parquet")
    joined = gpd.sjoin(objects, fields, predicate="within").sort_index()
    return {
        name: np.column_stack([group.geometry.x, group.geometry.y])
        for name, group in joined.groupby("plot")
    }


def test_each_field_is_find_stand_on_its_own_points(utm_run, layout, stand):
    _, fields = layout
    points = independent_points(utm_run, fields)
    assert stand.fields["plot"].tolist() == ["A", "B", "C", "R"]
    assert stand.fields.columns.tolist() == ["plot", *field_columns(Settings())]
    for name, row in stand.fields.set_index("plot").iterrows():
        expected = find_stand(points[name]).summary
        for column, value in expected.items():
            if isinstance(value, str):
                assert row[column] == value
            else:
                assert row[column] == pytest.approx(value, nan_ok=True, rel=1e-12), (name, column)
    ok = stand.fields.set_index("plot")["stand_status"]
    assert ok.tolist() == ["ok", "ok", "ok", "no rows"]
    assert stand.fields.set_index("plot").loc["A", "row_spacing_m"] == pytest.approx(0.76, 0.01)
    assert stand.messages == {"R": f"no rows found: {find_stand(points['R']).message}"}


def test_rows_and_gaps_are_geoparquet_with_lengths_in_metres(utm_run, layout, stand):
    _, fields = layout
    rows, gaps = stand.read_rows(), stand.read_gaps()
    assert rows.crs == UTM and gaps.crs == UTM
    assert rows.columns.tolist()[:2] == ["plot", "row"] and rows.columns[-1] == "geometry"
    assert set(rows.geom_type) == {"LineString"} and set(gaps.geom_type) == {"LineString"}
    assert "R" not in set(rows["plot"]) and "R" not in set(gaps["plot"])  # no invented rows
    points = independent_points(utm_run, fields)
    for name in "ABC":
        direct = find_stand(points[name])
        mine = rows[rows["plot"] == name]
        assert len(mine) == len(direct.rows["row"])
        np.testing.assert_allclose(mine["plants"], direct.rows["plants"])
        np.testing.assert_allclose(mine.geometry.length, mine["length_m"], atol=1e-6)
        field_gaps = gaps[gaps["plot"] == name]
        assert len(field_gaps) == len(direct.gaps["row"])
        np.testing.assert_allclose(field_gaps.geometry.length, field_gaps["length_m"], atol=1e-6)
        # numbered 1..n along each row
        for _, g in field_gaps.groupby("row"):
            assert g["gap"].tolist() == list(range(1, len(g) + 1))
    assert rows.total_bounds == pytest.approx(
        json.loads(__import__("pyarrow.parquet").parquet.read_schema(stand.rows_path)
                   .metadata[b"geo"])["columns"]["geometry"]["bbox"], abs=1e-6
    )  # fmt: skip
    counts, edges = stand.histograms["A"]
    assert counts.sum() == len(find_stand(points["A"]).spacings) and np.isinf(edges[-1])
    csv = pd.read_csv(stand.csv_path)
    assert csv["stand_status"].tolist() == ["ok", "ok", "ok", "no rows"]
    # the parts are merged and gone
    assert sorted(p.name for p in stand.rows_path.parent.iterdir()) == [
        "gaps.parquet", "rows.parquet", "stand.csv"
    ]  # fmt: skip


def test_a_geographic_crs_is_measured_in_metres(layout, stand, tmp_path):
    xy, fields = layout
    to_lonlat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True)
    lonlat = np.column_stack(to_lonlat.transform(xy[:, 0], xy[:, 1]))
    run = finished_run(tmp_path / "run", lonlat, CRS.from_epsg(4326), 1e-7)
    result = analyse(run, fields, "plot", tmp_path / "out", scheduler="threads")
    mine, utm = result.fields.set_index("plot"), stand.fields.set_index("plot")
    for column in ("row_spacing_m", "plants_per_row_m", "stand_per_ha", "row_length_m"):
        np.testing.assert_allclose(mine.loc[list("ABC"), column], utm.loc[list("ABC"), column],
                                   rtol=0.005)  # fmt: skip
    gaps = result.read_gaps()
    assert gaps.crs == CRS.from_epsg(4326)
    metres = gaps.to_crs(UTM).geometry.length
    np.testing.assert_allclose(metres, gaps["length_m"], rtol=0.005)


def test_feet_are_converted(layout, stand, tmp_path):
    xy, fields = layout
    feet = CRS.from_epsg(2263)  # NAD83 / New York Long Island (ftUS)
    factor = feet.axis_info[0].unit_conversion_factor
    local = xy - np.asarray(ORIGIN) + 300_000  # the same layout, in feet of that CRS
    run = finished_run(tmp_path / "run", local / factor, feet, 0.03)
    moved = fields.set_geometry(
        fields.geometry.translate(300_000 - ORIGIN[0], 300_000 - ORIGIN[1]).scale(
            1 / factor, 1 / factor, origin=(0, 0)
        )
    ).set_crs(feet, allow_override=True)
    result = analyse(run, moved, "plot", tmp_path / "out", scheduler="sync")
    np.testing.assert_allclose(
        result.fields.set_index("plot").loc[list("ABC"), "row_spacing_m"],
        stand.fields.set_index("plot").loc[list("ABC"), "row_spacing_m"], rtol=1e-6,
    )  # fmt: skip


def test_a_distributed_cluster_gives_the_same(utm_run, layout, stand, tmp_path):
    from distributed import Client, LocalCluster

    _, fields = layout
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            result = tiler.rows(utm_run, fields, "plot", tmp_path / "out", scheduler=client)
    pd.testing.assert_frame_equal(result.fields, stand.fields)
    assert result.read_gaps().equals(stand.read_gaps())


def test_the_default_field_is_the_footprint_and_too_few_plants_are_flagged(tmp_path):
    rng = np.random.default_rng(3)
    run = finished_run(tmp_path / "run", planted(rng, ORIGIN, 1.0, 30), UTM, 0.01)
    result = analyse(run)
    assert result.rows_path == run / "stand" / "rows.parquet"
    assert result.fields["field"].tolist() == ["footprint"]
    assert result.fields["stand_status"].tolist() == ["too few plants"]
    assert result.messages["footprint"].startswith("too few plants: ")
    assert len(result.read_rows()) == 0 and result.read_rows().crs == UTM
    with pytest.raises(OutputError, match="holds a tiler stand analysis; pass --overwrite"):
        analyse(run)
    assert analyse(run, overwrite=True).fields["stand_status"].tolist() == ["too few plants"]
    # DST/stand is tiler's own: a run over DST with --overwrite may replace it
    found = claim(run, output.RUN_OUTPUTS, overwrite=True)
    assert run / "stand" in found


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tiler.cli", "rows", *map(str, args)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_cli_prints_each_field_and_the_files(utm_run, layout, tmp_path):
    _, fields = layout
    path = tmp_path / "plots.geojson"
    fields.to_file(path)
    proc = cli(utm_run, "--fields", path, "--field-id", "plot", "--out", tmp_path / "o",
               "--plant-spacing", "18cm", "--gap-classes", "0.5m,1m", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("A  ") and " rows  spacing 0.7" in lines[0]
    assert "emergence" in lines[0] and "miss" in lines[0] and ".0 " not in lines[0]
    assert lines[3] == "R  no rows found"
    assert lines[4].startswith("R: no rows found: no row structure in ")
    assert f"rows:      {tmp_path / 'o' / 'rows.parquet'}" in proc.stdout
    table = pd.read_csv(tmp_path / "o" / "stand.csv")
    assert "gaps_0.5_1m" in table.columns and table["plant_spacing_m"][0] == 0.18
    text = (tmp_path / "o" / "stand.csv").read_text().splitlines()
    header = text[0].split(",")
    a, r = text[1].split(","), text[4].split(",")
    for column in ("rows", "doubles", "skips", "gaps", "gaps_0.5_1m"):  # counts as integers
        assert a[header.index(column)].isdigit(), (column, a[header.index(column)])
    assert r[header.index("doubles")] == "" and r[header.index("stand_status")] == "no rows"


def test_bad_input_is_one_line(utm_run, layout, tmp_path):
    _, fields = layout
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    proc = cli(unfinished)
    assert proc.returncode != 0
    assert proc.stderr == f"tiler: error: {unfinished}: no run.json; not a finished tiler run\n"
    away = tmp_path / "away.geojson"
    fields.set_geometry(fields.geometry.translate(10_000, 0)).to_file(away)
    proc = cli(utm_run, "--fields", away, "--out", tmp_path / "a")
    assert proc.returncode != 0
    assert proc.stderr == f"tiler: error: {away}: no field overlaps the image of {utm_run}\n"
    pixel = finished_run(tmp_path / "pixel", np.zeros((3, 2)) + 5, UTM, 1.0,
                         options={"georeferencing": "none"})  # fmt: skip
    proc = cli(pixel)
    assert proc.returncode != 0 and len(proc.stderr.splitlines()) == 1
    assert "--pixel-only run has no map coordinates" in proc.stderr
    proc = cli(utm_run, "--row-spacing", "-1m", "--out", tmp_path / "b")
    assert proc.returncode != 0 and len(proc.stderr.splitlines()) == 1
    with pytest.raises(InputError, match="no column 'name' for --field-id"):
        analyse(utm_run, fields, "name", tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_given_settings_are_used(utm_run, layout, tmp_path):
    _, fields = layout
    settings = Settings(row_spacing=0.76, row_azimuth=20.0, plant_spacing=0.18,
                        seeding_rate=80_000)  # fmt: skip
    one = fields.iloc[:1]
    result = analyse(utm_run, one, "plot", tmp_path / "o", settings=settings, scheduler="sync")
    row = result.fields.iloc[0]
    assert row["row_spacing_m"] == 0.76 and row["row_azimuth_deg"] == 20.0
    assert row["emergence_pct"] == pytest.approx(row["stand_per_ha"] / 80_000 * 100)
    assert result.settings is settings
