"""Plant counts, density, canopy cover and object sizes per field, and the HTML report.

``build(dst, fields=..., field_id=..., out=...)`` reads a finished run and
writes ``fields.csv``, ``fields.parquet`` (with the field geometry),
``objects.csv``, ``objects.parquet`` (one row per object, with its field and
vegetation index), a self-contained ``report.html`` and ``pyramid.zarr``,
all in ``out``. It makes one pass over the image in windows (reading the
input and the labels): the pixel counts of every field, the valid pixels of
every cell of the density grid (:mod:`tiler.report.grid`), each object's
index sums (:mod:`tiler.report.vigour`), and the multiscale pyramid
(:mod:`tiler.report.pyramid`) that the report's pictures come from. It only
ever reads the run: a read-only run folder is reported like any other.

The run and ``out`` may be in object storage (``s3://bucket/out/``,
:mod:`tiler.io.stores`): each file is then uploaded whole, the pyramid is
written in place, and ``report.html`` is written last.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import shapely
from rasterio.enums import ColorInterp

from tiler.analysis.rows import StandReport, analyse, refuse_object_storage
from tiler.analysis.rows import rounded as stand_rounded
from tiler.errors import InputError, OutputError
from tiler.executor import Executor
from tiler.georef import image_bounds, pixel_area_m2
from tiler.io import atomic, output, remote, stores
from tiler.io.destination import client_error
from tiler.io.finished import check_complete, read_objects, storage_errors
from tiler.io.input_identity import reopen
from tiler.io.stores import remove
from tiler.io.targets import claim
from tiler.plan import window_graph
from tiler.report import fields as field_stats
from tiler.report import grid, pyramid, vigour
from tiler.report.stand_html import StandSection
from tiler.stand import Settings, field_columns

if TYPE_CHECKING:
    from tiler.yield_.report_section import YieldSection

__all__ = ["Report", "build", "lines"]

# What the report reads of the run's object table (besides the point geometry).
OBJECT_COLUMNS = ("label", "x", "y", "area_px", "area_m2", "centroid_row", "centroid_col")


@dataclass(frozen=True)
class Report:
    """What a report wrote: the per-field table and its files."""

    table: gpd.GeoDataFrame
    csv: Path
    parquet: Path
    html: Path
    seconds: float
    field_id: str  # the table's id column: the fields file's own name for it
    objects: gpd.GeoDataFrame | None = None  # the per-object table
    index: vigour.Vigour | None = None  # the vegetation index averaged per object
    stand: StandReport | None = None  # the stand along the rows (``stand=``)
    yield_: YieldSection | None = None  # the yield per field (``yield_model=``)


def build(
    dst: str | os.PathLike,
    fields: str | os.PathLike | gpd.GeoDataFrame | None = None,
    field_id: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    index: str | None = None,
    overwrite: bool = False,
    scheduler: str = "threads",
    src: str | os.PathLike | None = None,
    stand: Settings | None = None,
    yield_model: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Report:
    """Report a finished run in ``dst`` per field (or for its whole footprint).

    Parameters
    ----------
    dst : path or URL
        A finished ``tiler run`` output, or its URL in object storage; only read.
    fields : path or GeoDataFrame, optional
        Field polygons (GeoJSON, GeoPackage or anything GDAL reads, any CRS;
        reprojected to the raster's). Default: one field, the image footprint.
    field_id : str, optional
        The column naming each field; kept under its name, with every other
        attribute of the file (default: a column ``field``, ``field 1``, ``field 2``, …).
    out : path or URL, optional
        Folder (or object storage prefix) for ``fields.csv``, ``fields.parquet``,
        ``report.html`` and the pyramid ``pyramid.zarr``; default ``dst/report``.
        A folder holding a report is refused unless ``overwrite``, one holding
        anything else always (see :func:`tiler.io.targets.claim`).
    index : str, optional
        The vegetation index averaged per object (:mod:`tiler.report.vigour`):
        ``exg``, ``exgr``, ``gray``, ``ndvi``, ``ndvi:RED,NIR`` or ``none``;
        default: the run's NDVI if its pipeline is NDVI, else ExG.
    scheduler : str
        ``threads`` (default) or ``sync`` for the pass over the image.
    src : path, optional
        The run's input at a new place; accepted when its size and
        fingerprint are those run.json records.
    stand : tiler.stand.Settings, optional
        Also the stand along the rows of each field (:func:`tiler.analysis.analyse`,
        ``tiler report --rows``): its files in ``out/stand``, its columns in the
        fields table (before the geometry) and its section in the page.
    yield_model : path, optional
        A model folder of ``tiler yield calibrate`` (``tiler report --yield-model``): the
        yield per field with 95 % prediction intervals in the fields table (before the
        geometry), the yield map as ``yield.tif`` and the section "Yield" in the page
        (:mod:`tiler.yield_.report_section`). ``warn``: told of cells whose features lie
        outside the calibration's (default: a :class:`tiler.errors.TilerWarning`).
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    manifest = check_complete(dst)
    dst = stores.folder(dst)
    out = stores.folder(out) if out is not None else dst / output.REPORT
    if stand is not None:  # before the pass over the image, not after it
        refuse_object_storage(dst, out)
    model = None
    if yield_model is not None:  # a bad model folder: one line, before the pass
        from tiler.yield_.report_section import load_model

        model = load_model(yield_model, dst, out, with_rows=stand is not None)
    # Object storage refusing a request (no keys, no traceback): one line naming dst or out.
    with storage_errors(dst, out, "the report"):
        # The report's files are then replaced one by one (each renamed into place).
        claim(out, output.REPORT_OUTPUTS, overwrite=overwrite, holds="a tiler report")
        if manifest["input"].get("options", {}).get("georeferencing") == "none":
            raise OutputError(
                f"{dst}: a --pixel-only run has no map coordinates or areas, which the report needs"
            )
        source = _input(manifest, src)
        index_of = vigour.choose(
            index, manifest.get("config", {}), manifest["input"]["count"], str(dst)
        )
        transform = tuple(manifest["input"]["transform"])
        bounds = image_bounds(transform, source.height, source.width)
        crs_wkt = manifest["input"]["crs_wkt"]
        table_fields, id_name = field_stats.load_fields(fields, field_id, crs_wkt, bounds)
        objects = read_objects(dst, columns=[*OBJECT_COLUMNS, "geometry"])
        members = field_stats.count_objects(objects, table_fields)

        labels = stores.open_array(dst / output.LABELS / "labels", mode="r")
        shape = (source.height, source.width)
        bands = display_bands(source)
        a, b, _, d, e, _ = transform
        scale = (abs(e) if b == 0 else np.hypot(b, e), abs(a) if d == 0 else np.hypot(a, d))
        centre = _corner(transform, shape[0] / 2, shape[1] / 2)[1]
        pixel_m = float(np.sqrt(pixel_area_m2(crs_wkt, transform, centre)))
        k = grid.cell_pixels(shape, pixel_m)
        try:
            stores.make_folder(out)
            partial = pyramid.create(out, shape, len(bands), source.dtype, labels.dtype, scale)
        except OSError as exc:  # a read-only or full file system: the one line, no traceback
            if client_error(exc) is not None:  # object storage's: said by storage_errors
                raise
            raise OutputError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
        try:
            pixels, valid, stats = _pass(
                source, (bands, index_of), dst, transform, table_fields, partial, k, scheduler, log,
                objects["label"].to_numpy(),
            )  # fmt: skip
            pyramid.finish(partial)
        except BaseException:  # in object storage it has its final name: nothing half made stays
            remove(partial)
            raise
        # One pixel's ground area at each field (it varies with latitude in a geographic CRS).
        centres = shapely.centroid(np.asarray(table_fields.geometry.values))
        pixel_areas = pixel_area_m2(crs_wkt, transform, np.nan_to_num(shapely.get_y(centres)))
        result = field_stats.table(table_fields, members, objects, pixels, pixel_areas)
        if index_of is not None:  # after the other computed columns, before the geometry
            means = vigour.field_means(members, stats[0])
            result.insert(len(result.columns) - 1, index_of.mean_column, means)
        section = None
        if stand is not None:
            found = analyse(dst, None if fields is None else table_fields, id_name,
                            out / output.STAND, settings=stand, overwrite=True, scheduler=scheduler,
                            log=log)  # fmt: skip
            result = _with_columns(result, found.fields, str(fields or dst), "a stand column "
                                   "(tiler report --rows)")  # fmt: skip
            section = StandSection(found.fields, found.read_rows(), found.read_gaps(),
                                   found.histograms, found.messages, stand)  # fmt: skip
        else:  # a stand of an earlier report here would no longer be this report's
            remove(out / output.STAND)
        yields = None
        if model is not None:
            from tiler.yield_.report_section import predict

            yields = predict(model, dst, table_fields, id_name, out, scheduler=scheduler, src=src,
                             stand=out / output.STAND if stand is not None else None,
                             log=log, warn=warn)  # fmt: skip
            result = _with_columns(result, yields.fields_columns, str(fields or dst),
                                   "a yield column")  # fmt: skip
        else:  # a yield map of an earlier report here would no longer be this report's
            remove(out / "yield.tif")
        tags = field_stats.object_fields(members, table_fields[id_name], len(objects))
        per_object = vigour.object_table(objects, tags, id_name, index_of, stats)
        cells = grid.density(objects, valid, k, crs_wkt, transform, pixel_m)

        from tiler.report.html import render

        shown = _rounded(result, stand, yields)
        csv = _atomic(out / "fields.csv", lambda p: shown.to_csv(p, index=False))
        parquet = _atomic(out / "fields.parquet", lambda p: result.to_parquet(p, index=False))
        _atomic(out / "objects.csv", lambda p: vigour.rounded(per_object).to_csv(p, index=False))
        _atomic(out / "objects.parquet", lambda p: per_object.to_parquet(p, index=False))
        seconds = time.perf_counter() - started
        page = render(dst, manifest, out / pyramid.GROUP, result, id_name, objects, cells,
                      fields is not None, stand=section, yield_section=yields)  # fmt: skip
        html = _atomic(out / "report.html", lambda p: Path(p).write_text(page, encoding="utf-8"))
    log(f"report: {len(result)} field(s) in {seconds:.1f} s")
    return Report(result, csv, parquet, html, seconds, id_name, per_object, index_of,
                  found if stand is not None else None, yields)  # fmt: skip


def _with_columns(table: gpd.GeoDataFrame, extra, source: str, what: str) -> gpd.GeoDataFrame:
    """The fields table with ``extra``'s columns but its first (the id, in the table's
    order) inserted before its geometry; a field attribute of the same name is refused."""
    clash = sorted(set(extra.columns[1:]) & set(table.columns))
    if clash:
        raise InputError(
            f"{source}: the fields have a column {clash[0]!r}, which is also {what}: rename it"
        )
    out = table.copy()
    for name in extra.columns[1:]:
        out.insert(len(out.columns) - 1, name, extra[name].to_numpy())
    return out


def _rounded(table: gpd.GeoDataFrame, stand: Settings | None, yields: YieldSection | None):
    """fields.csv: the report's columns rounded as always, the stand's as stand.csv's, the
    yield's as ``tiler yield predict``'s fields.csv."""
    shown = field_stats.rounded(table)
    if stand is not None:
        columns = field_columns(stand)
        shown[columns] = stand_rounded(shown[[shown.columns[0], *columns]])[columns]
    return shown if yields is None else yields.rounded(shown)


def lines(report: Report) -> list[str]:
    """What ``tiler report`` prints: a line per field, and the totals over imaged fields."""
    table = report.table
    names = table[report.field_id].astype(str).tolist()
    width = max(len(n) for n in [*names, "all imaged"])
    index = report.index
    out = []
    for name, (_, row) in zip(names, table.iterrows(), strict=True):
        head = f"{name:<{width}}  {row['objects']:>8} objects  "
        if row["no_image"]:
            out.append(head + "no image: outside the raster or only nodata")
            continue
        out.append(head + _figures(row, index))
    if len(table) > 1:
        total = field_stats.totals(table)
        out.append(
            f"{'all imaged':<{width}}  {total['objects']:>8} objects  " + _figures(total, index)
        )
    return out


def _figures(row, index: vigour.Vigour | None) -> str:
    text = (
        f"{row['density_per_ha']:>9,.0f}/ha  cover {row['canopy_cover_pct']:5.1f}%  "
        f"imaged {row['imaged_area_ha']:.4f} of {row['area_ha']:.4f} ha"
    )
    return text + (f"  {index.title} {row[index.mean_column]:.3f}" if index else "")


def _pass(source, bands, dst, transform, table_fields, partial, k, scheduler, log, labels):
    """The pass over the image: per field ``(pixels, valid, object pixels)``, the
    valid pixels per grid cell, and the index's ``(mean, sd)`` per object of ``labels``
    (``bands``: the display bands and the :class:`vigour.Vigour`, or None)."""
    shape = (source.height, source.width)
    windows = pyramid.windows(shape)
    tree = shapely.STRtree(list(table_fields.geometry))
    pieces = []
    for w in windows:
        x0, y0 = _corner(transform, w.row_start, w.col_start)
        x1, y1 = _corner(transform, w.row_stop, w.col_stop)
        near = tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        pieces.append([(int(i), table_fields.geometry.iloc[i]) for i in sorted(near)])
    labels_path = stores.location(dst / output.LABELS / "labels")
    graph = window_graph(
        "report", window_counts,
        (source, bands, labels_path, transform, stores.location(partial), k),
        windows, pieces,
    )  # fmt: skip
    log(f"{dst}: {len(windows)} window(s) of {pyramid.WINDOW} px over {shape[0]} x {shape[1]}")
    pixels = np.zeros((len(table_fields), 3), dtype=np.int64)
    valid = np.zeros(grid.grid_shape(shape, k), dtype=np.int64)
    sums = vigour.Accumulator(labels)
    for counts, (row, col, block), partial_sums in Executor(scheduler).compute(graph):
        for index, *values in counts:
            pixels[index] += values
        valid[row : row + block.shape[0], col : col + block.shape[1]] += block
        if partial_sums is not None:
            sums.add(partial_sums)  # in window order: the same sums for any scheduler
    return pixels, valid, sums.result()


def window_counts(source, bands, labels_path, transform, pyramid_path, k, window, pieces):
    """One window of the report pass: the fields' pixel counts, the valid pixels per
    grid cell, the index's sums per object, and its pyramid block."""
    display, index_of = bands
    read = tuple(dict.fromkeys(display + (index_of.bands if index_of else ())))
    image, valid = source.read(read, window)  # every band once
    labels = stores.open_array(labels_path, mode="r")[window.slices]
    planes = lambda wanted: image[[read.index(b) for b in wanted]]  # noqa: E731
    pyramid.write_level0(pyramid_path, window, planes(display), valid, labels)
    sums = (
        vigour.window_partial(index_of, planes(index_of.bands), valid, labels) if index_of else None
    )
    counts = field_stats.pixel_counts(window, transform, pieces, valid, labels)
    fields = [(int(row[0]), int(row[1]), int(row[2]), int(row[3])) for row in counts]
    return fields, grid.valid_block(window, valid, k), sums


def display_bands(source) -> tuple[int, ...]:
    """The bands to look at: red, green and blue if tagged so, else the first three
    non-alpha bands, else the first band."""
    with remote.open_dataset(source.path, source.driver) as ds:
        interp = list(ds.colorinterp)
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in rgb):
        return tuple(interp.index(c) + 1 for c in rgb)
    plain = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    return tuple(plain[:3]) if len(plain) >= 3 else tuple(plain[:1])


