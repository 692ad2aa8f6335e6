"""Exports of a finished run: the labels as a COG, object polygons, the table as CSV.

Each export reads DST (a complete run, DESIGN.md section 4) tile by tile and
writes one file, first under a temporary name beside it, renamed when whole.
The formats live in ``tiler.io`` (:mod:`~tiler.io.export_raster`,
:mod:`~tiler.io.export_vector`, :mod:`~tiler.io.export_table`); this module
runs the per-tile graph and places objects in fields (as the report does).

- :func:`export_cog`: the labels (or a uint8 object mask) as a Cloud-Optimized
  GeoTIFF, the way into GDAL-based tools (QGIS, ``rioxarray.open_rasterio``).
- :func:`export_polygons`: one polygon per object, with the object table's
  columns, in the vector format the file's extension names.
- :func:`export_csv`: the object table for spreadsheets, with ``lon``/``lat``.
- :func:`export`: any of them at once, every output path checked first.

>>> from tiler.export import export_polygons
>>> export_polygons("out/", "out/objects.gpkg", simplify_m=0.2)      # doctest: +SKIP
PosixPath('out/objects.gpkg')
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tiler.errors import ConfigError, OutputError
from tiler.io import output, stores
from tiler.io.export_files import target
from tiler.io.export_raster import COG_SUFFIXES, export_cog
from tiler.io.export_table import CSV_SUFFIXES, write_csv
from tiler.io.export_vector import (
    VECTOR_FORMATS,
    dissolve,
    polygonize_tile,
    simplify,
    to_map,
    write_vector,
)
from tiler.io.finished import FinishedRun, open_run, read_objects, storage_errors
from tiler.io.targets import claim
from tiler.tiling import TileGrid

__all__ = ["export", "export_cog", "export_csv", "export_polygons", "object_polygons"]

FIELD_COLUMN = "field"


def _check_options(run: FinishedRun, simplify_m: float | None, fields) -> None:
    """Refuse what a run cannot serve: metres or fields on a pixel-only run."""
    if simplify_m is not None and not (math.isfinite(simplify_m) and simplify_m > 0):
        raise ConfigError(f"--simplify {simplify_m}: must be a positive length, e.g. 0.2m")
    if run.georeferenced:
        return
    if simplify_m is not None:
        raise ConfigError(f"{run.dst}: --simplify is in metres; this run is pixel-only (no CRS)")
    if fields is not None:
        raise ConfigError(f"{run.dst}: --fields needs map coordinates; this run is pixel-only")


def _pixel_size_m(run: FinishedRun) -> float:
    """The side in metres of a pixel at the image centre (geometric mean of its two sides)."""
    from tiler.georef import pixel_area_m2

    _, y = run.transform * (run.shape[1] / 2, run.shape[0] / 2)
    return float(np.sqrt(pixel_area_m2(run.crs_wkt, tuple(run.transform)[:6], y)))


def field_tags(run: FinishedRun, table, fields, field_id: str | None) -> np.ndarray:
    """For each row of ``table`` (with centroid ``x``, ``y``), the field its centroid lies in.

    Fields are read and reprojected as ``tiler report`` reads them
    (:func:`tiler.report.fields.load_fields`) and objects placed as it counts
    them (:func:`~tiler.report.fields.count_objects`: centroid within the
    polygon). ``""`` where an object is in no field; the ids joined by ``;``
    where fields overlap.
    """
    from rasterio.transform import array_bounds

    from tiler.report.fields import count_objects, load_fields, object_fields

    bounds = array_bounds(*run.shape, run.transform)
    frame, id_name = load_fields(fields, field_id, run.crs_wkt, bounds)
    return object_fields(count_objects(table, frame), frame[id_name], len(table))


def object_polygons(
    dst: str | os.PathLike, *, scheduler: Any = "threads", simplify_m: float | None = None
):
    """One polygon per object of the run in ``dst``, with the object table's columns.

    Parameters
    ----------
    dst : path
        A complete run.
    scheduler : str or distributed.Client
        Where the per-tile tasks run: ``threads``, ``sync`` or a
        ``distributed.Client``.
    simplify_m : float, optional
        Simplify each outline by this many metres (see
        :func:`tiler.io.export_vector.simplify`); converted to pixels with the
        pixel size at the image centre. Refused on a pixel-only run.

    Returns
    -------
    geopandas.GeoDataFrame
        The rows and columns of ``objects.parquet``, in its order, the point
        geometry replaced by each object's exact outline in the run's CRS.

    Notes
    -----
    Each tile is vectorised on its own (``rasterio.features.shapes``, GDAL's
    polygonize) into 4-connected pieces; only the pieces come back to this
    process, where the labels found in several tiles are dissolved (see
    :func:`~tiler.io.export_vector.dissolve`). An object is one label, its
    pixels joined by tiler's 8-connectivity: it is a Polygon (holes included)
    when its pixels are also 4-connected, and a MultiPolygon of its
    4-connected parts, touching at corners, when some are joined only
    diagonally: the one valid simple-features form of a corner join (a single
    ring through the corner touches itself). Unsimplified, every polygon
    covers exactly its object's pixels: its area is ``area_m2`` and
    rasterizing it gives back the labels.
    """
    import geopandas as gpd
    import pandas as pd

    from tiler.executor import Executor
    from tiler.plan import window_graph

    run = open_run(dst)
    _check_options(run, simplify_m, None)
    table = read_objects(run.dst)
    windows = [window for *_, window in TileGrid(run.shape, run.chunks)]
    graph = window_graph("polygons", polygonize_tile, (run.store,), windows)
    pieces = Executor(scheduler).compute(graph)
    labels = np.concatenate([p[0] for p in pieces])
    polygons = np.concatenate([p[1] for p in pieces])
    tiles = np.repeat(np.arange(len(pieces)), [len(p[0]) for p in pieces])
    labels, polygons = dissolve(labels, polygons, tiles)
    where = pd.Index(labels).get_indexer(table["label"].to_numpy(np.uint64))
    if len(labels) != len(table) or (where < 0).any():
        raise OutputError(
            f"{run.dst}: labels.zarr holds {len(labels)} objects, objects.parquet "
            f"{len(table)}, not the same labels; the run is damaged"
        )
    polygons = polygons[where]
    if simplify_m is not None:
        polygons = simplify(polygons, simplify_m / _pixel_size_m(run))
    geometry = gpd.GeoSeries(to_map(polygons, run.transform), crs=table.crs)
    return gpd.GeoDataFrame(table.drop(columns="geometry"), geometry=geometry, crs=table.crs)


def export_polygons(
    dst: str | os.PathLike,
    path: str | os.PathLike,
    *,
    scheduler: Any = "threads",
    simplify_m: float | None = None,
    fields: str | os.PathLike | None = None,
    field_id: str | None = None,
) -> Path:
    """Write one polygon per object (see :func:`object_polygons`) to ``path``.

    The format goes by the extension (:data:`tiler.io.export_vector.VECTOR_FORMATS`):
    ``.gpkg`` GeoPackage (layer ``objects``), ``.shp`` Shapefile (long column
    names shortened), ``.geojson``/``.json`` GeoJSON and ``.kml`` KML (both in
    WGS 84), ``.fgb`` FlatGeobuf, ``.parquet`` GeoParquet; ``path`` is replaced
    if it exists. With ``fields``, a ``field`` column names the field each
    object's centroid lies in (see :func:`field_tags`).
    """
    run = open_run(dst)
    path = target(path, tuple(VECTOR_FORMATS), "polygons", run)
    _check_options(run, simplify_m, fields)
    frame = object_polygons(run.dst, scheduler=scheduler, simplify_m=simplify_m)
    if fields is not None:
        frame.insert(len(frame.columns) - 1, FIELD_COLUMN, field_tags(run, frame, fields, field_id))
    return write_vector(frame, path)


def export_csv(
    dst: str | os.PathLike,
    path: str | os.PathLike,
    *,
    fields: str | os.PathLike | None = None,
    field_id: str | None = None,
) -> Path:
    """Write the object table of the run in ``dst`` as CSV, for spreadsheets.

    Every column of ``objects.parquet`` but the point geometry (its
    coordinates are the ``x`` and ``y`` columns), with ``lon`` and ``lat``
    (WGS 84 degrees) after ``x`` and ``y``, then ``field`` (with ``fields``,
    see :func:`field_tags`) and ``crs``: the run's CRS as ``EPSG:code``
    (another authority's code, or WKT, if it has none). Floats are written in
    full (they read back equal). ``path`` ends in ``.csv``; it is replaced if
    it exists.
    """
    import pyarrow.parquet as pq

    run = open_run(dst)
    path = target(path, CSV_SUFFIXES, "the CSV table", run)
    _check_options(run, None, fields)
    path_in, filesystem = stores.file_system(run.dst / output.OBJECTS)
    table = pq.read_table(path_in, filesystem=filesystem).drop_columns(["geometry"]).to_pandas()
    if fields is not None:
        table[FIELD_COLUMN] = field_tags(run, table, fields, field_id)
    return write_csv(table, path, run.crs_wkt if run.georeferenced else "")


def export(
    dst: str | os.PathLike,
    *,
    cog: str | os.PathLike | None = None,
    mask: bool = False,
    polygons: str | os.PathLike | None = None,
    csv: str | os.PathLike | None = None,
    simplify_m: float | None = None,
    fields: str | os.PathLike | None = None,
    field_id: str | None = None,
    overwrite: bool = False,
    log: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """Write any of the exports of the run in ``dst``; every path is checked before any is written.

    A path that exists is refused unless ``overwrite`` (see :func:`tiler.io.targets.claim`).
    ``simplify_m`` applies to the polygons; ``fields``/``field_id`` tag the
    polygons and the CSV. Returns ``{"cog": path, "polygons": path, "csv": path}``
    for those asked; ``log(kind, path)`` is called as each is written.
    """
    log = log or (lambda kind, path: None)
    run = open_run(dst)
    wanted = {"cog": cog, "polygons": polygons, "csv": csv}
    rules = {
        "cog": (COG_SUFFIXES, "a COG"),
        "polygons": (tuple(VECTOR_FORMATS), "polygons"),
        "csv": (CSV_SUFFIXES, "the CSV table"),
    }
    targets = {k: target(p, *rules[k], run) for k, p in wanted.items() if p is not None}
    for path in targets.values():
        claim(path, None, overwrite=overwrite)  # replaced by the writer's rename
    _check_options(run, simplify_m, fields)
    if fields is not None:  # a bad fields file is refused before anything is written
        field_tags(run, _no_objects(), fields, field_id)
    tagging = {"fields": fields, "field_id": field_id}
    writers = {
        "cog": lambda p: export_cog(run.dst, p, mask=mask),
        "polygons": lambda p: export_polygons(run.dst, p, simplify_m=simplify_m, **tagging),
        "csv": lambda p: export_csv(run.dst, p, **tagging),
    }
    written = {}
    with storage_errors(run.dst):  # object storage refusing to give the run: one line
        for kind, path in targets.items():
            written[kind] = writers[kind](path)
            log(kind, written[kind])
    return written


def _no_objects():
    """An object table with no rows: enough to check a fields file."""
    import pandas as pd

    return pd.DataFrame({"x": np.empty(0), "y": np.empty(0)})
