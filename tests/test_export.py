"""Exports of a finished run (tiler.export, tiler.io.export_*): COG, polygons, CSV, the CLI.

Everything is written to real files and read back with rasterio, tifffile,
geopandas, pandas and the csv module. The oracle is the run's own label array
and object table: the COG must hold the labels pixel for pixel, the polygons
must rasterize back to them and have their objects' areas, the CSV must read
back equal to objects.parquet.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import warnings
from pathlib import Path

import conftest
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import rioxarray
import shapely
import tifffile
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS, Geod, Proj, Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import rasterize
from scipy import ndimage
from test_cli import assert_one_line_error, tiler

import tiler as tiler_api
from tiler import export as ex
from tiler.errors import ConfigError, InputError, OutputError
from tiler.io import export_raster as er
from tiler.io import export_table as et
from tiler.io import export_vector as ev
from tiler.io import label_store, objects_table, output, run_record
from tiler.io.objects_table import OBJECT_COLUMNS
from tiler.synthetic import SyntheticField, write_geotiff

TRANSFORM = Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)
FOUR = ndimage.generate_binary_structure(2, 1)
EIGHT = ndimage.generate_binary_structure(2, 2)


# --- runs to export ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def field_run(tmp_path_factory) -> Path:
    """A real run: 1100 x 900 px synthetic field in 256-px tiles (objects cross tiles)."""
    root = tmp_path_factory.mktemp("export")
    src = write_geotiff(SyntheticField(height=1100, width=900, seed=3), root / "field.tif")
    return tiler_api.run(src, root / "run", chunk_size=256, scheduler="sync").dst


def read_labels(dst: Path) -> np.ndarray:
    return zarr.open_array(str(dst / output.LABELS), path="labels", mode="r")[:]


def made_run(dst: Path, labels: np.ndarray, chunks, *, crs="EPSG:32611") -> Path:
    """A complete run directory around a given label array (any label values, any dtype)."""
    dst.mkdir(parents=True)
    crs_wkt = CRS.from_user_input(crs).to_wkt()
    path = label_store.create_label_store(
        dst, labels.shape, tuple(chunks), labels.dtype, crs_wkt, tuple(TRANSFORM)[:6]
    )
    zarr.open_array(path, mode="r+")[:] = labels
    label_store.finish_label_store(dst)
    ids = np.unique(labels[labels != 0])
    rows, cols = np.nonzero(labels)
    which = np.searchsorted(ids, labels[rows, cols])
    n = len(ids)
    lowest = np.full(n, np.iinfo(np.int64).max)
    highest = np.full(n, -1)
    stats = {
        "count": np.bincount(which, minlength=n).astype(np.float64),
        "sum_row": np.bincount(which, rows, minlength=n),
        "sum_col": np.bincount(which, cols, minlength=n),
    }
    for name, values in (("row", rows), ("col", cols)):
        stats[f"min_{name}"], stats[f"max_{name}"] = lowest.copy(), highest.copy()
        np.minimum.at(stats[f"min_{name}"], which, values)
        np.maximum.at(stats[f"max_{name}"], which, values)
    columns = objects_table.object_columns(stats, tuple(TRANSFORM)[:6])
    columns["label"] = ids.astype(np.int64)
    objects_table.write_objects(dst, columns, crs_wkt)
    run_record.write_manifest(dst, {"complete": True})
    return dst


def tricky_labels() -> np.ndarray:
    """24 x 24 labels for 8 x 8 tiles: holes, nested objects, diagonal joins on tile corners."""
    lab = np.zeros((24, 24), np.uint32)
    lab[4:13, 4:13] = 1  # 1: a ring around the tile corner (8, 8) ...
    lab[6:11, 6:11] = 0
    lab[7:10, 7:10] = 2  # 2: ... with an object in its hole, on the same corner
    lab[15, 15] = lab[16, 16] = 3  # 3: two pixels joined only at the tile corner (16, 16)
    lab[14, 1:7] = 4  # 4: a U whose arms are apart in the tiles below
    lab[14:20, 1] = lab[14:20, 6] = 4
    lab[1, 17] = lab[2, 18] = lab[2, 19] = 5  # 5: a diagonal join inside one tile
    lab[4:12, 13:20] = 6  # 6: beside 1, with a hole on the tile corner (8, 16)
    lab[7:9, 15:17] = 0
    lab[18:24, 22:24] = lab[22:24, 15:24] = 7  # 7: along the image border, across tiles
    lab[20, 8:11] = lab[21, 8] = lab[21, 10] = lab[22, 8:10] = 8  # 8: hole touching outside
    return lab


def random_labels(seed: int, shape=(60, 50)) -> np.ndarray:
    """Noise labelled with 8-connectivity, as tiler labels: many holes and diagonal joins."""
    rng = np.random.default_rng(seed)
    labels, _ = ndimage.label(rng.random(shape) < 0.55, structure=EIGHT)
    return labels.astype(np.uint32)


# --- checks ------------------------------------------------------------------------------------


def assert_cog_layout(path: Path) -> int:
    """The COG layout GDAL's validate_cloud_optimized_geotiff.py checks, read with tifffile.

    The structural metadata ghost header; every level tiled; the full
    resolution IFD first, then the overviews largest first; every IFD before
    any tile data; tile data row-major within a level, the smallest overview's
    first and the full resolution's last. Returns the number of overviews.
    """
    with tifffile.TiffFile(path) as tif:
        fh = tif.filehandle
        fh.seek(16 if tif.is_bigtiff else 8)
        ghost = fh.read(400)
        pages = list(tif.pages)
        assert ghost.startswith(b"GDAL_STRUCTURAL_METADATA_SIZE="), ghost[:60]
        assert b"LAYOUT=IFDS_BEFORE_DATA" in ghost and b"BLOCK_ORDER=ROW_MAJOR" in ghost
        assert b"KNOWN_INCOMPATIBLE_EDITION=NO" in ghost
        assert all(page.is_tiled for page in pages)
        assert all((page.tilewidth, page.tilelength) == (512, 512) for page in pages)
        assert [page.subfiletype for page in pages] == [0] + [1] * (len(pages) - 1)
        sizes = [page.shape[0] * page.shape[1] for page in pages]
        assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
        ifds = [page.offset for page in pages]
        assert ifds == sorted(ifds)
        data = [list(page.dataoffsets) for page in pages]
        assert all(0 not in offsets for offsets in data)  # no sparse tiles
        assert max(ifds) < min(min(offsets) for offsets in data)
        assert all(offsets == sorted(offsets) for offsets in data)
        for smaller, larger in zip(data[:0:-1], data[-2::-1], strict=True):
            assert max(smaller) < min(larger)
        return len(pages) - 1


def only_files(folder: Path, *names: str) -> None:
    """Nothing else (no temporary file) was left in ``folder``."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def four_connected_parts(labels: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """For each object, the number of its 4-connected parts (within its bbox)."""
    parts = []
    for row in table.itertuples():
        box = labels[row.bbox_min_row : row.bbox_max_row, row.bbox_min_col : row.bbox_max_col]
        parts.append(ndimage.label(box == row.label, structure=FOUR)[1])
    return np.array(parts)


def assert_exact_polygons(frame: gpd.GeoDataFrame, labels: np.ndarray, transform: Affine) -> None:
    """Valid, of their objects' area and 4-connected parts, rasterizing back to ``labels``."""
    geoms = frame.geometry.to_numpy()
    assert shapely.is_valid(geoms).all()
    assert set(frame.geom_type) <= {"Polygon", "MultiPolygon"}
    # In map units, to the precision of a shoelace sum over coordinates near 4e6 m ...
    np.testing.assert_allclose(shapely.area(geoms), frame["area_m2"], rtol=1e-8)
    # ... and exactly in pixels: every vertex is a pixel corner.
    pixels = shapely.transform(geoms, lambda xy: np.column_stack((~transform) * xy.T))
    corners = shapely.transform(pixels, np.round)
    offsets = shapely.get_coordinates(pixels) - shapely.get_coordinates(corners)
    assert np.abs(offsets).max() < 1e-6
    np.testing.assert_array_equal(shapely.area(corners), frame["area_px"])
    np.testing.assert_array_equal(
        shapely.get_num_geometries(geoms), four_connected_parts(labels, frame)
    )
    back = rasterize(
        zip(geoms, frame["label"].astype(labels.dtype), strict=True),
        out_shape=labels.shape,
        transform=transform,
        dtype=labels.dtype,
    )
    np.testing.assert_array_equal(back, labels)


