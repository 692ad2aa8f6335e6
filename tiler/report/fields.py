"""Per-field statistics: object counts by centroid, canopy cover by pixel, object sizes.

* An object belongs to every field whose polygon contains its centroid
  (``within``: a centroid exactly on a field's boundary belongs to none);
  fields may overlap.
* A pixel belongs to a field when its centre lies inside the polygon
  (``rasterio.features.rasterize``'s rule). The field's *imaged* area is its
  valid pixels (GDAL's dataset mask of the input) times one pixel's ground
  area; canopy cover is the share of those pixels that are object pixels.
* ``area_ha`` is the polygon's area in the raster's CRS (geodesic, on the
  WGS 84 ellipsoid, when it is geographic); every per-area figure (density,
  cover) is over the imaged area, so that a field half outside the image or
  half nodata is not reported half as dense. A field with no valid pixel has
  ``no_image`` set and no density.
* The table keeps the fields file's id column (under its own name) and every
  other attribute, before the computed columns.
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
from tiler.report.vigour import COLUMNS as INDEX_COLUMNS
from tiler.tiling import Window

# rasterio's rasterize builds a MEM dataset whose NotGeoreferencedWarning it hides with
# warnings.catch_warnings, which is not thread-safe: two report windows rasterizing at
# once in threads can let it escape. One at a time (each is a field's bounding box, cheap).
_RASTERIZE = threading.Lock()

# The computed columns, after the fields' own, and the decimals fields.csv keeps of each.
COLUMNS = {
    "area_ha": 4,
    "imaged_area_ha": 4,
    "imaged_pct": 1,
    "objects": None,
    "density_per_ha": 1,
    "canopy_cover_pct": 1,
    "area_mean_m2": 6,
    "area_median_m2": 6,
    "area_p10_m2": 6,
    "area_p90_m2": 6,
    "no_image": None,
}
INDEX_DIGITS = 4  # fields.csv's decimals of an index column (exg_mean, ...), after COLUMNS
DEFAULT_ID = "field"  # the id column when the fields file names none


def load_fields(
    fields: str | os.PathLike | gpd.GeoDataFrame | None,
    field_id: str | None,
    crs_wkt: str,
    bounds: tuple[float, float, float, float],
) -> tuple[gpd.GeoDataFrame, str]:
    """The fields in the raster's CRS, and the name of their id column.

    The frame holds the id column first (``field_id``, else ``field``: ``field 1``,
    ``field 2``, … in row order), the file's other attributes, and the geometry;
    the image's footprint (id ``footprint``) if ``fields`` is ``None``.
    """
    if fields is None:
        footprint = gpd.GeoDataFrame({DEFAULT_ID: ["footprint"]}, geometry=[box(*bounds)])
        return footprint.set_crs(crs_wkt), DEFAULT_ID
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
    attributes = frame.drop(columns=frame.geometry.name)
    if field_id is None:
        id_name, ids = DEFAULT_ID, [f"field {i + 1}" for i in range(len(frame))]
    elif field_id not in frame.columns:
        raise InputError(
            f"{name}: no column {field_id!r} for --field-id; columns: {', '.join(attributes)}"
        )
    else:
        id_name, ids = field_id, attributes.pop(field_id)
    if len(set(ids)) != len(ids):
        raise InputError(f"{name}: field ids in {field_id or 'the row order'} are not unique")
    # A file's own column named like one of ours is kept, as NAME_input.
    taken = {id_name, *COLUMNS, *INDEX_COLUMNS}
    attributes = attributes.rename(columns=lambda c: f"{c}_input" if c in taken else c)
    attributes.insert(0, id_name, list(ids))
    geometry = frame.geometry.to_crs(crs_wkt).make_valid()
    out = gpd.GeoDataFrame(attributes.reset_index(drop=True), geometry=geometry.values)
    return out.set_crs(crs_wkt), id_name


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


# Joins the ids of overlapping fields that hold one object ("A;C").
FIELD_SEPARATOR = ";"


def object_fields(members: list[np.ndarray], ids, n_objects: int) -> np.ndarray:
    """Per object, the ids of the fields holding its centroid (``members`` from
    :func:`count_objects`), joined by ``;`` in the fields' order; ``""`` for none."""
    tags: list[list[str]] = [[] for _ in range(n_objects)]
    for name, inside in zip(ids, members, strict=True):
        for i in inside:
            tags[i].append(str(name))
    return np.array([FIELD_SEPARATOR.join(t) for t in tags], dtype=object)


