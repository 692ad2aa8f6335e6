"""Per-cell crop features (tiler.yield_.cells): every column against a whole-image computation.

The pass over the image is windowed (windows of whole cells) and the plants are
binned from the object table in batches; here every column is computed
another way: the whole image read with rasterio, the labels with zarr, ExG
from DESIGN.md's formulas in NumPy, and a pandas groupby over all pixels
(counts, mean, ``quantile``); plants by a groupby of the object table; the
stand columns by intersecting every row and gap with every cell in shapely.
The percentile kernel is checked against ``np.percentile`` to the last bit.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report_vigour import exg_by_hand, whole

import tiler
from tiler.analysis.rows import analyse
from tiler.errors import ConfigError, InputError
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.yield_ import cells, cells_io
from tiler.yield_.cells_pass import by_cell, cell_percentiles

STAND = dict(row_angle=-61.0, skip_rate=0.05, double_rate=0.1)


@pytest.fixture(scope="module")
def field_run(tmp_path_factory):
    """A 40 x 50 m field at 5 cm (800 x 1000 px) with nodata corners, run, and its stand."""
    folder = tmp_path_factory.mktemp("cells")
    src = write_geotiff(SyntheticField.at(0.05, (40, 50), seed=3, **STAND), folder / "field.tif")
    tiler.run(src, folder / "out", chunk_size=256, scheduler="sync")
    analyse(folder / "out", scheduler="sync")
    return folder / "out"


# A geographic CRS (5e-7 degrees at 37 N: about 0.0555 m north-south by 0.0444 m east-west)
# and one in US survey feet (0.164 ft: 0.04999 m).
OTHER_UNITS = {
    "degrees": ("EPSG:4326", rasterio.Affine(5e-7, 0, -117.0, 0, -5e-7, 37.0), (0.045, 0.055)),
    "feet": ("EPSG:2227", rasterio.Affine(0.164, 0, 6e6, 0, -0.164, 2e6), (0.0499, 0.05)),
}


@pytest.fixture(scope="module", params=sorted(OTHER_UNITS))
def other_run(request, field_run, tmp_path_factory):
    """The same image in a geographic CRS or one in feet, run; and its pixel side range (m)."""
    crs, transform, pixel_m = OTHER_UNITS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    with rasterio.open(whole(field_run)[0]) as ds:
        profile, data = ds.profile, ds.read()
    profile.update(crs=crs, transform=transform)
    with rasterio.open(folder / "field.tif", "w", **profile) as ds:
        ds.write(data)
    tiler.run(folder / "field.tif", folder / "out", chunk_size=256, scheduler="sync")
    return folder / "out", pixel_m


def brute_force(run, cell_m: float) -> pd.DataFrame:
    """Every pixel in a DataFrame, grouped by cell: the image-based columns."""
    manifest = json.loads((run / "run.json").read_text())
    grid = cells.cell_grid(manifest["input"], cell_m)
    _, image, valid, labels = whole(run)
    rows, cols = np.indices(valid.shape)
    pixels = pd.DataFrame({
        "cell_row": (rows // grid.k).ravel(), "cell_col": (cols // grid.k).ravel(),
        "valid": valid.ravel(), "vegetation": ((labels > 0) & valid).ravel(),
        "exg": exg_by_hand(image).ravel(),
    })  # fmt: skip
    pixels = pixels[pixels["valid"]]
    by = pixels.groupby(["cell_row", "cell_col"])
    out = pd.DataFrame({"valid": by["valid"].sum(), "vegetation": by["vegetation"].sum()})
    veg = pixels[pixels["vegetation"]].groupby(["cell_row", "cell_col"])["exg"]
    out["exg_mean"] = veg.mean()
    for p in (10, 50, 90):
        out[f"exg_p{p}"] = veg.quantile(p / 100)
    objects = pd.read_parquet(run / "objects.parquet")
    objects["cell_row"] = ((objects["centroid_row"] + 0.5) // grid.k).astype(int)
    objects["cell_col"] = ((objects["centroid_col"] + 0.5) // grid.k).astype(int)
    per_cell = objects.groupby(["cell_row", "cell_col"])["area_m2"]
    out["plants"] = per_cell.size()
    out["object_area_m2"] = per_cell.mean()
    out["plants"] = out["plants"].fillna(0).astype(np.int64)
    return out.reset_index().sort_values(["cell_row", "cell_col"]).reset_index(drop=True), grid


def check_image_columns(found: cells.CellFeatures, run, cell_m: float) -> None:
    expected, grid = brute_force(run, cell_m)
    table = found.table
    assert found.grid == grid
    np.testing.assert_array_equal(table["cell_row"], expected["cell_row"])
    np.testing.assert_array_equal(table["cell_col"], expected["cell_col"])
    assert table["cell_row"].dtype == np.int32 and table["plants"].dtype == np.int64
    y = table["y"].to_numpy()
    pixel = cells.pixel_area_m2(grid.crs_wkt, grid.transform, y)
    np.testing.assert_allclose(table["imaged_m2"], expected["valid"] * pixel, rtol=1e-12)
    np.testing.assert_allclose(table["imaged_fraction"], expected["valid"] / grid.k**2)
    np.testing.assert_array_equal(table["plants"], expected["plants"])
    density = expected["plants"] / (expected["valid"] * pixel / 1e4)
    np.testing.assert_allclose(table["density_per_ha"], density, rtol=1e-12)
    cover = expected["vegetation"] / expected["valid"] * 100
    np.testing.assert_allclose(table["canopy_cover_pct"], cover, rtol=1e-12)
    np.testing.assert_allclose(table["object_area_m2"], expected["object_area_m2"], rtol=1e-12)
    for name in ("exg_mean", "exg_p10", "exg_p50", "exg_p90"):
        np.testing.assert_allclose(table[name], expected[name], rtol=1e-12, atol=1e-14)
    assert table["exg_p50"].notna().sum() > 10 and (table["plants"] > 0).sum() > 10


@pytest.mark.parametrize(("cell_m", "window"), [(3.3, 2048), (2.0, 300), (0.55, 256)])
def test_every_image_column_is_the_whole_image_groupby(field_run, cell_m, window):
    """Cells of 66, 40 and 11 px (66 and 11 do not divide 800 x 1000), one or many windows."""
    found = cells.features(field_run, cell_m, window=window, stand=False, scheduler="sync")
    assert found.grid.k == round(cell_m / 0.05)
    check_image_columns(found, field_run, cell_m)
    assert found.names == cells.feature_names("exg", False)
    assert "row_m" not in found.table.columns


def test_degrees_and_feet_give_cells_in_metres(other_run):
    run, (low, high) = other_run
    found = cells.features(run, 4.0, window=512, stand=False, scheduler="sync")
    assert low < found.grid.pixel_m < high
    assert found.grid.k == round(4.0 / found.grid.pixel_m)
    assert found.grid.cell_m == pytest.approx(found.grid.k * found.grid.pixel_m)
    check_image_columns(found, run, 4.0)


def test_the_scheduler_does_not_change_the_table(field_run):
    sync = cells.features(field_run, 2.5, window=400, scheduler="sync")
    threads = cells.features(field_run, 2.5, window=400, scheduler="threads")
    pd.testing.assert_frame_equal(pd.DataFrame(sync.table), pd.DataFrame(threads.table))


def test_cell_of_boxes_and_centres_agree(field_run):
    grid = cells.features(field_run, 3.3, stand=False, scheduler="sync").grid
    rows, cols = (g.ravel() for g in np.indices(grid.shape))
    x, y = grid.centres(rows, cols)
    np.testing.assert_array_equal(grid.cell_of(x, y), (rows, cols))
    boxes = grid.boxes()
    assert shapely.contains_xy(boxes, x, y).all()
    np.testing.assert_allclose(shapely.area(boxes), grid.cell_m**2, rtol=1e-9)
    a, b, c, d, e, f = grid.transform
    assert grid.transform_cells == (a * grid.k, b, c, d, e * grid.k, f)
    assert grid.cell_of([c - 1.0, c + 1e9], [f, f]) == (
        pytest.approx([-1, -1]),
        pytest.approx([-1, -1]),
    )


def test_the_stand_columns_are_the_rows_clipped_to_each_cell(field_run):
    found = cells.features(field_run, 3.3, scheduler="sync")
    table = found.table
    assert list(table.columns[-7:-1]) == list(cells.STAND_COLUMNS)
    rows = pd.read_parquet(field_run / "stand" / "rows.parquet")
    gaps = pd.read_parquet(field_run / "stand" / "gaps.parquet")
    assert len(rows) > 5 and len(gaps) > 5
    lines = shapely.from_wkb(rows["geometry"])
    gap_lines = shapely.from_wkb(gaps["geometry"])
    a, _, c, _, e, f = found.grid.transform_cells
    i, j = table["cell_row"].to_numpy(), table["cell_col"].to_numpy()
    boxes = shapely.box(c + j * a, f + (i + 1) * e, c + (j + 1) * a, f + i * e)
    share = shapely.length(shapely.intersection(lines[None, :], boxes[:, None]))
    share = share / shapely.length(lines)[None, :]
    metres = share * rows["length_m"].to_numpy()[None, :]
    row_m = metres.sum(axis=1)
    np.testing.assert_allclose(table["row_m"], row_m, rtol=1e-9, atol=1e-9)
    assert row_m.sum() == pytest.approx(rows["length_m"].sum(), rel=1e-9)  # all inside
    gap_share = shapely.length(shapely.intersection(gap_lines[None, :], boxes[:, None]))
    gap_m = (gap_share / shapely.length(gap_lines)[None, :] * gaps["length_m"].to_numpy()).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(table["gap_fraction"], gap_m / row_m, rtol=1e-9)
        np.testing.assert_allclose(table["plants_per_row_m"], table["plants"] / row_m, rtol=1e-12)
        for name in ("spacing_cv", "miss_pct", "multiples_pct"):
            value = rows[name].to_numpy()[None, :]
            weight = np.where(np.isfinite(value), metres, 0)
            mean = np.nansum(weight * value, axis=1) / weight.sum(axis=1)
            np.testing.assert_allclose(table[name], mean, rtol=1e-9, atol=1e-12)
    assert (table["row_m"] > 0).sum() > 20 and (table["gap_fraction"] > 0).any()
    assert found.names == cells.feature_names("exg", True)


def test_written_files_are_the_table(field_run, tmp_path):
    found = cells.features(field_run, 3.3, scheduler="sync")
    parquet, tif = cells_io.write(found, tmp_path / "features")
    back = pq.read_table(parquet)
    meta = json.loads(back.schema.metadata[b"tiler_yield_cells"])
    assert meta["k"] == found.grid.k and meta["features"] == list(found.names)
    assert meta["index"] == "exg" and meta["units"]["density_per_ha"] == "1/ha"
    assert meta["tiler_version"] == tiler.__version__ and meta["cell_m"] == found.grid.cell_m
    assert meta["fingerprint_sha256"] == json.loads((field_run / "run.json").read_text())[
        "input"]["fingerprint_sha256"]  # fmt: skip
    import geopandas as gpd

    table = gpd.read_parquet(parquet)
    pd.testing.assert_frame_equal(pd.DataFrame(table), pd.DataFrame(found.table))
    assert table.crs == found.table.crs
    with rasterio.open(tif) as ds:
        assert ds.descriptions == found.names
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert tuple(ds.transform)[:6] == pytest.approx(found.grid.transform_cells)
        assert ds.shape == found.grid.shape and ds.crs.to_wkt() is not None
        assert ds.tags(2)["unit"] == "1/ha"
        bands = ds.read()
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    i, j = found.table["cell_row"].to_numpy(), found.table["cell_col"].to_numpy()
    for band, name in enumerate(found.names):
        expected = found.table[name].to_numpy(dtype=np.float64).astype(np.float32)
        np.testing.assert_array_equal(bands[band, i, j], expected)
    off = np.ones(found.grid.shape, bool)
    off[i, j] = False
    assert off.any() and np.isnan(bands[:, off]).all()


def test_a_stand_folder_without_its_files_is_one_line(field_run, tmp_path):
    shutil.copy(field_run / "stand" / "rows.parquet", tmp_path / "rows.parquet")
    with pytest.raises(InputError, match=r"no gaps\.parquet here"):
        cells.features(field_run, 3.3, stand=tmp_path, scheduler="sync")


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(1, 9),
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    seed=st.integers(0, 2**32 - 1),
    nan_share=st.floats(0, 1),
    ties=st.booleans(),
)
def test_the_percentile_kernel_is_numpys(k, shape, seed, nan_share, ties):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape)
    if ties:
        values = np.round(values, 1)
    values[rng.random(shape) < nan_share] = np.nan
    per_cell = by_cell(values, k, np.nan)
    found = cell_percentiles(per_cell.copy())
    for index in np.ndindex(per_cell.shape[:2]):
        finite = per_cell[index][np.isfinite(per_cell[index])]
        if finite.size == 0:
            assert np.isnan(found[(slice(None), *index)]).all()
            continue
        np.testing.assert_array_equal(
            found[(slice(None), *index)], np.percentile(finite, [10, 50, 90])
        )


def test_by_cell_puts_each_cells_pixels_together():
    plane = np.arange(7 * 5).reshape(7, 5)
    out = by_cell(plane, 3, -1)
    assert out.shape == (3, 2, 9)
    assert sorted(out[1, 1]) == [-1, -1, -1, 18, 19, 23, 24, 28, 29]
    assert sorted(out[2, 0]) == [-1] * 6 + [30, 31, 32]


def test_without_an_index_there_are_no_index_columns(field_run):
    plain = cells.features(field_run, 3.3, index="none", stand=False, scheduler="sync")
    full = cells.features(field_run, 3.3, stand=False, scheduler="sync")
    assert plain.index is None and not any(c.startswith("exg") for c in plain.table.columns)
    assert plain.names == cells.feature_names(None, False) == full.names[:4]
    same = [c for c in plain.table.columns if c != "geometry"]
    pd.testing.assert_frame_equal(pd.DataFrame(plain.table[same]), pd.DataFrame(full.table[same]))


@pytest.mark.parametrize("cell_m", [0.0, -5.0, float("nan")])
def test_a_bad_cell_size_is_one_line(field_run, cell_m):
    with pytest.raises(ConfigError, match="expected a positive number of metres"):
        cells.features(field_run, cell_m, scheduler="sync")


def test_a_run_without_a_stand_has_no_stand_columns_unless_one_is_required(other_run):
    run, _ = other_run
    found = cells.features(run, 4.0, scheduler="sync")  # no RUN/stand: none found
    assert "row_m" not in found.table.columns
    with pytest.raises(InputError, match=r"no stand \(rows\.parquet, gaps\.parquet\)"):
        cells.features(run, 4.0, stand=True, scheduler="sync")