def field_transform() -> Affine:
    return SyntheticField(height=1100, width=900, seed=3).transform


def read_polygons(path: Path) -> gpd.GeoDataFrame:
    if path.suffix == ".gpkg":
        return gpd.read_file(path, layer="objects", engine="pyogrio")
    return gpd.read_parquet(path)


# --- COG ---------------------------------------------------------------------------------------


def test_cog_holds_the_labels_with_nearest_overviews(field_run, tmp_path):
    path = er.export_cog(field_run, tmp_path / "labels.tif")
    labels = read_labels(field_run)
    with rasterio.open(path) as ds:
        assert ds.driver == "GTiff" and ds.count == 1 and ds.dtypes == ("uint32",)
        assert ds.crs.to_epsg() == 32611
        assert ds.transform == field_transform()
        assert ds.nodata is None
        assert ds.profile["tiled"] and ds.block_shapes == [(512, 512)]
        assert ds.compression.name == "deflate"
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2, 4]
        np.testing.assert_array_equal(ds.read(1), labels)
    for level, factor in enumerate([2, 4]):
        with rasterio.open(path, overview_level=level) as ov:
            np.testing.assert_array_equal(ov.read(1), labels[::factor, ::factor])
    assert assert_cog_layout(path) == 2
    only_files(tmp_path, "labels.tif")


def test_cog_is_written_in_windows_never_whole(field_run, tmp_path, monkeypatch):
    reads = []
    read = er._read_window

    def spy(run, window, mask):
        block = read(run, window, mask)
        reads.append(block.shape)
        return block

    monkeypatch.setattr(er, "_read_window", spy)
    er.export_cog(field_run, tmp_path / "labels.tif")
    # 256-px chunks: windows of whole 512-px blocks, full rows (they fit WINDOW_BYTES).
    assert sorted(reads) == [(76, 900), (512, 900), (512, 900)]


