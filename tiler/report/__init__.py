"""Plant counts, density, canopy cover and object sizes per field, and the HTML report.

``build(dst, fields=..., field_id=..., out=...)`` reads a finished run and
writes ``fields.csv``, ``fields.parquet`` (with the field geometry) and a
self-contained ``report.html``. It makes one pass over the image in windows
(reading the input's mask and the labels): the pixel counts of every field,
and, the first time, the multiscale pyramid in ``labels.zarr/pyramid``
(:mod:`tiler.report.pyramid`) that the report's pictures come from.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import zarr
from rasterio.enums import ColorInterp

from tiler.errors import InputError, OutputError
from tiler.georef import pixel_area_m2
from tiler.io import output
from tiler.io.raster import fingerprint, reopen
from tiler.plan import Executor, window_graph
from tiler.report import fields as field_stats
from tiler.report import pyramid

__all__ = ["Report", "build"]


@dataclass(frozen=True)
class Report:
    """What a report wrote: the per-field table and its files."""

    table: gpd.GeoDataFrame
    csv: Path
    parquet: Path
    html: Path
    seconds: float


def build(
    dst: str | os.PathLike,
    fields: str | os.PathLike | gpd.GeoDataFrame | None = None,
    field_id: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    scheduler: str = "threads",
    src: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """Report a finished run in ``dst`` per field (or for its whole footprint).

    Parameters
    ----------
    dst : path
        A finished ``tiler run`` output.
    fields : path or GeoDataFrame, optional
        Field polygons (GeoJSON, GeoPackage or anything GDAL reads, any CRS;
        reprojected to the raster's). Default: one field, the image footprint.
    field_id : str, optional
        The column naming each field (default: ``field 1``, ``field 2``, … in row order).
    out : path, optional
        Folder for ``fields.csv``, ``fields.parquet`` and ``report.html``; default ``dst/report``.
    scheduler : str
        ``threads`` (default) or ``sync`` for the pass over the image.
    src : path, optional
        The run's input at a new place; accepted when its size and
        fingerprint are those run.json records.
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    dst = Path(dst)
    manifest = _finished_manifest(dst)
    out = Path(out) if out is not None else dst / "report"
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    if manifest["input"].get("options", {}).get("georeferencing") == "none":
        raise OutputError(
            f"{dst}: a --pixel-only run has no map coordinates or areas, which the report needs"
        )
    source = _input(manifest, src)
    transform = tuple(manifest["input"]["transform"])
    bounds = _bounds(transform, source.height, source.width)
    crs_wkt = manifest["input"]["crs_wkt"]
    table_fields = field_stats.load_fields(fields, field_id, crs_wkt, bounds)
    objects = pd.read_parquet(dst / output.OBJECTS, columns=["label", "x", "y", "area_m2"])
    members = field_stats.count_objects(objects, table_fields)

    labels_zarr = dst / output.LABELS
    labels = zarr.open_array(str(labels_zarr / "labels"), mode="r")
    shape = (source.height, source.width)
    build_pyramid = not pyramid.exists(labels_zarr)
    bands = display_bands(source)
    partial = None
    if build_pyramid:
        a, b, _, d, e, _ = transform
        scale = (abs(e) if b == 0 else np.hypot(b, e), abs(a) if d == 0 else np.hypot(a, d))
        partial = pyramid.create(labels_zarr, shape, len(bands), source.dtype, labels.dtype, scale)
    windows = pyramid.windows(shape)
    tree = shapely.STRtree(list(table_fields.geometry))
    pieces = []
    for (r0, r1), (c0, c1) in windows:
        (x0, y0), (x1, y1) = _corner(transform, r0, c0), _corner(transform, r1, c1)
        near = tree.query(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        pieces.append([(int(i), table_fields.geometry.iloc[i]) for i in sorted(near)])
    graph = window_graph(
        "report",
        window_counts,
        (source, bands, str(labels_zarr / "labels"), transform, str(partial or "")),
        windows,
        pieces,
    )
    log(f"{dst}: {len(windows)} window(s) of {pyramid.WINDOW} px over {shape[0]} x {shape[1]}")
    pixels = np.zeros((len(table_fields), 3), dtype=np.int64)
    for counts in Executor(scheduler).compute(graph):
        for index, *values in counts:
            pixels[index] += values
    if partial is not None:
        pyramid.finish(partial)
    # One pixel's ground area at each field (it varies with latitude in a geographic CRS).
    centres = shapely.centroid(np.asarray(table_fields.geometry.values))
    pixel_areas = pixel_area_m2(crs_wkt, transform, np.nan_to_num(shapely.get_y(centres)))
    result = field_stats.table(table_fields, members, objects, pixels, pixel_areas)

    from tiler.report.html import render

    out.mkdir(parents=True, exist_ok=True)
    csv = _atomic(
        out / "fields.csv", lambda p: result.drop(columns="geometry").to_csv(p, index=False)
    )
    parquet = _atomic(out / "fields.parquet", lambda p: result.to_parquet(p, index=False))
    seconds = time.perf_counter() - started
    page = render(dst, manifest, result, objects, members, fields is not None)
    html = _atomic(out / "report.html", lambda p: Path(p).write_text(page, encoding="utf-8"))
    log(f"report: {len(result)} field(s) in {seconds:.1f} s")
    return Report(result, csv, parquet, html, seconds)


def window_counts(source, bands, labels_path, transform, pyramid_path, window, pieces):
    """One window of the report pass: the fields' pixel counts, and its pyramid block."""
    (r0, r1), (c0, c1) = window
    image, valid = source.read(bands, window)
    labels = zarr.open_array(labels_path, mode="r")[r0:r1, c0:c1]
    if pyramid_path:
        pyramid.write_level0(pyramid_path, window, image, valid, labels)
    counts = field_stats.pixel_counts(window, transform, pieces, valid, labels)
    return [(int(row[0]), int(row[1]), int(row[2]), int(row[3])) for row in counts]


def display_bands(source) -> tuple[int, ...]:
    """The bands to look at: red, green and blue if tagged so, else the first three
    non-alpha bands, else the first band."""
    with rasterio.open(source.path, driver=source.driver) as ds:
        interp = list(ds.colorinterp)
    rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in rgb):
        return tuple(interp.index(c) + 1 for c in rgb)
    plain = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha]
    return tuple(plain[:3]) if len(plain) >= 3 else tuple(plain[:1])


