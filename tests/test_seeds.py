"""Seeds for region growing: points from config or GeoJSON/GeoPackage, in any CRS."""

from __future__ import annotations

import geopandas
import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import Point, box

import tiler
from tiler.config import Grow, parse_pipeline
from tiler.errors import ConfigError, InputError
from tiler.io.open_raster import open_geotiff
from tiler.io.seeds import seed_pixels

ORIGIN = (500000.0, 4100000.0)  # conftest.write_geotiff: 0.05 m pixels, EPSG:32611


def centre(row: int, col: int) -> tuple[float, float]:
    return ORIGIN[0] + (col + 0.5) * 0.05, ORIGIN[1] - (row + 0.5) * 0.05


@pytest.fixture
def raster(geotiff):
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 256, (3, 10, 12))
    image = np.repeat(np.repeat(coarse, 6, axis=1), 6, axis=2).astype(np.uint8)
    return geotiff(image, blocksize=16)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg"])
def test_seed_files_in_another_crs_land_on_their_pixels(raster, tmp_path, suffix):
    pixels = [(2, 3), (30, 40), (59, 71)]
    to_lonlat = Transformer.from_crs("EPSG:32611", "EPSG:4326", always_xy=True)
    points = [Point(*to_lonlat.transform(*centre(r, c))) for r, c in pixels]
    path = tmp_path / f"seeds{suffix}"
    geopandas.GeoDataFrame(geometry=points, crs="EPSG:4326").to_file(path)
    config = {"threshold": {"grow": {"seeds": str(path), "tolerance": 0.1}}}
    assert seed_pixels(parse_pipeline(config).threshold, open_geotiff(raster)) == tuple(pixels)

    result = tiler.run(raster, tmp_path / "out", config=config, scheduler="sync", chunk_size=16)
    labels = tiler.open_labels(result.dst)[:]
    assert all(labels[r, c] > 0 for r, c in pixels)


def test_listed_seeds_outside_the_raster_are_refused(raster):
    step = Grow(0.1, seeds=(centre(5, 5), centre(5, 500)))
    with pytest.raises(InputError, match=r"seed 2 at \(.*\) lies outside the raster"):
        seed_pixels(step, open_geotiff(raster))


def test_a_seed_file_must_hold_points(raster, tmp_path):
    path = tmp_path / "fields.geojson"
    geopandas.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:32611").to_file(path)
    step = Grow(0.1, seeds_file=str(path))
    with pytest.raises(ConfigError, match="expected points, found Polygon"):
        seed_pixels(step, open_geotiff(raster))


@pytest.mark.parametrize(
    ("grow", "expected"),
    [
        ({"seeds": "missing.geojson", "tolerance": 1}, "missing.geojson: no such file"),
        ({"seeds": [[1, 2]]}, "threshold.grow.tolerance: required"),
        ({"seeds": [[1, 2, 3]], "tolerance": 1}, r"threshold.grow.seeds\[0\]"),
        ({"seeds": [], "tolerance": 1}, "threshold.grow.seeds: expected"),
        ({"seeds": [[1, 2]], "tolerance": 1, "connectivity": 3}, "connectivity: expected 1 or 2"),
    ],
)
def test_grow_parameters_are_checked(grow, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_pipeline({"threshold": {"grow": grow}})


def test_grow_refuses_polarity_below():
    with pytest.raises(ConfigError, match="polarity: 'below' does not apply"):
        parse_pipeline(
            {"threshold": {"grow": {"seeds": [[0, 0]], "tolerance": 1}}, "polarity": "below"}
        )


def test_a_seed_on_nodata_is_one_clear_error(geotiff, tmp_path):
    image = np.full((3, 32, 32), 100, np.uint8)
    image[:, :8] = 0
    path = geotiff(image, nodata=0)
    config = {"threshold": {"grow": {"seeds": [list(centre(4, 2))], "tolerance": 1}}}
    with pytest.raises(InputError, match=r"seed at pixel \(4, 2\) is on nodata"):
        tiler.run(path, tmp_path / "out", config=config, scheduler="sync")
    assert not (tmp_path / "out" / "run.json").exists()