@pytest.mark.parametrize(
    "shape, chunks, itemsize",
    [((5000, 7000), (2048, 2048), 4), ((1100, 900), (256, 256), 4),
     ((3000, 40000), (1000, 700), 8), ((10, 10), (3, 3), 1)],
)  # fmt: skip
def test_cog_windows_cover_the_image_once_in_whole_blocks(shape, chunks, itemsize):
    one_chunk = -(-chunks[0] // 512) * -(-chunks[1] // 512) * 512 * 512 * itemsize
    covered = np.zeros(shape, np.uint8)
    for window in er.cog_windows(shape, chunks, itemsize):
        r0, r1, c0, c1 = window.row_start, window.row_stop, window.col_start, window.col_stop
        assert r0 % 512 == 0 and c0 % 512 == 0
        assert r1 % 512 == 0 or r1 == shape[0]
        assert c1 % 512 == 0 or c1 == shape[1]
        assert (r1 - r0) * (c1 - c0) * itemsize <= max(er.WINDOW_BYTES, one_chunk)
        covered[r0:r1, c0:c1] += 1
    assert (covered == 1).all()


def test_cog_mask_marks_the_inputs_nodata(field_run, tmp_path):
    """Nodata (255) exactly where the input's GDAL dataset mask is 0 (the synthetic field's
    ragged border, across tile borders, over objects and background)."""
    labels = read_labels(field_run)
    with rasterio.open(run_record.read_manifest(field_run)["input"]["path"]) as src:
        valid = src.dataset_mask()
    assert (valid == 0).any() and (valid > 0).any()
    path = er.export_cog(field_run, tmp_path / "mask.tif", mask=True)
    expected = np.where(valid == 0, 255, labels != 0).astype(np.uint8)
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("uint8",) and ds.nodata == 255
        assert ds.crs.to_epsg() == 32611 and ds.transform == field_transform()
        np.testing.assert_array_equal(ds.read(1), expected)
        np.testing.assert_array_equal(ds.read_masks(1) == 0, valid == 0)
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    with rasterio.open(path, overview_level=0) as ov:
        np.testing.assert_array_equal(ov.read(1), expected[::2, ::2])
    assert assert_cog_layout(path) == 2


def test_cog_mask_needs_the_input(field_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(field_run, dst)
    manifest = run_record.read_manifest(dst)
    manifest["input"]["path"] = str(tmp_path / "moved.tif")
    run_record.write_manifest(dst, manifest)
    with pytest.raises(InputError, match="moved.tif: the run's input is gone"):
        er.export_cog(dst, tmp_path / "mask.tif", mask=True)
    assert not (tmp_path / "mask.tif").exists()
    path = er.export_cog(dst, tmp_path / "labels.tif")  # the labels need only the labels
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), read_labels(dst))


def test_cog_mask_refuses_a_changed_input(field_run, tmp_path):
    """The mask is the run's only while its input is the file the run read."""
    dst, src = tmp_path / "run", tmp_path / "field.tif"
    shutil.copytree(field_run, dst)
    shutil.copy(run_record.read_manifest(field_run)["input"]["path"], src)
    manifest = run_record.read_manifest(dst)
    manifest["input"]["path"] = str(src)
    run_record.write_manifest(dst, manifest)
    with rasterio.open(src, "r+") as ds:  # another image now: its first block's bytes differ
        ds.write(np.zeros((ds.count, 256, 256), ds.dtypes[0]), window=((0, 256), (0, 256)))
    with pytest.raises(InputError, match="field.tif: changed since the run"):
        er.export_cog(dst, tmp_path / "mask.tif", mask=True)
    assert not (tmp_path / "mask.tif").exists()


def test_cog_keeps_uint64_labels(tmp_path):
    labels = np.zeros((700, 600), np.uint64)
    labels[10:300, 20:500] = 2**40 + 7
    labels[400:690, 100:200] = 2**33
    dst = made_run(tmp_path / "run", labels, (128, 128))
    path = er.export_cog(dst, tmp_path / "labels.tiff")
    with rasterio.open(path) as ds:
        assert ds.dtypes == ("uint64",) and ds.transform == TRANSFORM
        np.testing.assert_array_equal(ds.read(1), labels)
        assert ds.overviews(1) == [2]
    assert assert_cog_layout(path) == 1


def test_small_cog_has_no_overviews(tmp_path):
    dst = made_run(tmp_path / "run", tricky_labels(), (8, 8))
    path = er.export_cog(dst, tmp_path / "small.tif")
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [] and ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(ds.read(1), tricky_labels())
    assert assert_cog_layout(path) == 0