def _finished_manifest(dst: Path) -> dict:
    try:
        manifest = output.read_manifest(dst)
    except FileNotFoundError:
        raise OutputError(f"{dst}: no run.json; not a finished tiler run") from None
    except ValueError as exc:
        raise OutputError(f"{dst}: run.json is not valid JSON ({exc})") from None
    if manifest.get("complete") is not True:
        raise OutputError(f"{dst}: run.json does not say complete; the run did not finish")
    return manifest


def _input(manifest: dict, src: str | os.PathLike | None = None):
    """The run's input, checked to be the very file the run read (the mask comes from it).

    ``src``: where it is now, if it moved (``tiler report --src``).
    """
    inputs = manifest["input"]
    if src is not None:
        return reopen(inputs, moved_to=src)  # checked: same size and fingerprint
    path = Path(inputs["path"])
    if not path.is_file():
        raise InputError(
            f"{path}: the run's input is gone; the report reads its mask for canopy cover "
            "(if it moved, pass --src NEW_PATH)"
        )
    if "fingerprint_sha256" in inputs and fingerprint(path) != inputs["fingerprint_sha256"]:
        raise InputError(f"{path}: changed since the run (its fingerprint differs)")
    return reopen(inputs)  # as the run opened it (and it is unchanged)


def _corner(transform, row: float, col: float) -> tuple[float, float]:
    a, b, c, d, e, f = transform
    return a * col + b * row + c, d * col + e * row + f


def _bounds(transform, height: int, width: int) -> tuple[float, float, float, float]:
    corners = [_corner(transform, r, c) for r in (0, height) for c in (0, width)]
    xs, ys = zip(*corners, strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def _atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temporary name in the same folder, then rename."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def provenance(dst: Path, manifest: dict) -> dict:
    """What the report is of: input, pipeline, versions, dates."""
    from tiler import __version__

    inputs = manifest["input"]
    return {
        "output": str(dst.resolve()),
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
