"""Per-cell crop features of a finished run: ``tiler yield features`` (issue 20).

The image is cut into square cells of ``k x k`` pixels from its top-left pixel
(:func:`cell_grid`: ``k`` pixels of about ``cell_m`` metres on the ground), and
each cell with any valid pixel gets one row of features (:func:`features`):
how much of it is imaged, its plants (objects whose centroid lies in it) and
their density and mean size, its canopy cover, the vegetation index over its
vegetation pixels (mean and 10th, 50th, 90th percentiles), and, when the run
has a stand along the rows, the rows' length, plants per metre of row, gap
fraction and the rows' uniformity in it. One pass over the image in windows
of whole cells (:mod:`tiler.yield_.cells_pass`); the object table is read a
batch at a time; the stand is clipped to the cells (:mod:`tiler.yield_.cells_rows`).
:func:`tiler.yield_.cells_io.write` writes ``cells.parquet`` and ``features.tif``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tiler.errors import ConfigError, OutputError
from tiler.georef import map_xy, pixel_area_m2
from tiler.io import stores
from tiler.io.finished import check_complete, storage_errors
from tiler.io.grid_raster import cells_transform
from tiler.io.input_identity import reopen
from tiler.report import vigour as vigour_of
from tiler.yield_ import cells_pass, cells_rows

__all__ = ["FEATURES", "CellFeatures", "CellGrid", "cell_grid", "features", "feature_names"]

# The columns a model may use, in the table's order ({idx}: the run's index name).
FEATURES = (
    "plants", "density_per_ha", "canopy_cover_pct", "object_area_m2",
    "{idx}_mean", "{idx}_p10", "{idx}_p50", "{idx}_p90",
    "plants_per_row_m", "gap_fraction", "spacing_cv", "miss_pct", "multiples_pct",
)  # fmt: skip
UNITS = {
    "cell_row": "cell", "cell_col": "cell", "x": "crs", "y": "crs", "imaged_m2": "m2",
    "imaged_fraction": "1", "plants": "count", "density_per_ha": "1/ha",
    "canopy_cover_pct": "%", "object_area_m2": "m2", "row_m": "m", "plants_per_row_m": "1/m",
    "gap_fraction": "1", "spacing_cv": "1", "miss_pct": "%", "multiples_pct": "%",
}  # fmt: skip
STAND_COLUMNS = ("row_m", "plants_per_row_m", "gap_fraction", "spacing_cv", "miss_pct",
                 "multiples_pct")  # fmt: skip
_WHY_INPUT = "the cell features read its bands and mask (if it moved, pass src=NEW_PATH)"


@dataclass(frozen=True)
class CellGrid:
    """Square cells of ``k x k`` pixels from the image's top-left pixel.

    Attributes
    ----------
    k : int
        The cell side in pixels.
    cell_m, pixel_m : float
        The cell's and one pixel's side in metres on the ground (at the image's centre).
    shape : tuple of int
        ``(R, C)`` cells; the last row and column may be partial.
    image_shape : tuple of int
        The image's ``(height, width)`` in pixels.
    transform : tuple of float
        The raster's affine ``(a, b, c, d, e, f)`` (pixel corners to map coordinates).
    crs_wkt : str
        The raster's CRS.
    """

    k: int
    cell_m: float
    pixel_m: float
    shape: tuple[int, int]
    image_shape: tuple[int, int]
    transform: tuple[float, ...]
    crs_wkt: str

    @property
    def transform_cells(self) -> tuple[float, ...]:
        """The cell raster's affine: the image's with ``a, b, d, e`` scaled by ``k``."""
        return cells_transform(self.transform, self.k)

    def cell_of(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The ``(row, col)`` of the cells holding map points ``(x, y)`` (raster CRS);
        ``-1`` for both where a point is outside the grid."""
        a, b, c, d, e, f = self.transform_cells
        x, y = np.asarray(x, np.float64) - c, np.asarray(y, np.float64) - f
        det = a * e - b * d
        col = np.floor((e * x - b * y) / det)
        row = np.floor((a * y - d * x) / det)
        outside = ~((row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1]))
        row, col = np.where(outside, -1, row), np.where(outside, -1, col)
        return row.astype(np.int64), col.astype(np.int64)

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map ``(x, y)`` of the centres of cells ``(rows, cols)`` (the whole cell's)."""
        a, b, c, d, e, f = self.transform_cells
        return a * (cols + 0.5) + b * (rows + 0.5) + c, d * (cols + 0.5) + e * (rows + 0.5) + f

    def boxes(self, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
        """Polygons of cells ``(rows, cols)`` (default: all, row by row), raster CRS; a
        partial edge cell's polygon is the whole cell's."""
        if rows is None or cols is None:
            rows, cols = (g.ravel() for g in np.indices(self.shape))
        a, b, c, d, e, f = self.transform_cells
        corners = [(0, 0), (0, 1), (1, 1), (1, 0), (0, 0)]
        rr = np.asarray(rows, np.float64)[:, None] + np.array([p[0] for p in corners])
        cc = np.asarray(cols, np.float64)[:, None] + np.array([p[1] for p in corners])
        ring = np.stack([a * cc + b * rr + c, d * cc + e * rr + f], axis=-1)
        return shapely.polygons(ring)


def cell_grid(manifest_input: dict, cell_m: float) -> CellGrid:
    """The grid of cells of about ``cell_m`` metres over a run's image (run.json's ``input``).

    ``k = max(1, round(cell_m / pixel_m))`` with ``pixel_m`` the square root of a
    pixel's ground area at the image's centre (:func:`tiler.georef.pixel_area_m2`:
    feet and degrees in metres).
    """
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ConfigError(f"cell size {cell_m!r}: expected a positive number of metres")
    transform = tuple(float(v) for v in manifest_input["transform"][:6])
    height, width = int(manifest_input["height"]), int(manifest_input["width"])
    crs_wkt = manifest_input.get("crs_wkt") or ""
    _, centre_y = map_xy(transform, np.float64(height / 2 - 0.5), np.float64(width / 2 - 0.5))
    pixel_m = float(np.sqrt(pixel_area_m2(crs_wkt, transform, centre_y)))
    k = max(1, round(cell_m / pixel_m))
    shape = (math.ceil(height / k), math.ceil(width / k))
    return CellGrid(k, k * pixel_m, pixel_m, shape, (height, width), transform, crs_wkt)


@dataclass(frozen=True)
class CellFeatures:
    """The features of every cell with any valid pixel.

    Attributes
    ----------
    table : geopandas.GeoDataFrame
        One row per cell, sorted by ``(cell_row, cell_col)``; the columns of the
        contract (issue 20), the cell polygon as geometry (raster CRS).
    grid : CellGrid
    index : str or None
        The vegetation index's name (``exg``, ``ndvi``, ...), None without one.
    names : tuple of str
        The feature columns a model may use (:data:`FEATURES` present here).
    units : dict
        Column -> unit (``crs``: the raster CRS's unit).
    fingerprint : str
        The run's input fingerprint (run.json).
    created : str
        When the run was made (run.json's ``created``): with the fingerprint, which run
        a written table is of.
    seconds : dict
        Wall seconds of the parts: ``pass`` (over the image), ``objects``, ``stand``
        (with a stand) and ``total``.
    """

    table: gpd.GeoDataFrame
    grid: CellGrid
    index: str | None
    names: tuple[str, ...]
    units: dict[str, str]
    fingerprint: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    created: str = ""


def feature_names(index: str | None, stand: bool) -> tuple[str, ...]:
    """:data:`FEATURES` of a table with index ``index`` (None: none) and a stand or not."""
    names = []
    for name in FEATURES:
        if "{idx}" in name and index is None or name in STAND_COLUMNS and not stand:
            continue
        names.append(name.format(idx=index))
    return tuple(names)


def features(
    run: str | os.PathLike,
    cell_m: float = 5.0,
    *,
    index: str | None = None,
    stand: str | os.PathLike | bool | None = None,
    scheduler: Any = "threads",
    src: str | os.PathLike | None = None,
    window: int = cells_pass.WINDOW,
    log: Callable[[str], None] | None = None,
) -> CellFeatures:
    """The per-cell features of the finished run in ``run`` (only read).

    Parameters
    ----------
    run : path or URL
        A finished ``tiler run`` output (not ``--pixel-only``).
    cell_m : float
        The cell side in metres (rounded to whole pixels: :func:`cell_grid`).
    index : str, optional
        The vegetation index (:func:`tiler.report.vigour.choose`): default the run's
        NDVI if its pipeline is NDVI, else ExG; ``none`` for no index columns.
    stand : path or bool, optional
        The folder of ``tiler rows``' ``rows.parquet`` and ``gaps.parquet``; default
        ``RUN/stand`` or ``RUN/report/stand`` if there; True: one of those, required;
        False: no stand columns.
    scheduler : str
        ``threads`` (default) or ``sync`` for the pass over the image.
    src : path, optional
        The run's input at a new place (same size and fingerprint as run.json's).
    window : int
        About this many pixels on a side of the pass's windows (rounded to whole
        cells): memory is a few windows of float64 per thread.
    """
    log = log or (lambda message: None)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    manifest = check_complete(run)
    run = stores.folder(run)
    inputs = manifest["input"]
    if inputs.get("options", {}).get("georeferencing") == "none" or not inputs.get("crs_wkt"):
        raise OutputError(
            f"{run}: a --pixel-only run has no map coordinates or areas, which the cells need"
        )
    grid = cell_grid(inputs, cell_m)
    folder = cells_rows.stand_folder(run, stand)
    with storage_errors(run):
        source = reopen(inputs, moved_to=src, why=_WHY_INPUT)
        chosen = vigour_of.choose(index, manifest.get("config", {}), inputs["count"], str(run))
        found = cells_pass.image_pass(
            source, chosen, run, grid.k, grid.shape, scheduler, log, window
        )
        seconds["pass"] = time.perf_counter() - started
        plants, area = cells_pass.object_counts(run, grid.k, grid.shape)
        seconds["objects"] = time.perf_counter() - started - seconds["pass"]
    table = _table(grid, found, plants, area, chosen)
    if folder is not None:
        mark = time.perf_counter()
        table = _with_stand(table, grid, folder)
        seconds["stand"] = time.perf_counter() - mark
    name = chosen.name if chosen is not None else None
    names = feature_names(name, folder is not None)
    units = {c: UNITS.get(c, "index") for c in table.columns if c != "geometry"}
    seconds["total"] = time.perf_counter() - started
    log(f"features: {len(table)} cell(s) of {grid.cell_m:.2f} m ({grid.k} px) in "
        f"{seconds['total']:.1f} s")  # fmt: skip
    fingerprint = str(inputs.get("fingerprint_sha256", ""))
    created = str(manifest.get("created", ""))
    return CellFeatures(table, grid, name, names, units, fingerprint, seconds, created)


def _table(grid: CellGrid, found: dict, plants: np.ndarray, area: np.ndarray, chosen):
    """The table of the cells with any valid pixel, in ``(cell_row, cell_col)`` order."""
    valid = found["valid"]
    rows, cols = np.nonzero(valid > 0)  # row-major: sorted by (row, col)
    x, y = grid.centres(rows, cols)
    n_valid = valid[rows, cols]
    imaged = n_valid * pixel_area_m2(grid.crs_wkt, grid.transform, y)
    count = plants[rows, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        data = {
            "cell_row": rows.astype(np.int32), "cell_col": cols.astype(np.int32), "x": x, "y": y,
            "imaged_m2": imaged, "imaged_fraction": n_valid / grid.k**2,
            "plants": count.astype(np.int64), "density_per_ha": count / (imaged / 1e4),
            "canopy_cover_pct": found["labelled"][rows, cols] / n_valid * 100,
            "object_area_m2": np.where(count > 0, area[rows, cols] / count, np.nan),
        }  # fmt: skip
    if chosen is not None:
        data[f"{chosen.name}_mean"] = found["mean"][rows, cols]
        for p, q in zip(cells_pass.PERCENTILES, found["percentiles"], strict=True):
            data[f"{chosen.name}_p{p:.0f}"] = q[rows, cols]
    table = gpd.GeoDataFrame(
        pd.DataFrame(data), geometry=grid.boxes(rows, cols), crs=grid.crs_wkt or None
    )
    table.attrs["cell_m"] = grid.cell_m  # what the cells are of, for the models that read them
    return table


def _with_stand(table: gpd.GeoDataFrame, grid: CellGrid, folder) -> gpd.GeoDataFrame:
    """The table with the stand columns (:mod:`tiler.yield_.cells_rows`) before the geometry."""
    found = cells_rows.stand_columns(folder, np.asarray(table.geometry.values))
    row_m = found["row_m"]
    with np.errstate(invalid="ignore", divide="ignore"):
        added = {
            "row_m": row_m,
            "plants_per_row_m": np.where(row_m > 0, table["plants"] / row_m, np.nan),
            "gap_fraction": np.where(row_m > 0, found["gap_m"] / row_m, np.nan),
            **{name: found[name] for name in cells_rows.WEIGHTED},
        }
    out = table.copy()
    for name in STAND_COLUMNS:
        out.insert(len(out.columns) - 1, name, added[name])
    return out