def test_failed_cog_leaves_the_old_file_and_no_temporary(field_run, tmp_path, monkeypatch):
    target = tmp_path / "labels.tif"
    target.write_bytes(b"the previous export")
    read = er._read_window

    def failing(run, window, mask):
        if window.row_start > 0:
            raise RuntimeError("disk on fire")
        return read(run, window, mask)

    monkeypatch.setattr(er, "_read_window", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        er.export_cog(field_run, target)
    assert target.read_bytes() == b"the previous export"
    only_files(tmp_path, "labels.tif")


def test_overview_factors_follow_gdal():
    assert er.overview_factors((512, 512)) == []
    assert er.overview_factors((513, 10)) == [2]
    assert er.overview_factors((4000, 4000)) == [2, 4, 8]
    assert er.overview_factors((100_000, 60_000)) == [2, 4, 8, 16, 32, 64, 128, 256]


# --- polygons ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_polygons_of_a_run_are_exact(field_run, tmp_path, suffix):
    path = ex.export_polygons(field_run, tmp_path / f"objects{suffix}")
    only_files(tmp_path, f"objects{suffix}")
    frame = read_polygons(path)
    table = tiler_api.read_objects(field_run)
    labels = read_labels(field_run)
    assert list(frame.columns) == [*OBJECT_COLUMNS, "geometry"]
    assert frame.crs == table.crs and frame.crs.to_epsg() == 32611
    pd.testing.assert_frame_equal(
        pd.DataFrame(frame.drop(columns="geometry")), pd.DataFrame(table.drop(columns="geometry"))
    )
    # The test means something: objects cross tile borders, and some join only diagonally.
    crosses = (table.bbox_min_row // 256 != (table.bbox_max_row - 1) // 256) | (
        table.bbox_min_col // 256 != (table.bbox_max_col - 1) // 256
    )
    assert crosses.sum() > 50
    assert_exact_polygons(frame, labels, field_transform())
    parts = shapely.get_num_geometries(frame.geometry.to_numpy())
    assert (parts > 1).any()
    if suffix == ".gpkg":  # one geometry type per GeoPackage layer
        assert set(frame.geom_type) == {"MultiPolygon"}
    else:
        np.testing.assert_array_equal(frame.geom_type == "MultiPolygon", parts > 1)


def test_polygons_of_tricky_shapes(tmp_path):
    labels = tricky_labels()
    dst = made_run(tmp_path / "run", labels, (8, 8))
    path = ex.export_polygons(dst, tmp_path / "objects.parquet")
    frame = read_polygons(path)
    assert_exact_polygons(frame, labels, TRANSFORM)
    geoms = dict(zip(frame["label"], frame.geometry, strict=True))
    kinds = {
        label: (geom.geom_type, len(getattr(geom, "interiors", ())))
        for label, geom in geoms.items()
    }
    assert kinds == {
        1: ("Polygon", 1),  # a ring across four tiles, one hole
        2: ("Polygon", 0),  # in that hole
        3: ("MultiPolygon", 0),  # joined only across a tile corner
        4: ("Polygon", 0),  # the U's arms, apart below, joined in the tile above
        5: ("MultiPolygon", 0),  # joined only diagonally inside one tile
        6: ("Polygon", 1),  # its hole on a tile corner
        7: ("Polygon", 0),
        8: ("Polygon", 1),  # its hole touching the outline at a corner
    }
    assert len(geoms[3].geoms) == len(geoms[5].geoms) == 2
    # Objects 1 and 6 touch along an edge: their outlines share it exactly.
    assert shapely.intersection(geoms[1], geoms[6]).length == pytest.approx(8 * 0.05)


@pytest.mark.parametrize("seed, chunks", [(0, (7, 9)), (1, (16, 5)), (2, (60, 50)), (3, (1, 50))])
def test_tiled_polygons_equal_whole_image_polygons(tmp_path, seed, chunks):
    labels = random_labels(seed)
    dst = made_run(tmp_path / "run", labels, chunks)
    frame = ex.object_polygons(dst, scheduler="sync")
    assert_exact_polygons(frame, labels, TRANSFORM)
    # The oracle: the whole image vectorised at once, as one tile.
    ids, pieces = ev.tile_pieces(labels)
    ids, whole = ev.dissolve(ids, pieces, np.zeros(len(ids), int))
    np.testing.assert_array_equal(ids, frame["label"])
    whole = ev.to_map(whole, TRANSFORM)
    tiled = frame.geometry.to_numpy()
    assert shapely.equals(tiled, whole).all()
    # No vertex left over on tile borders.
    np.testing.assert_array_equal(
        shapely.get_num_coordinates(tiled), shapely.get_num_coordinates(whole)
    )


def test_tile_pieces_numbers_labels_beyond_int32():
    tile = np.zeros((6, 6), np.uint64)
    tile[0:2, 0:2] = 2**40 + 1
    tile[3:6, 3:6] = 2**33
    tile[2, 2] = 2**40 + 1  # diagonal: a second piece of the same object
    ids, pieces = ev.tile_pieces(tile, 100, 200)
    got = sorted((int(i), p.bounds, p.area) for i, p in zip(ids, pieces, strict=True))
    assert got == [
        (2**33, (203.0, 103.0, 206.0, 106.0), 9.0),
        (2**40 + 1, (200.0, 100.0, 202.0, 102.0), 4.0),
        (2**40 + 1, (202.0, 102.0, 203.0, 103.0), 1.0),
    ]


def test_polygons_of_uint64_labels(tmp_path):
    labels = random_labels(5).astype(np.uint64)
    labels[labels != 0] += 2**35
    dst = made_run(tmp_path / "run", labels, (16, 16))
    frame = read_polygons(ex.export_polygons(dst, tmp_path / "objects.gpkg"))
    assert frame["label"].min() > 2**35
    assert_exact_polygons(frame, labels, TRANSFORM)


# --- every vector format ----------------------------------------------------------------------

WGS84_SUFFIXES = {".geojson", ".json", ".kml"}
SHAPEFILE_FILES = ["objects.shp", "objects.shx", "objects.dbf", "objects.prj", "objects.cpg"]


@pytest.fixture(scope="module")
def exact_polygons(field_run) -> gpd.GeoDataFrame:
    return ex.object_polygons(field_run, scheduler="sync")


def read_back(path: Path) -> gpd.GeoDataFrame:
    """Any vector export read with pyogrio (GeoParquet with geopandas), in label order."""
    if path.suffix == ".parquet":
        frame = gpd.read_parquet(path)
    else:
        frame = gpd.read_file(path, engine="pyogrio")
    frame = frame.rename(columns={v: k for k, v in ev.SHAPEFILE_COLUMNS.items()})
    for column in ("label", "area_px", *OBJECT_COLUMNS[-4:]):
        frame[column] = frame[column].astype(np.int64)
    return frame.sort_values("label").reset_index(drop=True)


def to_wgs84(geoms: np.ndarray) -> np.ndarray:
    """UTM 11N geometries in WGS 84, vertex by vertex with pyproj."""
    transformer = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)
    return shapely.transform(geoms, lambda xy: np.column_stack(transformer.transform(*xy.T)))


