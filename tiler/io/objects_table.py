"""The object table: one row per object, written as GeoParquet (``objects.parquet``).

The table is written one row group at a time (:func:`write_object_groups`):
the driver builds the columns of ``ROW_GROUP`` objects, writes them and
drops them, so the table costs memory for one row group, not for every
object. The file is byte for byte what ``pyarrow.parquet.write_table`` writes
for the whole table, whose row groups are of that same size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiler.georef import map_xy, pixel_area_m2
from tiler.io import atomic, stores
from tiler.io.output import OBJECTS

OBJECT_COLUMNS = (
    "label",
    "area_px",
    "area_m2",
    "centroid_row",
    "centroid_col",
    "x",
    "y",
    "bbox_min_row",
    "bbox_min_col",
    "bbox_max_row",
    "bbox_max_col",
)
#: rows per row group: pyarrow's default, so the file is as ``pq.write_table`` writes it
ROW_GROUP = 1024 * 1024


def object_columns(
    stats: dict[str, np.ndarray],
    transform: tuple[float, ...],
    crs_wkt: str = "",
    *,
    georeferenced: bool = True,
    extra: dict[str, np.ndarray] | None = None,
    first_label: int = 1,
) -> dict[str, np.ndarray | None]:
    """The object table from merged statistics (objects already in label order).

    The objects may be a slice of the table: their labels start at
    ``first_label``. Integer statistics of any integer type give int64 columns.

    Not ``georeferenced`` (``--pixel-only``): ``area_m2``, ``x`` and ``y``
    are ``None``, written as nulls; they are never made up from pixels.
    ``extra`` adds columns after these: a points model's ``peak_row``,
    ``peak_col`` and ``confidence`` give ``peak_x``, ``peak_y`` (map
    coordinates of the peak pixel's centre) and ``confidence``.
    """
    count = stats["count"]
    rows = stats["sum_row"] / count
    cols = stats["sum_col"] / count
    x, y = map_xy(transform, rows, cols)
    return {
        "label": np.arange(first_label, first_label + len(count), dtype=np.int64),
        "area_px": count.astype(np.int64),
        "area_m2": count * pixel_area_m2(crs_wkt, transform, y) if georeferenced else None,
        "centroid_row": rows,
        "centroid_col": cols,
        "x": x if georeferenced else None,
        "y": y if georeferenced else None,
        "bbox_min_row": stats["min_row"].astype(np.int64),
        "bbox_min_col": stats["min_col"].astype(np.int64),
        "bbox_max_row": stats["max_row"].astype(np.int64) + 1,
        "bbox_max_col": stats["max_col"].astype(np.int64) + 1,
        **_extra_columns(extra or {}, transform, georeferenced),
    }


def _extra_columns(
    extra: dict[str, np.ndarray], transform: tuple[float, ...], georeferenced: bool
) -> dict[str, np.ndarray | None]:
    if "peak_row" not in extra:
        return dict(extra)
    px, py = map_xy(
        transform, extra["peak_row"].astype(np.float64), extra["peak_col"].astype(np.float64)
    )
    return {
        "peak_x": px if georeferenced else None,
        "peak_y": py if georeferenced else None,
        **{k: v for k, v in extra.items() if k not in ("peak_row", "peak_col")},
    }


def _point_wkb(x: np.ndarray, y: np.ndarray) -> pa.Array:
    """Little-endian WKB points, built in one vectorised step."""
    records = np.empty(len(x), dtype=[("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])
    records["order"], records["kind"], records["x"], records["y"] = 1, 1, x, y
    offsets = np.arange(0, 21 * len(x) + 1, 21, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(x), [None, pa.py_buffer(offsets), pa.py_buffer(records)]
    )


def write_objects(dst: Any, columns: dict[str, np.ndarray], crs_wkt: str) -> Any:
    """Write the object table of whole ``columns`` (:func:`write_object_groups`, one source)."""
    n = len(columns["label"])
    parts = [slice(a, a + ROW_GROUP) for a in range(0, n, ROW_GROUP)] or [slice(0, 0)]

    def groups() -> Iterator[dict[str, np.ndarray | None]]:
        for part in parts:
            yield {k: None if v is None else v[part] for k, v in columns.items()}

    return write_object_groups(dst, groups, crs_wkt, georeferenced=columns["x"] is not None)


def write_object_groups(
    dst: Any,
    groups: Callable[[], Iterator[dict[str, np.ndarray | None]]],
    crs_wkt: str,
    *,
    georeferenced: bool,
) -> Any:
    """Write the object table as GeoParquet 1.1 (WKB points at the centroids), group by group.

    ``groups()`` yields the columns (:func:`object_columns`) of ``ROW_GROUP``
    objects at a time, in label order (the last group shorter; one empty
    group for no objects). When the objects have map positions
    (``georeferenced``) it is called twice: first for the bounding box of the
    points, which the file's metadata holds before the first row, then to write.

    Written with pyarrow directly, the WKB built with NumPy: for 820 000
    objects the whole file takes 0.5 s, against 2.1 s through one shapely
    point per object and geopandas. geopandas reads it back as a
    GeoDataFrame with its CRS.
    """
    geometry: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"]}
    if crs_wkt:
        from pyproj import CRS

        geometry["crs"] = CRS.from_wkt(crs_wkt).to_json_dict()
    if georeferenced and (bbox := _points_bbox(groups())) is not None:
        geometry["bbox"] = bbox
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": geometry}}
    metadata = {b"geo": json.dumps(geo).encode()}
    final = stores.folder(dst) / OBJECTS
    with atomic.replacing(final) as partial:
        writer = None
        try:
            for columns in groups():
                table = _table(columns).replace_schema_metadata(metadata)
                del columns  # one group in memory at a time, not this one and the next
                if writer is None:
                    writer = pq.ParquetWriter(partial, table.schema)
                writer.write_table(table)
                del table
        finally:
            if writer is not None:
                writer.close()
    return final


def _points_bbox(groups: Iterator[dict[str, np.ndarray | None]]) -> list[float] | None:
    """``[xmin, ymin, xmax, ymax]`` of the points of every group; ``None`` for no points."""
    found = []
    for columns in groups:
        x, y = columns["x"], columns["y"]
        del columns
        if len(x):
            found.append((x.min(), y.min(), x.max(), y.max()))
        del x, y
    if not found:
        return None
    xmin, ymin, xmax, ymax = zip(*found, strict=True)
    return [float(min(xmin)), float(min(ymin)), float(max(xmax)), float(max(ymax))]


def _table(columns: dict[str, np.ndarray | None]) -> pa.Table:
    """One row group's Arrow table: the columns in order, nulls where absent, the geometry."""
    x, y = columns["x"], columns["y"]
    n = len(columns["label"])
    table = pa.table(
        {
            name: pa.nulls(n, pa.float64()) if columns[name] is None else columns[name]
            for name in (*OBJECT_COLUMNS, *(k for k in columns if k not in OBJECT_COLUMNS))
        }
    )
    if x is None:  # pixel-only: no map position
        return table.append_column("geometry", pa.nulls(n, pa.binary()))
    return table.append_column("geometry", _point_wkb(x, y))
