"""Seed points for region growing: map coordinates to the raster's pixels."""

from __future__ import annotations

import math

from affine import Affine

from tiler.config import Grow
from tiler.errors import ConfigError, InputError
from tiler.source import RasterSource


def read_points(path: str, crs_wkt: str) -> list[tuple[float, float]]:
    """The points of a GeoJSON or GeoPackage file, in the CRS ``crs_wkt`` (if both have one)."""
    import geopandas

    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError and friends
        raise ConfigError(f"threshold.grow.seeds: {path}: cannot read ({exc})") from None
    points = frame.geometry.explode(index_parts=False)
    if points.empty or not (points.geom_type == "Point").all():
        kinds = ", ".join(sorted(set(points.geom_type))) or "nothing"
        raise ConfigError(f"threshold.grow.seeds: {path}: expected points, found {kinds}")
    if frame.crs is not None and crs_wkt:
        points = points.to_crs(crs_wkt)
    return list(zip(points.x.tolist(), points.y.tolist(), strict=True))


def seed_pixels(step: Grow, source: RasterSource) -> tuple[tuple[int, int], ...]:
    """The seeds as ``(row, col)`` pixels of ``source`` (each point lies in one pixel)."""
    points = list(step.seeds)
    if step.seeds_file:
        points += read_points(step.seeds_file, source.crs_wkt)
    inverse = ~Affine(*source.transform[:6])
    pixels = []
    for i, (x, y) in enumerate(points):
        col, row = inverse * (x, y)
        r, c = math.floor(row), math.floor(col)
        if not (0 <= r < source.height and 0 <= c < source.width):
            raise InputError(f"{source.name}: seed {i + 1} at ({x}, {y}) lies outside the raster")
        pixels.append((r, c))
    return tuple(dict.fromkeys(pixels))
