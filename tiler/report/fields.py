"""Per-field statistics: object counts by centroid, canopy cover by pixel, object sizes.

* An object belongs to every field whose polygon contains its centroid
  (``within``: a centroid exactly on a field's boundary belongs to none);
  fields may overlap.
* A pixel belongs to a field when its centre lies inside the polygon
  (``rasterio.features.rasterize``'s rule). Canopy cover is the share of a
  field's valid pixels (GDAL's dataset mask of the input) that are object
  pixels; ``valid_fraction`` the share of the field's pixels that are valid.
* Areas are in the raster's CRS (geodesic, on the WGS 84 ellipsoid, when it
  is geographic); density is objects per hectare of the field's whole area.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry import box

from tiler.errors import InputError

# rasterio's rasterize builds a MEM dataset whose NotGeoreferencedWarning it hides with
# warnings.catch_warnings, which is not thread-safe: two report windows rasterizing at
# once in threads can let it escape. One at a time (each is a field's bounding box, cheap).
_RASTERIZE = threading.Lock()

COLUMNS = (
    "field_id",
    "area_ha",
    "objects",
    "density_per_ha",
    "canopy_cover",
    "valid_fraction",
    "inside_fraction",
    "area_mean_m2",
    "area_median_m2",
    "area_p10_m2",
    "area_p90_m2",
    "outside_raster",
)


def load_fields(
    fields: str | os.PathLike | gpd.GeoDataFrame | None,
    field_id: str | None,
    crs_wkt: str,
    bounds: tuple[float, float, float, float],
) -> gpd.GeoDataFrame:
    """The fields as ``(field_id, geometry)`` in the raster's CRS; the footprint if ``None``."""
    if fields is None:
        return gpd.GeoDataFrame({"field_id": ["footprint"]}, geometry=[box(*bounds)], crs=crs_wkt)
    name = str(fields) if not isinstance(fields, gpd.GeoDataFrame) else "fields"
    if isinstance(fields, gpd.GeoDataFrame):
        frame = fields.copy()
    else:
        path = Path(fields)
        if not path.is_file():
            raise InputError(f"{path}: no such file (expected GeoJSON or GeoPackage fields)")
        try:
            frame = gpd.read_file(path)
        except Exception as exc:  # pyogrio's errors name the driver's problem
            raise InputError(f"{path}: not a readable vector file ({exc})") from None
    if frame.crs is None:
        raise InputError(f"{name}: the fields have no CRS; set one (e.g. with ogr2ogr -a_srs)")
    if len(frame) == 0:
        raise InputError(f"{name}: no fields in it")
    kinds = set(frame.geometry.geom_type.dropna())
    if frame.geometry.isna().any() or not kinds <= {"Polygon", "MultiPolygon"}:
        raise InputError(f"{name}: fields must be polygons; found {sorted(map(str, kinds))}")
    if field_id is None:
        ids = [f"field {i + 1}" for i in range(len(frame))]
    elif field_id not in frame.columns:
        columns = ", ".join(c for c in frame.columns if c != frame.geometry.name)
        raise InputError(f"{name}: no column {field_id!r} for --field-id; columns: {columns}")
    else:
        ids = frame[field_id].astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise InputError(f"{name}: field ids in {field_id or 'the row order'} are not unique")
    geometry = frame.geometry.to_crs(crs_wkt).make_valid()
    return gpd.GeoDataFrame({"field_id": ids}, geometry=geometry.values, crs=crs_wkt)


def areas_m2(fields: gpd.GeoDataFrame) -> np.ndarray:
    """Each field's area in m²: planar in a projected CRS, geodesic in a geographic one."""
    crs = fields.crs
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in fields.geometry])
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return fields.geometry.area.to_numpy() * factor**2