@pytest.mark.parametrize("suffix", list(ev.VECTOR_FORMATS))
def test_every_vector_format_reads_back_as_the_objects(field_run, exact_polygons, tmp_path, suffix):
    path = ex.export_polygons(field_run, tmp_path / f"objects{suffix}")
    if suffix == ".shp":
        only_files(tmp_path, *SHAPEFILE_FILES)
    else:
        only_files(tmp_path, f"objects{suffix}")
    frame = read_back(path)
    table = gpd.read_parquet(field_run / output.OBJECTS)
    assert len(frame) == len(table) > 100
    np.testing.assert_array_equal(frame["label"], table["label"])
    np.testing.assert_array_equal(frame["area_px"], table["area_px"])
    np.testing.assert_allclose(frame["area_m2"], table["area_m2"], rtol=1e-12)
    if suffix in WGS84_SUFFIXES:
        assert frame.crs.to_epsg() == 4326
        # Every vertex where pyproj puts the exact UTM outline's (1e-9 deg: 0.1 mm) ...
        want = to_wgs84(exact_polygons.geometry.to_numpy())
        assert shapely.hausdorff_distance(frame.geometry.to_numpy(), want).max() < 1e-8
        # ... and the ellipsoidal area: area_m2 (UTM) over the squared scale factor near the
        # central meridian, 0.9996; each to the rounding of its outline to 1e-9 deg (0.1 mm).
        geod = Geod(ellps="WGS84")
        areas, perimeters = np.abs([geod.geometry_area_perimeter(g) for g in frame.geometry]).T
        want_areas = table["area_m2"].to_numpy() / 0.9996**2
        assert areas.sum() == pytest.approx(want_areas.sum(), rel=1e-5)  # k0² is 1 - 8e-4
        assert (np.abs(areas - want_areas) <= 1e-4 * perimeters).all()
    else:
        assert frame.crs.to_epsg() == 32611
        assert_exact_polygons(frame, read_labels(field_run), field_transform())


def test_shapefile_column_names_are_chosen_not_truncated(field_run, tmp_path):
    """DBF names hold 10 characters: GDAL would cut `centroid_row` and `centroid_col` both to
    `centroid_r`/`centroid_c` and the bbox ones to `bbox_min_r`...; tiler names them."""
    path = ex.export_polygons(field_run, tmp_path / "objects.shp")
    columns = list(gpd.read_file(path, engine="pyogrio", rows=1).columns)
    assert columns == [ev.SHAPEFILE_COLUMNS.get(c, c) for c in OBJECT_COLUMNS] + ["geometry"]
    assert max(len(c) for c in columns) <= 10


def test_a_shapefile_replaces_the_previous_one_whole(field_run, tmp_path):
    old = tmp_path / "objects.shp"
    for name in SHAPEFILE_FILES:
        (tmp_path / name).write_bytes(b"previous")
    (tmp_path / "objects.cpg").unlink()
    ex.export_polygons(field_run, old)
    only_files(tmp_path, *SHAPEFILE_FILES)
    assert len(read_back(old)) == len(gpd.read_parquet(field_run / output.OBJECTS))