def pixel_counts(
    window: Window, transform: tuple, geometries: list[tuple[int, object]], valid, labels
) -> np.ndarray:
    """``(field index, pixels, valid pixels, object pixels)`` of the fields in one window.

    Each field is rasterized over its own bounding box within the window only,
    so many small plots cost what their area costs.
    """
    full = Affine(*transform)
    to_pixels = ~(full * Affine.translation(window.col_start, window.row_start))
    out = np.zeros((len(geometries), 4), dtype=np.int64)
    covered = labels > 0
    for row, (index, geometry) in enumerate(geometries):
        xmin, ymin, xmax, ymax = geometry.bounds
        corners = [to_pixels * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
        cols, rows = zip(*corners, strict=True)
        near = Window(
            int(np.floor(min(rows))) - 1,
            int(np.ceil(max(rows))) + 1,
            int(np.floor(min(cols))) - 1,
            int(np.ceil(max(cols))) + 1,
        )
        box = near.intersection(Window.whole(window.shape))  # in the window's own pixels
        out[row, 0] = index
        if box.size == 0:
            continue
        at = full * Affine.translation(*box.translate(*window.origin).xywh[:2])
        with _RASTERIZE:
            inside = rasterize(
                [(geometry, 1)], out_shape=box.shape, transform=at, dtype="uint8"
            ).astype(bool)
        inside_valid = inside & valid[box.slices]
        out[row, 1:] = (
            inside.sum(),
            inside_valid.sum(),
            (inside_valid & covered[box.slices]).sum(),
        )
    return out


def table(
    fields: gpd.GeoDataFrame,
    members: list[np.ndarray],
    objects: pd.DataFrame,
    pixels: np.ndarray,
    pixel_area_m2: float | np.ndarray,
) -> gpd.GeoDataFrame:
    """The per-field table: the fields' own columns, ``COLUMNS``, the geometry.

    ``pixels``: per field, ``(pixels, valid pixels, object pixels)`` inside it;
    ``pixel_area_m2``: one pixel's ground area, for all fields or per field.
    """
    area = areas_m2(fields) / 1e4
    pixel_area_m2 = np.broadcast_to(np.asarray(pixel_area_m2, dtype=np.float64), (len(fields),))
    valid, covered = pixels[:, 1], pixels[:, 2]
    imaged = valid * pixel_area_m2 / 1e4
    object_area = objects["area_m2"].to_numpy()
    counts = np.array([len(m) for m in members], dtype=np.int64)
    sizes = [object_area[m] for m in members]
    stats = np.array(
        [[s.mean(), *np.percentile(s, [50, 10, 90])] if len(s) else [np.nan] * 4 for s in sizes]
    ).reshape(-1, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        computed = {
            "area_ha": area,
            "imaged_area_ha": imaged,
            "imaged_pct": np.where(area > 0, np.minimum(100.0, 100 * imaged / area), 0.0),
            "objects": counts,
            "density_per_ha": np.where(valid > 0, counts / imaged, np.nan),
            "canopy_cover_pct": np.where(valid > 0, 100 * covered / valid, np.nan),
            "area_mean_m2": stats[:, 0],
            "area_median_m2": stats[:, 1],
            "area_p10_m2": stats[:, 2],
            "area_p90_m2": stats[:, 3],
            "no_image": valid == 0,
        }
    own = fields.drop(columns=fields.geometry.name)
    frame = pd.concat([own.reset_index(drop=True), pd.DataFrame(computed)], axis=1)
    return gpd.GeoDataFrame(frame, geometry=fields.geometry.values, crs=fields.crs)


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """The table as fields.csv shows it: computed columns rounded, no geometry."""
    out = pd.DataFrame(table.drop(columns=table.geometry.name))
    for name, digits in COLUMNS.items():
        if digits is not None:
            out[name] = out[name].round(digits)
    for name in set(INDEX_COLUMNS) & set(out.columns):
        out[name] = out[name].round(INDEX_DIGITS)
    return out


def totals(table: pd.DataFrame) -> dict[str, float]:
    """The headline figures over the fields that have an image (overlaps count twice);
    an index column's figure is the mean over those fields' objects."""
    imaged = table[~table["no_image"]]
    area = float(imaged["imaged_area_ha"].sum())
    covered = float((imaged["canopy_cover_pct"] * imaged["imaged_area_ha"]).sum())
    index = {}
    for name in [c for c in INDEX_COLUMNS if c in table.columns]:  # per object, not per field
        counted = imaged[imaged["objects"] > 0]
        weights = counted["objects"].sum()
        index[name] = (counted[name] * counted["objects"]).sum() / weights if weights else np.nan
    return index | {
        "objects": int(imaged["objects"].sum()),
        "fields": len(imaged),
        "no_image": int(table["no_image"].sum()),
        "area_ha": float(imaged["area_ha"].sum()),
        "imaged_area_ha": area,
        "density_per_ha": imaged["objects"].sum() / area if area > 0 else float("nan"),
        "canopy_cover_pct": covered / area if area > 0 else float("nan"),
    }
