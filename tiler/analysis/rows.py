"""The stand along the rows of each field of a finished run: ``tiler rows`` (issue 16).

:func:`analyse` reads a finished run's object table and, per field (or for
the image's footprint), finds the rows of its plants with
:func:`tiler.stand.find_stand`, one dask task per field
(:func:`tiler.analysis.field.field_stand`): each task reads only its
field's objects and writes its own rows and gaps as part files. The driver
holds only each field's figures and spacing histogram; it streams the parts,
one at a time, into ``rows.parquet`` and ``gaps.parquet`` (GeoParquet,
LineStrings in the raster's CRS) and writes the per-field table
``stand.csv``.

Lengths are metres on the ground whatever the raster's CRS: a CRS in feet is
converted with its unit, a geographic one (degrees) is projected per field
to an azimuthal equidistant projection centred on the field. Row azimuths
are degrees clockwise from the grid north of the CRS the rows were found in:
the raster's own (projected), or true north at the field's centre
(geographic).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiler.analysis.field import GAP_SCHEMA, ROW_SCHEMA, FieldResult, field_stand
from tiler.cluster import executor_for
from tiler.errors import InputError, OutputError
from tiler.georef import image_bounds
from tiler.io import atomic, output, stores
from tiler.io.finished import check_complete
from tiler.io.stores import remove
from tiler.io.targets import claim
from tiler.plan import field_graph
from tiler.stand import Settings, field_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StandReport", "analyse", "lines"]

# stand.csv's decimals per column (None: an integer or a word); gap-class counts are integers.
DIGITS = {
    "row_azimuth_deg": 2, "row_spacing_m": 4, "plant_spacing_m": 4, "row_length_m": 2,
    "plants_per_row_m": 3, "stand_per_ha": 0, "spacing_mean_m": 4, "spacing_sd_m": 4,
    "spacing_cv": 4, "gap_length_m": 2, "multiples_pct": 2, "miss_pct": 2,
    "quality_of_feed_pct": 2, "precision_pct": 2, "emergence_pct": 1,
}  # fmt: skip
NOT_OK = {"no rows": "no rows found", "too few plants": "too few plants"}


@dataclass(frozen=True)
class StandReport:
    """What :func:`analyse` found and wrote.

    Attributes
    ----------
    fields : pandas.DataFrame
        One row per field, in the fields' order: the id column, then
        :func:`tiler.stand.field_columns`.
    rows_path, gaps_path, csv_path : Path
        ``rows.parquet``, ``gaps.parquet`` and ``stand.csv``.
    histograms : dict
        Field id -> ``(counts, edges_m)`` of its in-row spacings: 60 bins over
        ``[0, 3 x_ref)`` and a last one for the longer spacings (its right edge
        ``inf``); all NaN edges where the field has no rows.
    messages : dict
        Field id (as text) -> why it has no rows, for each field that is not ``ok``.
    """

    fields: pd.DataFrame
    rows_path: Path
    gaps_path: Path
    csv_path: Path
    histograms: dict[Any, tuple[np.ndarray, np.ndarray]]
    messages: dict[str, str]
    field_id: str
    settings: Settings
    seconds: float

    def read_rows(self):
        """``rows.parquet`` as a GeoDataFrame (one LineString per row)."""
        import geopandas as gpd

        return gpd.read_parquet(self.rows_path)

    def read_gaps(self):
        """``gaps.parquet`` as a GeoDataFrame (one LineString per gap, plant to plant)."""
        import geopandas as gpd

        return gpd.read_parquet(self.gaps_path)


def refuse_object_storage(dst: Any, out: Any) -> None:
    """The stand is read and written by path: a run or ``out`` in object storage is refused."""
    if stores.is_remote(dst) or stores.is_remote(out):
        raise OutputError(
            f"{dst if stores.is_remote(dst) else out}: the stand along the rows (--rows, tiler "
            "rows) reads and writes by path, not in object storage: copy the run to a folder"
        )


def analyse(
    dst: str | os.PathLike,
    fields: Any = None,
    field_id: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    settings: Settings | None = None,
    overwrite: bool = False,
    scheduler: Any = "threads",
    log: Callable[[str], None] | None = None,
) -> StandReport:
    """Find the rows, gaps and stand figures of each field of the finished run in ``dst``.

    Parameters
    ----------
    dst : path
        A finished ``tiler run`` output (not ``--pixel-only``); only read.
    fields : path or GeoDataFrame, optional
        Field polygons in any CRS (as ``tiler report``'s); default: one field,
        the image's footprint. An object belongs to a field when its centroid
        lies strictly inside it.
    field_id : str, optional
        The column naming each field (default ``field``: ``field 1``, ...).
    out : path, optional
        Folder for ``rows.parquet``, ``gaps.parquet`` and ``stand.csv``; default
        ``dst/stand``. One holding a stand analysis is replaced only with
        ``overwrite``; one holding anything else is refused.
    settings : tiler.stand.Settings, optional
        What is known of the planting (row spacing, azimuth, plant spacing,
        seeding rate) and how gaps are classed; default: all found.
    scheduler : str or distributed.Client
        ``threads`` (default), ``sync``, ``local``, a scheduler address or a
        ``distributed.Client`` (workers must see ``dst`` and ``out``).

    Returns
    -------
    StandReport
        Lengths in metres on the ground. Azimuths are degrees clockwise from
        grid north of the raster's CRS, or, in a geographic CRS, from true
        north at each field's centre (the local projection's grid north).
    """
    import pandas as pd

    from tiler.report import fields as field_stats

    started = time.perf_counter()
    log = log or (lambda message: None)
    settings = settings or Settings()
    refuse_object_storage(dst, out)
    dst = Path(dst)
    manifest = check_complete(dst)
    out = Path(out) if out is not None else dst / output.STAND
    claim(out, output.STAND_OUTPUTS, overwrite=overwrite, holds="a tiler stand analysis")
    inputs = manifest["input"]
    if inputs.get("options", {}).get("georeferencing") == "none" or not inputs.get("crs_wkt"):
        raise OutputError(
            f"{dst}: a --pixel-only run has no map coordinates, which the rows are measured in"
        )
    crs_wkt = inputs["crs_wkt"]
    bounds = image_bounds(tuple(inputs["transform"]), inputs["height"], inputs["width"])
    frame, id_name = field_stats.load_fields(fields, field_id, crs_wkt, bounds)
    geometries = list(frame.geometry.values)
    import shapely

    if fields is not None and not shapely.intersects(geometries, shapely.box(*bounds)).any():
        named = fields if isinstance(fields, str | os.PathLike) else "the fields"
        raise InputError(f"{named}: no field overlaps the image of {dst}")
    ids = pa.array(frame[id_name].tolist())
    parts = out / output.STAND_PARTS
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove(parts)
        parts.mkdir()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the stand ({exc.strerror or exc})") from None
    try:
        graph = field_graph(
            "stand", field_stand, (str(dst / output.OBJECTS), crs_wkt, settings, str(parts)),
            geometries,
        )  # fmt: skip
        log(f"{dst}: {len(geometries)} field(s), one task each")
        with executor_for(scheduler, log=log) as executor:
            results: list[FieldResult] = executor.compute(graph)
        rows_path = _merge(out / "rows.parquet", results, "rows_part", ids, id_name, crs_wkt)
        gaps_path = _merge(out / "gaps.parquet", results, "gaps_part", ids, id_name, crs_wkt)
    finally:
        remove(parts)
    table = pd.DataFrame([r.summary for r in results], columns=field_columns(settings))
    table.insert(0, id_name, frame[id_name].tolist())
    csv_path = out / "stand.csv"
    with atomic.replacing(csv_path) as partial:
        rounded(table).to_csv(partial, index=False)
    names = frame[id_name].tolist()
    messages = {
        str(name): f"{NOT_OK.get(r.status, r.status)}: {r.message}"
        for name, r in zip(names, results, strict=True)
        if r.status != "ok"
    }
    seconds = time.perf_counter() - started
    log(f"stand: {len(results)} field(s) in {seconds:.1f} s")
    return StandReport(
        table, rows_path, gaps_path, csv_path,
        {name: (r.counts, r.edges_m) for name, r in zip(names, results, strict=True)},
        messages, id_name, settings, seconds,
    )  # fmt: skip


def _merge(
    path: Path, results: list[FieldResult], part: str, ids: pa.Array, id_name: str, crs_wkt: str
) -> Path:
    """Stream the fields' part files, in the fields' order, into one GeoParquet file,
    each part's rows tagged with its field's id; each part is removed once copied."""
    from pyproj import CRS

    base = ROW_SCHEMA if part == "rows_part" else GAP_SCHEMA
    boxes = np.array([r.bounds for r in results if r.bounds is not None]).reshape(-1, 4)
    geometry: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["LineString"],
        "crs": CRS.from_wkt(crs_wkt).to_json_dict(),
    }
    if len(boxes):
        geometry["bbox"] = [*boxes[:, :2].min(axis=0).tolist(), *boxes[:, 2:].max(axis=0).tolist()]
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": geometry}}
    schema = base.insert(0, pa.field(id_name, ids.type)).with_metadata(
        {b"geo": json.dumps(geo).encode()}
    )
    with atomic.replacing(path) as partial, pq.ParquetWriter(partial, schema) as writer:
        for k, result in enumerate(results):
            name = getattr(result, part)
            if name is None:
                continue
            table = pq.read_table(name)
            tags = ids.take(pa.array(np.full(len(table), k)))
            writer.write_table(table.add_column(0, schema.field(0), tags).cast(schema))
            os.unlink(name)
    return path


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """The fields table with sensible decimals (stand.csv)."""
    table = table.copy()
    for column in table.columns[1:]:
        if column in DIGITS:
            table[column] = table[column].astype(float).round(DIGITS[column])
        elif column != "stand_status":  # counts: integers, empty where a field has no rows
            table[column] = table[column].astype("Int64")
    return table


def lines(report: StandReport) -> list[str]:
    """What ``tiler rows`` prints: a line per field, then the fields without rows."""
    table = report.fields
    names = table[report.field_id].astype(str).tolist()
    width = max(len(n) for n in names)
    out = []
    for name, (_, row) in zip(names, table.iterrows(), strict=True):
        status = row["stand_status"]
        if status != "ok":
            out.append(f"{name:<{width}}  {NOT_OK.get(status, status)}")
            continue
        text = (
            f"{name:<{width}}  {row['rows']:>5.0f} rows  spacing {row['row_spacing_m']:.3f} m  "
            f"{row['plants_per_row_m']:.2f} plants/m  {row['stand_per_ha']:>9,.0f}/ha  "
            f"doubles {row['doubles']:.0f}  skips {row['skips']:.0f}  gaps {row['gaps']:.0f} "
            f"({row['gap_length_m']:.1f} m)  miss {row['miss_pct']:.1f}%  "
            f"multiples {row['multiples_pct']:.1f}%"
        )
        if np.isfinite(row["emergence_pct"]):
            text += f"  emergence {row['emergence_pct']:.1f}%"
        out.append(text)
    return out + [f"{name}: {why}" for name, why in report.messages.items()]