def test_simplified_polygons_stay_within_the_tolerance(field_run, exact_polygons, tmp_path):
    path = ex.export_polygons(field_run, tmp_path / "objects.fgb", simplify_m=0.05)
    frame = read_back(path)
    geoms, exact = frame.geometry.to_numpy(), exact_polygons.geometry.to_numpy()
    assert shapely.is_valid(geoms).all() and not shapely.is_empty(geoms).any()
    distance = shapely.hausdorff_distance(geoms, exact, densify=0.05)
    # 2 pixels of 2.5 cm; GEOS may also drop a ring's first vertex (up to twice it).
    assert (distance <= 0.05 + 1e-9).mean() > 0.95
    assert distance.max() <= 0.1
    assert distance.max() > 0.025
    assert shapely.get_num_coordinates(geoms).sum() < 0.6 * shapely.get_num_coordinates(exact).sum()
    np.testing.assert_array_equal(frame["label"], exact_polygons["label"])


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory, field_run) -> Path:
    """A --pixel-only run: the field's image without georeferencing."""
    root = tmp_path_factory.mktemp("pixel")
    with rasterio.open(run_record.read_manifest(field_run)["input"]["path"]) as ds:
        image = ds.read(window=((0, 300), (0, 300)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = conftest.write_geotiff(
            root / "plain.tif", image, crs=None, transform=Affine.identity()
        )
    return tiler_api.run(src, root / "run", chunk_size=128, scheduler="sync", pixel_only=True).dst


def test_metres_and_fields_are_refused_on_a_pixel_only_run(pixel_run, tmp_path):
    with pytest.raises(ConfigError, match="--simplify is in metres; this run is pixel-only"):
        ex.export_polygons(pixel_run, tmp_path / "objects.gpkg", simplify_m=0.2)
    with pytest.raises(ConfigError, match="--fields needs map coordinates"):
        ex.export(pixel_run, csv=tmp_path / "objects.csv", fields=tmp_path / "fields.geojson")
    only_files(tmp_path)
    frame = read_back(ex.export_polygons(pixel_run, tmp_path / "objects.gpkg"))
    assert len(frame) == len(tiler_api.read_objects(pixel_run)) > 0


# --- fields ------------------------------------------------------------------------------------


def plots(table: gpd.GeoDataFrame, path: Path) -> Path:
    """Three plots, written in WGS 84: A the west half, B the east half, C over the middle
    (overlapping both); the southern quarter in none."""
    x0, y0, x1, y1 = table.total_bounds
    xm, ym = (x0 + x1) / 2, y0 + (y1 - y0) / 4
    frame = gpd.GeoDataFrame(
        {"plot": ["A", "B", "C"], "crop": ["wheat"] * 3},
        geometry=[
            shapely.box(x0 - 1, ym, xm, y1 + 1),
            shapely.box(xm, ym, x1 + 1, y1 + 1),
            shapely.box(xm - 2, ym, xm + 2, y1 + 1),
        ],
        crs="EPSG:32611",
    ).to_crs("EPSG:4326")
    frame.to_file(path, engine="pyogrio")
    return path


def expected_fields(table: gpd.GeoDataFrame, path: Path) -> list[str]:
    """The plots each centroid is in, by shapely's point-in-polygon test in UTM."""
    fields = gpd.read_file(path, engine="pyogrio").to_crs("EPSG:32611")
    x, y = table["x"].to_numpy(), table["y"].to_numpy()
    inside = [shapely.contains_xy(g, x, y) for g in fields.geometry]
    return [
        ";".join(p for p, flags in zip(fields["plot"], inside, strict=True) if flags[i])
        for i in range(len(table))
    ]


def test_objects_are_tagged_with_the_field_they_fall_in(field_run, tmp_path):
    table = gpd.read_parquet(field_run / output.OBJECTS)
    fields = plots(table, tmp_path / "plots.geojson")
    want = expected_fields(table, fields)
    assert {"A", "B", "A;C", "B;C", ""} <= set(want)
    written = ex.export(
        field_run,
        polygons=tmp_path / "objects.gpkg",
        csv=tmp_path / "objects.csv",
        fields=fields,
        field_id="plot",
    )
    back = pd.read_csv(written["csv"], keep_default_na=False)
    assert list(back.columns[-2:]) == ["field", "crs"]
    assert back["field"].tolist() == want
    frame = read_back(written["polygons"])
    assert frame["field"].fillna("").tolist() == want


@pytest.mark.parametrize(
    "field_id, message", [("nope", "no column 'nope' for --field-id; columns: plot, crop")]
)
def test_bad_fields_are_refused_before_anything_is_written(field_run, tmp_path, field_id, message):
    fields = plots(gpd.read_parquet(field_run / output.OBJECTS), tmp_path / "plots.geojson")
    with pytest.raises(InputError, match=message):
        ex.export(field_run, cog=tmp_path / "a.tif", csv=tmp_path / "a.csv", fields=fields,
                  field_id=field_id)  # fmt: skip
    only_files(tmp_path, "plots.geojson")


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_is_the_object_table_with_lon_lat_and_its_crs(field_run, tmp_path):
    path = ex.export_csv(field_run, tmp_path / "objects.csv")
    only_files(tmp_path, "objects.csv")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    at = OBJECT_COLUMNS.index("y") + 1
    assert rows[0] == [*OBJECT_COLUMNS[:at], "lon", "lat", *OBJECT_COLUMNS[at:], "crs"]
    assert {row[-1] for row in rows[1:]} == {"EPSG:32611"}
    table = pq.read_table(field_run / output.OBJECTS).to_pandas()
    assert len(rows) == len(table) + 1
    back = pd.read_csv(path)
    assert (back.pop("crs") == "EPSG:32611").all()
    lon, lat = back.pop("lon"), back.pop("lat")
    pd.testing.assert_frame_equal(back, table.drop(columns="geometry"), check_exact=True)
    # x and y are the point geometry's coordinates.
    points = gpd.read_parquet(field_run / output.OBJECTS).geometry
    np.testing.assert_array_equal(back["x"], points.x)
    np.testing.assert_array_equal(back["y"], points.y)
    # lon/lat: WGS 84 degrees of x/y, as PROJ's inverse UTM 11N gives them (1e-9° ~ 0.1 mm) ...
    utm = Proj("EPSG:32611")
    want_lon, want_lat = utm(back["x"].to_numpy(), back["y"].to_numpy(), inverse=True)
    np.testing.assert_allclose(lon, want_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat, want_lat, rtol=0, atol=1e-9)
    # ... west of the zone's central meridian (-117°) by the easting's offset, near 37° N.
    east_m = (back["x"] - 500000.0).to_numpy()
    metres_per_degree = 111_320 * np.cos(np.radians(lat)) * 0.9996
    np.testing.assert_allclose(lon, -117 + east_m / metres_per_degree, rtol=0, atol=1e-6)
    assert (np.abs(lat - 37.04) < 0.01).all()


def test_crs_names():
    assert et.crs_name(CRS.from_epsg(32611).to_wkt()) == "EPSG:32611"
    assert et.crs_name(CRS.from_user_input("ESRI:54009").to_wkt()) == "ESRI:54009"
    custom = CRS.from_proj4("+proj=tmerc +lat_0=0 +lon_0=9.5 +k=0.99 +x_0=1e5 +ellps=GRS80")
    name = et.crs_name(custom.to_wkt())
    assert not name.startswith("EPSG:") and CRS.from_wkt(name) == custom
    assert et.crs_name("") == ""


# --- errors ------------------------------------------------------------------------------------


def test_unfinished_run_is_refused(field_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(field_run, dst)
    manifest = json.loads((dst / "run.json").read_text())
    (dst / "run.json").write_text(json.dumps({**manifest, "complete": False}))
    for call in (
        lambda: er.export_cog(dst, tmp_path / "a.tif"),
        lambda: ex.export_polygons(dst, tmp_path / "a.gpkg"),
        lambda: ex.export_csv(dst, tmp_path / "a.csv"),
    ):
        with pytest.raises(OutputError, match=re.escape(str(dst))):
            call()
    with pytest.raises(OutputError, match="no run.json"):
        ex.export_csv(tmp_path / "nowhere", tmp_path / "a.csv")
    only_files(tmp_path, "run")


def test_a_damaged_run_json_is_refused_in_one_line(field_run, tmp_path):
    """A run.json cut short (or not JSON at all) is no finished run: one line, no traceback."""
    dst = tmp_path / "run"
    shutil.copytree(field_run, dst)
    (dst / "run.json").write_text((dst / "run.json").read_text()[:40])
    for option, name in (("--csv", "t.csv"), ("--cog", "t.tif"), ("--polygons", "t.gpkg")):
        proc = tiler("export", dst, option, name, cwd=tmp_path)
        assert_one_line_error(proc, f"{dst}: run.json is not valid JSON")
    with pytest.raises(OutputError, match="run.json is not valid JSON"):
        tiler_api.open_labels(dst)
    only_files(tmp_path, "run")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"polygons": "objects.dxf"},
            "must end in .gpkg, .shp, .geojson, .json, .fgb, .kml or .parquet",
        ),
        ({"cog": "labels.png"}, "must end in .tif or .tiff"),
        ({"csv": "objects.xlsx"}, "must end in .csv"),
        ({"csv": "missing/objects.csv"}, "does not exist"),
        ({"polygons": "objects.gpkg", "csv": "objects.txt"}, "objects.txt: the CSV table"),
    ],
)
def test_bad_output_paths_are_refused_before_anything_is_written(
    field_run, tmp_path, kwargs, message
):
    paths = {"cog": tmp_path / "first.tif", **{k: tmp_path / v for k, v in kwargs.items()}}
    with pytest.raises(OutputError, match=message):
        ex.export(field_run, **paths)
    only_files(tmp_path)


