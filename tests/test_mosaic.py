"""Mosaics as one input (issue 17): a real image cut into GeoTIFF tiles runs as the whole image.

The NEON tile's top-left 180 x 240 pixels are cut into a 2 x 3 grid of
GeoTIFFs; every form of SRC that names them (directory, glob, @list, VRT,
STAC ItemCollection) gives labels and objects identical to the whole image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from conftest import write_geotiff
from rasterio.windows import Window
from test_cli import assert_one_line_error, field_image, read_labels, read_manifest, tiler

from tiler import api
from tiler.errors import InputError
from tiler.io import mosaic
from tiler.io.input_identity import fingerprint
from tiler.tiling import Window as TileWindow

ROWS, COLS, TILE_H, TILE_W = 2, 3, 90, 80
RUN = ("--scheduler", "sync", "--chunk-size", 64, "-q")


def _cut(image: np.ndarray, transform: Affine, folder: Path, skip=(), **kwargs) -> list[Path]:
    """``image`` cut into ROWS x COLS GeoTIFFs in ``folder`` (``skip``: (row, col) left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in range(ROWS):
        for c in range(COLS):
            if (r, c) in skip:
                continue
            tile = image[:, r * TILE_H : (r + 1) * TILE_H, c * TILE_W : (c + 1) * TILE_W]
            where = transform * Affine.translation(c * TILE_W, r * TILE_H)
            path = folder / f"tile_{r}_{c}.tif"
            paths.append(write_geotiff(path, tile, transform=where, **kwargs))
    return paths


@pytest.fixture(scope="module")
def neon(tmp_path_factory, neon_tile):
    """The whole crop, its tiles, and the whole crop's run."""
    root = tmp_path_factory.mktemp("mosaic")
    with rasterio.open(neon_tile) as ds:
        window = Window(0, 0, COLS * TILE_W, ROWS * TILE_H)
        image, transform, crs = ds.read(window=window), ds.window_transform(window), ds.crs
    whole = write_geotiff(root / "whole.tif", image, transform=transform, crs=crs, nodata=255)
    tiles = _cut(image, transform, root / "tiles", crs=crs, nodata=255)
    api.run(whole, root / "whole-out", chunk_size=64, scheduler="sync")
    return root, tiles


def _objects(dst: Path) -> pd.DataFrame:
    return pd.read_parquet(dst / "objects.parquet")


def _stac(root: Path, tiles: list[Path]) -> Path:
    items = [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": p.stem,
            "assets": {"visual": {"href": f"tiles/{p.name}"}, "thumb": {"href": "t.png"}},
        }
        for p in tiles
    ]
    path = root / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def _src(form: str, root: Path, tiles: list[Path]) -> tuple[str, dict]:
    if form == "directory":
        return str(root / "tiles"), {}
    if form == "glob":
        return str(root / "tiles" / "tile_*.tif"), {}
    if form == "list":
        names = "\n".join(f"tiles/{p.name}" for p in tiles)
        (root / "list.txt").write_text(f"# the tiles\n{names}\n")
        return f"@{root / 'list.txt'}", {}
    if form == "vrt":  # a user's VRT: tiler's own, copied beside the tiles
        shutil.copy(mosaic.open_input(root / "tiles", max_pixels=None).path, root / "user.vrt")
        return str(root / "user.vrt"), {}
    return str(_stac(root, tiles)), {"asset": "visual"}


@pytest.mark.parametrize("form", ["directory", "glob", "list", "vrt", "stac"])
def test_mosaic_runs_as_the_whole_image(form, neon):
    root, tiles = neon
    src, extra = _src(form, root, tiles)
    dst = root / f"out-{form}"
    api.run(src, dst, chunk_size=64, scheduler="sync", **extra)
    labels, whole = read_labels(dst), read_labels(root / "whole-out")
    assert labels.shape == (ROWS * TILE_H, COLS * TILE_W)
    assert whole.max() >= 5  # a real image, its objects across the tiles' edges
    np.testing.assert_array_equal(labels, whole)
    objects = _objects(dst)
    assert len(objects) >= 5
    pd.testing.assert_frame_equal(objects, _objects(root / "whole-out"))
    record = read_manifest(dst)["input"]
    assert record["path"] == src
    members = record["mosaic"]["members"]
    assert [m["path"] for m in members] == [str(p) for p in tiles]
    assert [m["fingerprint_sha256"] for m in members] == [fingerprint(p) for p in tiles]
    assert [m["size_bytes"] for m in members] == [p.stat().st_size for p in tiles]