def count_objects(objects: gpd.GeoDataFrame, fields: gpd.GeoDataFrame) -> list[np.ndarray]:
    """Per field, the indices of the objects whose centroid lies within it."""
    points = shapely.points(objects["x"].to_numpy(), objects["y"].to_numpy())
    tree = shapely.STRtree(points)
    return [
        np.sort(tree.query(geometry, predicate="contains"))
        if not geometry.is_empty
        else np.empty(0, np.intp)
        for geometry in fields.geometry
    ]


def pixel_counts(
    window, transform: tuple, geometries: list[tuple[int, object]], valid, labels
) -> np.ndarray:
    """``(field index, pixels, valid pixels, object pixels)`` of the fields in one window.

    Each field is rasterized over its own bounding box within the window only,
    so many small plots cost what their area costs.
    """
    (r0, r1), (c0, c1) = window
    full = Affine(*transform)
    to_pixels = ~(full * Affine.translation(c0, r0))
    out = np.zeros((len(geometries), 4), dtype=np.int64)
    covered = labels > 0
    for row, (index, geometry) in enumerate(geometries):
        xmin, ymin, xmax, ymax = geometry.bounds
        corners = [to_pixels * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
        cols, rows = zip(*corners, strict=True)
        a = max(0, int(np.floor(min(rows))) - 1), min(r1 - r0, int(np.ceil(max(rows))) + 1)
        b = max(0, int(np.floor(min(cols))) - 1), min(c1 - c0, int(np.ceil(max(cols))) + 1)
        out[row, 0] = index
        if a[0] >= a[1] or b[0] >= b[1]:
            continue
        at = full * Affine.translation(c0 + b[0], r0 + a[0])
        with _RASTERIZE:
            inside = rasterize(
                [(geometry, 1)], out_shape=(a[1] - a[0], b[1] - b[0]), transform=at, dtype="uint8"
            ).astype(bool)
        inside_valid = inside & valid[a[0] : a[1], b[0] : b[1]]
        out[row, 1:] = (
            inside.sum(),
            inside_valid.sum(),
            (inside_valid & covered[a[0] : a[1], b[0] : b[1]]).sum(),
        )
    return out


def table(
    fields: gpd.GeoDataFrame,
    members: list[np.ndarray],
    objects: pd.DataFrame,
    pixels: np.ndarray,
    pixel_area_m2: float | np.ndarray,
) -> gpd.GeoDataFrame:
    """The per-field table (columns ``COLUMNS`` and the geometry).

    ``pixel_area_m2``: one pixel's ground area, for all fields or per field.
    """
    area = areas_m2(fields)
    pixel_area_m2 = np.broadcast_to(np.asarray(pixel_area_m2, dtype=np.float64), (len(fields),))
    pixels_in, valid_in, covered_in = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    object_area = objects["area_m2"].to_numpy()
    rows = []
    for i, field_id in enumerate(fields["field_id"]):
        sizes = object_area[members[i]]
        stats = np.percentile(sizes, [50, 10, 90]) if len(sizes) else np.full(3, np.nan)
        rows.append(
            {
                "field_id": field_id,
                "area_ha": area[i] / 1e4,
                "objects": len(sizes),
                "density_per_ha": len(sizes) / (area[i] / 1e4) if area[i] > 0 else np.nan,
                "canopy_cover": covered_in[i] / valid_in[i] if valid_in[i] else 0.0,
                "valid_fraction": valid_in[i] / pixels_in[i] if pixels_in[i] else 0.0,
                "inside_fraction": min(1.0, pixels_in[i] * pixel_area_m2[i] / area[i])
                if area[i] > 0
                else 0.0,
                "area_mean_m2": sizes.mean() if len(sizes) else np.nan,
                "area_median_m2": stats[0],
                "area_p10_m2": stats[1],
                "area_p90_m2": stats[2],
                "outside_raster": bool(pixels_in[i] == 0),
            }
        )
    return gpd.GeoDataFrame(rows, geometry=fields.geometry.values, crs=fields.crs)