def test_the_run_itself_is_not_an_output(field_run):
    with pytest.raises(OutputError, match="is part of the run"):
        ex.export_polygons(field_run, field_run / "objects.parquet")
    with pytest.raises(OutputError, match="is part of the run"):
        er.export_cog(field_run, field_run / "labels.zarr" / "x.tif")


def test_export_writes_all_and_reports_each(field_run, tmp_path):
    seen = []
    written = ex.export(
        field_run,
        cog=tmp_path / "mask.tif",
        mask=True,
        polygons=tmp_path / "objects.parquet",
        csv=tmp_path / "objects.csv",
        log=lambda kind, path: seen.append((kind, path)),
    )
    assert written == dict(seen)
    assert written == {
        "cog": tmp_path / "mask.tif",
        "polygons": tmp_path / "objects.parquet",
        "csv": tmp_path / "objects.csv",
    }
    only_files(tmp_path, "mask.tif", "objects.parquet", "objects.csv")


# --- labels for GIS tools ----------------------------------------------------------------------


def test_labels_open_in_xarray_without_a_warning(field_run):
    """Consolidated metadata: xarray.open_zarr's default reads it, and warns without it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = xr.open_zarr(field_run / output.LABELS, mask_and_scale=False)["labels"]
        np.testing.assert_array_equal(labels.values, read_labels(field_run))
        assert labels.rio.crs.to_epsg() == 32611


def test_a_report_leaves_the_consolidated_labels_as_they_were(field_run, tmp_path):
    from tiler import report

    dst = tmp_path / "run"
    shutil.copytree(field_run, dst)
    before = (dst / output.LABELS / "zarr.json").read_bytes()
    built = report.build(dst, scheduler="sync")
    assert (dst / output.LABELS / "zarr.json").read_bytes() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(str(built.html.parent / "pyramid.zarr"), mode="r")
        assert group["labels/objects/0"].shape == group["0"].shape[1:]
        labels = xr.open_zarr(dst / output.LABELS, mask_and_scale=False)["labels"]
        np.testing.assert_array_equal(labels.values, read_labels(field_run))


def test_gdal_cannot_read_the_zarr_labels_so_the_gis_route_is_the_cog(field_run, tmp_path):
    """The GDAL rasterio bundles (3.10) knows Zarr v3's array-to-bytes codec by its draft name
    (`endian`), so no store zarr-python 3 writes opens in it: `tiler export --cog` is the way
    into QGIS and rioxarray.open_rasterio. If this starts failing, a newer GDAL reads the
    store: say so in the README and the run summary, and test the values instead."""
    store = field_run / output.LABELS
    with pytest.raises(rasterio.errors.RasterioIOError, match="Unsupported codec: bytes"):
        rasterio.open(f'ZARR:"{store}":/labels')
    path = er.export_cog(field_run, tmp_path / "labels.tif")
    cog = rioxarray.open_rasterio(path).squeeze("band", drop=True)
    np.testing.assert_array_equal(cog.values, read_labels(field_run))
    assert cog.rio.crs.to_epsg() == 32611 and cog.rio.transform() == field_transform()
    src = run_record.read_manifest(field_run)["input"]["path"]
    proc = tiler("run", src, "out", "--chunk-size", 256, "--scheduler", "sync", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    hint = [line for line in proc.stdout.splitlines() if line.startswith("GIS:")]
    assert hint == ["GIS:        tiler export out --cog labels.tif (QGIS/GDAL cannot read Zarr v3)"]


# --- the command line --------------------------------------------------------------------------


def test_cli_export(field_run, tmp_path):
    proc = tiler(
        "export",
        field_run,
        "--cog",
        "labels.tif",
        "--polygons",
        "objects.gpkg",
        "--csv",
        "objects.csv",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["cog:", "polygons:", "csv:"]
    for line, name in zip(lines, ["labels.tif", "objects.gpkg", "objects.csv"], strict=True):
        assert line.split()[1] == name
    only_files(tmp_path, "labels.tif", "objects.gpkg", "objects.csv")
    with rasterio.open(tmp_path / "labels.tif") as ds:
        np.testing.assert_array_equal(ds.read(1), read_labels(field_run))
    assert len(read_polygons(tmp_path / "objects.gpkg")) == len(tiler_api.read_objects(field_run))


def test_cli_export_errors_are_one_line(field_run, tmp_path):
    missing = tmp_path / "not-a-run"
    assert_one_line_error(tiler("export", missing, "--csv", "t.csv", cwd=tmp_path), str(missing))
    assert_one_line_error(
        tiler("export", field_run, "--polygons", "objects.dxf", cwd=tmp_path), "objects.dxf"
    )
    assert_one_line_error(
        tiler("export", field_run, "--cog", "no/such/dir/a.tif", cwd=tmp_path), "no/such/dir"
    )
    usage = tiler("export", field_run, cwd=tmp_path)
    assert usage.returncode == 2 and "--cog, --polygons, --csv" in usage.stderr
    usage = tiler("export", field_run, "--mask", "--csv", "t.csv", cwd=tmp_path)
    assert usage.returncode == 2 and "--mask" in usage.stderr
    only_files(tmp_path)


def test_cli_export_simplified_shapefile_and_csv_tagged_with_fields(
    field_run, exact_polygons, tmp_path
):
    table = gpd.read_parquet(field_run / output.OBJECTS)
    fields = plots(table, tmp_path / "plots.geojson")
    proc = tiler(
        "export", field_run, "--polygons", "objects.shp", "--simplify", "5cm",
        "--csv", "objects.csv", "--fields", fields, "--field-id", "plot", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["polygons:", "csv:"]
    only_files(tmp_path, "plots.geojson", "objects.csv", *SHAPEFILE_FILES)
    frame = read_back(tmp_path / "objects.shp")
    want = expected_fields(table, fields)
    assert frame["field"].fillna("").tolist() == want
    assert pd.read_csv(tmp_path / "objects.csv", keep_default_na=False)["field"].tolist() == want
    simplified = shapely.get_num_coordinates(frame.geometry.to_numpy()).sum()
    assert simplified < 0.6 * shapely.get_num_coordinates(exact_polygons.geometry.to_numpy()).sum()


def test_cli_export_option_errors(field_run, pixel_run, tmp_path):
    usage = tiler("export", field_run, "--polygons", "o.gpkg", "--simplify", "0.2", cwd=tmp_path)
    assert usage.returncode == 2 and "0.2m or 20cm" in usage.stderr
    usage = tiler("export", field_run, "--csv", "t.csv", "--simplify", "0.2m", cwd=tmp_path)
    assert usage.returncode == 2 and "--simplify goes with --polygons" in usage.stderr
    usage = tiler("export", field_run, "--csv", "t.csv", "--field-id", "plot", cwd=tmp_path)
    assert usage.returncode == 2 and "--field-id goes with --fields" in usage.stderr
    missing = tmp_path / "nowhere.geojson"
    assert_one_line_error(
        tiler("export", field_run, "--cog", "a.tif", "--csv", "t.csv", "--fields", missing,
              cwd=tmp_path),
        str(missing), "no such file",
    )  # fmt: skip
    assert_one_line_error(
        tiler("export", pixel_run, "--polygons", "o.gpkg", "--simplify", "20cm", cwd=tmp_path),
        str(pixel_run),
        "pixel-only",
    )
    only_files(tmp_path)