@pytest.mark.parametrize("marking", ["nodata", "mask band"])
def test_a_hole_between_tiles_is_invalid(marking, tmp_path):
    image = np.tile(field_image(90, 80), (1, ROWS, COLS))
    kwargs = {"nodata": 0} if marking == "nodata" else {}
    transform = Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)
    _cut(image, transform, tmp_path / "tiles", skip={(0, 1)}, **kwargs)
    source = mosaic.open_input(tmp_path / "tiles", max_pixels=None)
    image_read, valid = source.read((1, 2, 3), TileWindow(0, 180, 0, 240))
    hole = np.zeros(valid.shape, bool)
    hole[:TILE_H, TILE_W : 2 * TILE_W] = True
    np.testing.assert_array_equal(valid, ~hole)  # valid everywhere but in the hole
    np.testing.assert_array_equal(image_read[:, ~hole], image[:, ~hole])
    api.run(tmp_path / "tiles", tmp_path / "out", chunk_size=64, scheduler="sync")
    threshold = read_manifest(tmp_path / "out")["threshold"]
    assert threshold["valid_pixels"] == 180 * 240 - TILE_H * TILE_W
    assert not read_labels(tmp_path / "out")[hole].any()


def _other_crs(path):
    with rasterio.open(path, "r+") as ds:
        ds.crs = "EPSG:32612"
    return "CRS"


def _other_pixel(path):
    with rasterio.open(path, "r+") as ds:
        t = ds.transform
        ds.transform = Affine(t.a * 1.001, 0, t.c, 0, t.e * 1.001, t.f)
    return "pixel size"


def _off_grid(path):
    with rasterio.open(path, "r+") as ds:
        t = ds.transform
        ds.transform = Affine(t.a, 0, t.c + t.a / 3, 0, t.e, t.f)
    return "off the grid"


def _other_bands(path):
    with rasterio.open(path) as ds:
        image, profile = ds.read(), ds.profile
    write_geotiff(path, image[:2], transform=profile["transform"], crs=profile["crs"])
    return "band count"


@pytest.mark.parametrize("change", [_other_crs, _other_pixel, _off_grid, _other_bands])
def test_mismatched_tile_is_refused_in_one_line(change, tmp_path):
    image = np.tile(field_image(90, 80), (1, ROWS, COLS))
    tiles = _cut(image, Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0), tmp_path / "tiles")
    what = change(tiles[4])
    proc = tiler("run", tmp_path / "tiles", tmp_path / "out", *RUN, cwd=tmp_path)
    line = assert_one_line_error(proc, tiles[4].name, what)
    if what == "CRS":
        assert "reproject it to EPSG:32611 first" in line and "gdalwarp" in line
    assert not (tmp_path / "out" / "run.json").exists()


def test_resume_after_a_member_changed_names_it(neon, tmp_path):
    root, tiles = neon
    shutil.copytree(root / "tiles", tmp_path / "tiles")
    api.run(tmp_path / "tiles", tmp_path / "out", chunk_size=64, scheduler="sync")
    api.run(tmp_path / "tiles", tmp_path / "out", resume=True, scheduler="sync")  # the same: done
    changed = tmp_path / "tiles" / "tile_1_2.tif"
    with rasterio.open(changed, "r+") as ds:
        ds.write(np.zeros((3, 10, 10), np.uint8), window=Window(0, 0, 10, 10))
    with pytest.raises(InputError, match=f"{changed}: a file of the run's mosaic changed"):
        api.run(tmp_path / "tiles", tmp_path / "out", resume=True, scheduler="sync")


def test_stac_needs_an_asset_and_names_the_keys(neon, tmp_path):
    root, tiles = neon
    with pytest.raises(InputError, match=r"--asset \(\['thumb', 'visual'\]\)"):
        mosaic.open_input(_stac(root, tiles), max_pixels=None)


def test_user_vrt_sources_must_be_geotiffs(tmp_path):
    image = field_image(90, 80)
    png = tmp_path / "plain.png"
    where = {"transform": Affine(0.05, 0, 500000.0, 0, -0.05, 4100000.0), "crs": "EPSG:32611"}
    profile = {"driver": "PNG", "width": 80, "height": 90, "count": 3, "dtype": "uint8"}
    with rasterio.open(png, "w", **profile, **where) as ds:
        ds.write(image)
    vrt = tmp_path / "user.vrt"
    rasterio.shutil.copy(png, vrt, driver="VRT")
    with pytest.raises(InputError, match="plain.png"):
        mosaic.open_input(vrt, max_pixels=None)


def test_a_finished_mosaic_run_is_reopened_from_run_json(neon, tmp_path):
    """What `tiler report` and `tiler export --mask` do: the members checked, then reread."""
    from tiler.io.input_identity import reopen

    root, _ = neon
    shutil.copytree(root / "tiles", tmp_path / "tiles")
    api.run(tmp_path / "tiles", tmp_path / "out", chunk_size=64, scheduler="sync")
    inputs = read_manifest(tmp_path / "out")["input"]
    source = reopen(inputs)
    window = TileWindow(0, ROWS * TILE_H, 0, COLS * TILE_W)
    with rasterio.open(root / "whole.tif") as ds:
        np.testing.assert_array_equal(source.read((1, 2, 3), window)[0], ds.read())
    changed = tmp_path / "tiles" / "tile_0_0.tif"
    with rasterio.open(changed, "r+") as ds:
        ds.write(np.zeros((3, 10, 10), np.uint8), window=Window(0, 0, 10, 10))
    with pytest.raises(InputError, match=f"{changed}: changed since the run"):
        reopen(inputs)
