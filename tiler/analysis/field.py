"""One field's stand, as one task: its plants read, measured in metres, its parts written.

:func:`field_stand` runs on a worker (a thread, or a ``dask.distributed``
worker sharing the file system): it reads only the objects inside the field's
bounding box from ``objects.parquet``, a batch at a time (row-group statistics skip the
rest), keeps those inside the polygon, takes them to metres
(:class:`Metric`), calls :func:`tiler.stand.find_stand`, and writes the
field's rows and gaps as two Parquet part files with WKB LineStrings in the
raster's CRS. It returns only small things: the field's figures, status,
message, the histogram of its in-row spacings, and where its parts are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from tiler.stand import ROW_COLUMNS, Settings, Stand, find_stand

BATCH = 1 << 18  # objects read at a time: the bounding box's are kept, the rest dropped
# The in-row spacing histogram: BINS bins over [0, SPAN x_ref), then one for the rest.
BINS = 60
SPAN = 3.0

_INTEGER = {"row", "plants", "doubles", "skips", "gaps"}
ROW_SCHEMA = pa.schema(
    [(name, pa.int64() if name in _INTEGER else pa.float64()) for name in ROW_COLUMNS]
    + [("geometry", pa.binary())]
)
GAP_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("gap", pa.int64()),
        ("length_m", pa.float64()),
        ("class", pa.string()),
        ("geometry", pa.binary()),
    ]
)


class Metric:
    """A field's coordinates to metres and back: the identity in a metric CRS, the CRS's
    own unit factor in feet, an azimuthal equidistant projection centred on the field in a
    geographic CRS (its grid north is true north at the field's centre)."""

    def __init__(self, crs_wkt: str, centre: tuple[float, float]):
        from pyproj import CRS, Transformer

        crs = CRS.from_wkt(crs_wkt)
        self.factor, self.forward, self.inverse = 1.0, None, None
        if crs.is_geographic:
            lon, lat = centre
            local = CRS.from_proj4(
                f"+proj=aeqd +lat_0={lat:.10f} +lon_0={lon:.10f} +datum=WGS84 +units=m +no_defs"
            )
            self.forward = Transformer.from_crs(crs, local, always_xy=True)
            self.inverse = Transformer.from_crs(local, crs, always_xy=True)
        elif crs.axis_info and crs.axis_info[0].unit_conversion_factor:
            self.factor = float(crs.axis_info[0].unit_conversion_factor)

    def to_metres(self, xy: np.ndarray) -> np.ndarray:
        if self.forward is not None:
            return np.column_stack(self.forward.transform(xy[:, 0], xy[:, 1]))
        return xy * self.factor

    def from_metres(self, xy: np.ndarray) -> np.ndarray:
        if self.inverse is not None:
            return np.column_stack(self.inverse.transform(xy[:, 0], xy[:, 1]))
        return xy / self.factor


def field_points(objects: str, geometry: Any) -> np.ndarray:
    """The ``(N, 2)`` map x/y of the objects whose centroid lies inside ``geometry``
    (boundary excluded, as the report counts), in the table's order."""
    if geometry is None or geometry.is_empty:
        return np.empty((0, 2))
    import pyarrow.dataset as ds

    xmin, ymin, xmax, ymax = geometry.bounds
    x, y = ds.field("x"), ds.field("y")
    scanner = ds.dataset(objects, format="parquet").scanner(
        columns=["x", "y"],
        filter=(x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax),
        batch_size=BATCH,
        use_threads=False,  # a field is one task: its workers run the fields side by side
    )
    kept = [_inside(geometry, batch) for batch in scanner.to_batches()]  # a batch at a time
    return np.concatenate(kept) if kept else np.empty((0, 2))


def _inside(geometry: Any, batch: pa.RecordBatch) -> np.ndarray:
    x = batch.column(0).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    y = batch.column(1).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    inside = shapely.contains_xy(geometry, x, y)
    return np.column_stack([x[inside], y[inside]])


@dataclass(frozen=True)
class FieldResult:
    """What one field's task returns to the driver (small)."""

    summary: dict[str, Any]
    status: str
    message: str
    counts: np.ndarray  # BINS + 1: the last counts spacings >= SPAN x_ref
    edges_m: np.ndarray  # BINS + 2, the last inf
    rows_part: str | None
    gaps_part: str | None
    bounds: tuple[float, float, float, float] | None  # of the rows' and gaps' lines


def field_stand(
    objects: str, crs_wkt: str, settings: Settings, parts: str, index: int, geometry: Any
) -> FieldResult:
    """The stand of field ``index`` (polygon ``geometry`` in the raster's CRS): read its
    plants from ``objects``, find its rows in metres, write its parts under ``parts``."""
    xy = field_points(objects, geometry)
    if len(xy):
        c = geometry.centroid
        metric = Metric(crs_wkt, (c.x, c.y))
        stand = find_stand(metric.to_metres(xy), settings)
    else:
        metric = Metric(crs_wkt, (0.0, 0.0))
        stand = find_stand(xy, settings)
    counts, edges = histogram(stand)
    rows_part = gaps_part = None
    bounds = None
    if stand.status == "ok" and len(stand.lines):
        rows_table, gaps_table = _tables(stand, metric)
        rows_part = str(Path(parts) / f"rows-{index}.parquet")
        gaps_part = str(Path(parts) / f"gaps-{index}.parquet")
        pq.write_table(rows_table, rows_part)
        pq.write_table(gaps_table, gaps_part)
        bounds = _bounds(rows_table, gaps_table)
    return FieldResult(
        dict(stand.summary), stand.status, stand.message, counts, edges, rows_part, gaps_part,
        bounds,
    )  # fmt: skip


def histogram(stand: Stand) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the in-row spacings in ``BINS`` bins over ``[0, SPAN x_ref)`` and one
    bin beyond, and the ``BINS + 2`` edges in metres (the last ``inf``)."""
    x_ref = stand.plant_spacing
    if not np.isfinite(x_ref) or x_ref <= 0:
        return np.zeros(BINS + 1, np.int64), np.full(BINS + 2, np.nan)
    edges = np.append(np.linspace(0.0, SPAN * x_ref, BINS + 1), np.inf)
    counts, _ = np.histogram(stand.spacings, bins=edges)
    return counts.astype(np.int64), edges


def _tables(stand: Stand, metric: Metric) -> tuple[pa.Table, pa.Table]:
    """The field's rows and gaps, each geometry a WKB LineString in the raster's CRS."""
    lines = [line if len(line) > 1 else np.repeat(line, 2, axis=0) for line in stand.lines]
    sizes = np.array([len(line) for line in lines])
    coords = metric.from_metres(np.concatenate(lines))
    rows_geometry = shapely.linestrings(coords, indices=np.repeat(np.arange(len(lines)), sizes))
    rows = {name: stand.rows[name] for name in ROW_COLUMNS}
    rows["geometry"] = shapely.to_wkb(rows_geometry)
    gaps = stand.gaps
    n = len(gaps["row"])
    ends = np.empty((2 * n, 2))
    ends[0::2, 0], ends[0::2, 1] = gaps["x0"], gaps["y0"]
    ends[1::2, 0], ends[1::2, 1] = gaps["x1"], gaps["y1"]
    gaps_geometry = shapely.linestrings(
        metric.from_metres(ends) if n else ends, indices=np.repeat(np.arange(n), 2)
    )
    row = np.asarray(gaps["row"], dtype=np.int64)
    first = np.ones(n, dtype=bool)
    first[1:] = row[1:] != row[:-1]  # gaps come row by row, in order along each row
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    gap_columns = {
        "row": row,
        "gap": np.arange(n) - start + 1,
        "length_m": gaps["length_m"],
        "class": np.asarray(gaps["class"], dtype=object),
        "geometry": shapely.to_wkb(gaps_geometry),
    }
    return (
        pa.table(rows).cast(ROW_SCHEMA),
        pa.table(gap_columns, schema=GAP_SCHEMA),
    )


def _bounds(*tables: pa.Table) -> tuple[float, float, float, float]:
    geometry = np.concatenate(
        [shapely.from_wkb(t.column("geometry").to_numpy(False)) for t in tables]
    )
    b = shapely.total_bounds(geometry)
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])