_WHY_INPUT = "the report reads its mask for canopy cover (if it moved, pass --src NEW_PATH)"


def _input(manifest: dict, src: str | os.PathLike | None = None):
    """The run's input, checked to be the very file the run read (the mask comes from it).

    ``src``: where it is now, if it moved (``tiler report --src``).
    """
    return reopen(manifest["input"], moved_to=src, why=_WHY_INPUT)


def _corner(transform, row: float, col: float) -> tuple[float, float]:
    a, b, c, d, e, f = transform
    return a * col + b * row + c, d * col + e * row + f


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary name in the same folder, then rename."""
    with atomic.replacing(path) as partial:
        write(partial)
    return path


def provenance(dst: Any, manifest: dict) -> dict:
    """What the report is of: input, pipeline, versions, dates."""
    from tiler import __version__

    inputs = manifest["input"]
    return {
        "output": str(dst) if stores.is_remote(dst) else str(dst.resolve()),
        "input": inputs["path"],
        "size": f"{inputs['height']} x {inputs['width']} px, "
        f"{inputs.get('size_bytes', 0) / 2**20:.1f} MiB",
        "fingerprint": inputs.get("fingerprint_sha256", ""),
        "pipeline": json.dumps(manifest.get("config", {})),
        "threshold": json.dumps(manifest.get("threshold", {}).get("value")),
        "objects": manifest.get("object_count"),
        "run": f"tiler {manifest.get('tiler_version')}, {manifest.get('created')}",
        "report": f"tiler {__version__}, "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}",
    }
