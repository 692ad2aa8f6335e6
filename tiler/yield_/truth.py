"""Measured yield matched to a run's cells: the training rows of a calibration (issue 20).

:func:`read_truth` reads yield measured on the ground from any file geopandas reads
(GeoPackage, GeoJSON, Shapefile, ...; or a CSV with ``x``, ``y`` columns in the image's
CRS, or ``lon``, ``lat`` in WGS 84): a layer of points (yield-monitor records) or of
polygons (harvested plots), in any CRS, reprojected to the image's. It leaves out the
records :mod:`tiler.yield_.faults` flags, and matches the rest to the cells:

* points: the kept records on a cell are averaged (their mean, with their count ``n``):
  one training row per cell;
* polygons: each plot's features are the mean of the features of the cells it overlaps,
  weighted by the area of the overlap (cells with the feature missing left out): one
  training row per plot.

Every problem with the file is one :class:`~tiler.errors.InputError` line naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tiler.errors import InputError
from tiler.yield_ import faults
from tiler.yield_.blocked_cv import blocks
from tiler.yield_.cells import CellGrid

MIN_ROWS, MIN_BLOCKS = 30, 5  # enough rows to fit, and a block for each of 5 CV folds
NOT_FEATURES = {"cell_row", "cell_col", "x", "y", "imaged_m2", "imaged_fraction", "row_m"}
_XY_COLUMNS = (("x", "y", None), ("easting", "northing", None),
               ("lon", "lat", "EPSG:4326"), ("longitude", "latitude", "EPSG:4326"))  # fmt: skip


@dataclass(frozen=True, eq=False)
class Truth:
    """Measured yield, its faults and its training rows.

    ``records``: every record (raster CRS) with ``value``, ``reason`` (``""``: kept),
    ``cell_row``, ``cell_col`` (-1 off the image); ``rows``: one per cell (points) or
    plot (polygons): ``cell_row``, ``cell_col`` (a plot's: its centroid's cell), ``plot``
    (plots only: the row number in the file), ``x``, ``y``, ``measured``, ``n`` (records
    averaged; 1 per plot) and the features; ``features``: the feature columns.
    """

    path: str
    value: str
    unit: str
    kind: str  # "points" or "polygons"
    records: gpd.GeoDataFrame
    rows: pd.DataFrame
    features: tuple[str, ...]
    cell_m: float
    crs_wkt: str
    metres_per_unit: float  # ground metres per map unit of x, y (degrees: at the field)

    @property
    def flagged(self) -> dict[str, int]:
        """Records left out, by reason."""
        return faults.counts(self.records["reason"].to_numpy())


def feature_columns(cells: pd.DataFrame) -> list[str]:
    """The numeric columns of a features table a model may use (the contract's FEATURES)."""
    return [
        c for c in cells.columns
        if c not in NOT_FEATURES and c != "geometry" and pd.api.types.is_numeric_dtype(cells[c])
    ]  # fmt: skip


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_csv(path: Path) -> gpd.GeoDataFrame:
    table = pd.read_csv(path)
    lower = {c.lower(): c for c in table.columns}
    for xname, yname, crs in _XY_COLUMNS:
        if xname in lower and yname in lower:
            x = pd.to_numeric(table[lower[xname]], errors="coerce")
            y = pd.to_numeric(table[lower[yname]], errors="coerce")
            geometry = gpd.points_from_xy(x, y)
            out = gpd.GeoDataFrame(table, geometry=geometry, crs=crs)
            out.attrs["raster_crs"] = crs is None  # x, y: in the image's CRS
            return out
    have = ", ".join(map(str, table.columns))
    raise InputError(f"{path}: a CSV of truth needs x, y or lon, lat columns (it has: {have})")


def _read(path: Path) -> gpd.GeoDataFrame:
    if not path.exists():
        raise InputError(f"{path}: no such truth file")
    try:
        if path.suffix.lower() == ".csv":
            table = _read_csv(path)
        else:
            table = gpd.read_file(path)
    except InputError:
        raise
    except Exception as exc:  # any reader's failure is the file's: say it on one line
        raise InputError(f"{path}: cannot read the truth file: {_one_line(exc)}") from exc
    if not isinstance(table, gpd.GeoDataFrame) or table.geometry is None:
        raise InputError(f"{path}: the truth file has no geometry (points or polygons)")
    return table


def _reproject(table: gpd.GeoDataFrame, path: Path, crs_wkt: str) -> gpd.GeoDataFrame:
    if table.attrs.get("raster_crs"):
        return table.set_crs(crs_wkt) if crs_wkt else table
    if table.crs is None:
        if crs_wkt:
            raise InputError(f"{path}: the truth file has no CRS: give it one (a .prj, or EPSG)")
        return table
    return table.to_crs(crs_wkt) if crs_wkt else table


def _kind(table: gpd.GeoDataFrame, path: Path) -> str:
    geom = table.geometry
    types = geom[geom.notna() & ~geom.is_empty].geom_type.value_counts()
    kinds = {"Point": "points", "Polygon": "polygons", "MultiPolygon": "polygons"}
    other = [t for t in types.index if t not in kinds]
    found = ", ".join(f"{n} {t}" for t, n in types.items())
    if other:
        raise InputError(f"{path}: truth must be points or polygons, found {found}")
    if len({kinds[t] for t in types.index}) > 1:
        raise InputError(f"{path}: mixed geometry kinds ({found}): give points or polygons")
    if types.empty:
        raise InputError(f"{path}: the truth file has no records with a geometry")
    return kinds[str(types.index[0])]


TIME_COLUMNS = ("time", "time_s", "timestamp", "datetime", "date_time", "gps_time")


def _track_order(table: gpd.GeoDataFrame, path: Path, time: str | None) -> np.ndarray | None:
    """The records' indices in time order (``time``, else a column named like one of
    :data:`TIME_COLUMNS`); None without a time column: the track checks are skipped."""
    if time is None:
        time = next((c for c in table.columns if str(c).lower() in TIME_COLUMNS), None)
        if time is None:
            return None
    elif time not in table.columns:
        have = ", ".join(str(c) for c in table.columns if c != table.geometry.name)
        raise InputError(f"{path}: no time column {time!r} (it has: {have})")
    stamps = table[time]
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        stamps = pd.to_numeric(stamps, errors="coerce")
    if stamps.isna().any():
        raise InputError(f"{path}: time column {time!r} holds values that are not times")
    order: np.ndarray = np.argsort(stamps.to_numpy(), kind="stable")
    return order


def _values(table: gpd.GeoDataFrame, path: Path, value: str) -> np.ndarray:
    if value not in table.columns:
        have = ", ".join(str(c) for c in table.columns if c != table.geometry.name)
        raise InputError(f"{path}: no column {value!r} (it has: {have})")
    raw = table[value]
    if pd.api.types.is_bool_dtype(raw):
        raise InputError(f"{path}: column {value!r} is true/false, not a number")
    number = pd.to_numeric(raw, errors="coerce")
    bad = number.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
    if bad.any():
        example = raw[bad].iloc[0]
        raise InputError(
            f"{path}: column {value!r} has {int(bad.sum())} non-numeric values (e.g. {example!r})"
        )
    out: np.ndarray = number.to_numpy(np.float64)
    return out


def _metres_per_unit(grid: CellGrid) -> float:
    a, b, _, d, e, _ = (float(v) for v in tuple(grid.transform)[:6])
    return grid.cell_m / (grid.k * float(np.sqrt(abs(a * e - b * d))))


def _lookup(cells: pd.DataFrame, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    index = pd.MultiIndex.from_arrays([cells["cell_row"].to_numpy(), cells["cell_col"].to_numpy()])
    found: np.ndarray = index.get_indexer(pd.MultiIndex.from_arrays([row, col]))
    return found


def _cell_boxes(cells: pd.DataFrame, grid: CellGrid) -> np.ndarray:
    """Each cell's polygon: the table's geometry if it has one, else the grid's."""
    if isinstance(cells, gpd.GeoDataFrame) and cells.geometry is not None:
        return cells.geometry.to_numpy()
    boxes: np.ndarray = grid.boxes(cells["cell_row"].to_numpy(), cells["cell_col"].to_numpy())
    return boxes


def match_points(
    records: gpd.GeoDataFrame, cells: pd.DataFrame, features: list[str]
) -> pd.DataFrame:
    """One row per cell with kept records: their mean ``measured``, count ``n``, the
    cell's ``x``, ``y`` and features."""
    kept = records[records["reason"] == ""]
    grouped = kept.groupby(["cell_row", "cell_col"], sort=True)["value"].agg(["mean", "size"])
    grouped = grouped.rename(columns={"mean": "measured", "size": "n"}).reset_index()
    at = _lookup(cells, grouped["cell_row"].to_numpy(), grouped["cell_col"].to_numpy())
    table = cells.iloc[at][["x", "y", *features]].reset_index(drop=True)
    return pd.concat([grouped, table], axis=1)[
        ["cell_row", "cell_col", "x", "y", "measured", "n", *features]
    ]


def plot_weights(plots: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(plot, cell, area)``: every overlap of a plot with a cell, and its area (map units²)."""
    tree = shapely.STRtree(boxes)
    plot_i, cell_i = tree.query(plots, predicate="intersects")
    area = shapely.area(shapely.intersection(plots[plot_i], boxes[cell_i]))
    keep = area > 0
    return plot_i[keep], cell_i[keep], area[keep]


def area_weighted(
    plot_i: np.ndarray, cell_i: np.ndarray, area: np.ndarray, values: np.ndarray, n_plots: int
) -> np.ndarray:
    """Per plot, the area-weighted mean of ``values`` (cells x features) over its cells,
    each feature over the cells where it is not NaN (NaN where it is nowhere)."""
    v = values[cell_i]
    ok = np.isfinite(v)
    w = area[:, None] * ok
    num = np.zeros((n_plots, values.shape[1]))
    den = np.zeros((n_plots, values.shape[1]))
    np.add.at(num, plot_i, np.where(ok, v, 0.0) * w)
    np.add.at(den, plot_i, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return out


def read_truth(
    path: str | os.PathLike,
    value: str,
    cells: pd.DataFrame,
    grid: CellGrid,
    *,
    unit: str = "t/ha",
    block_m: float = 50.0,
    time: str | None = None,
) -> Truth:
    """Read measured yield and match it to the cells of a features table.

    Parameters
    ----------
    path : str or Path
        The truth file (module docstring).
    value : str
        Its column of measured yield, in ``unit``.
    cells : DataFrame or GeoDataFrame
        The features table (``cells.parquet``): ``cell_row``, ``cell_col``, ``x``,
        ``y``, the features and (for plots) the cells' ``geometry``.
    grid : CellGrid
        The cell grid of the features table.
    block_m : float
        Side (m) of the blocks of cross-validation, for the minimum of blocks.
    time : str, optional
        The points' column of recording time (numbers or dates), which orders them into
        the combine's track for the ``pass end`` and ``position jump`` checks
        (:mod:`tiler.yield_.faults`); default a column named like :data:`TIME_COLUMNS`;
        without one those checks are skipped.

    Raises
    ------
    InputError
        One line naming ``path``: unreadable, no such column, non-numeric values, mixed
        or other geometry kinds, no CRS, every record off the image, or fewer than
        :data:`MIN_ROWS` usable cells (plots) in :data:`MIN_BLOCKS` blocks.
    """
    path = Path(path)
    table = _reproject(_read(path), path, grid.crs_wkt)
    vals = _values(table, path, value)
    kind = _kind(table, path)
    geom = table.geometry
    present = geom.notna().to_numpy() & ~geom.is_empty.to_numpy()
    features = feature_columns(cells)
    crop = faults.has_crop(cells)
    if kind == "points":
        x, y = shapely.get_x(geom.to_numpy()), shapely.get_y(geom.to_numpy())
        row, col = grid.cell_of(x, y)
        at = _lookup(cells, row, col)
        at[~present] = -1
        on = at >= 0
        anchor_x, anchor_y = x, y
        xy_m = np.column_stack([x, y]) * _metres_per_unit(grid)
        made = _track_order(table, path, time)  # the records in the order they were made
        order = np.arange(len(table)) if made is None else made
        reason = np.empty(len(table), dtype=object)
        reason[order] = faults.flag(
            np.where(present, vals, np.nan)[order], on[order],
            np.where(on, crop[at], False)[order], xy_m[order], track=made is not None,
        )  # fmt: skip
        reason = reason.astype(str)
    else:
        shapes = geom.to_numpy()
        shapes[~present] = shapely.Polygon()
        plot_i, cell_i, area = plot_weights(shapes, _cell_boxes(cells, grid))
        on_area = np.bincount(plot_i, area, len(table))
        on = on_area >= 0.5 * np.maximum(shapely.area(shapes), 1e-300)
        crop_area = np.bincount(plot_i, np.asarray(crop, float)[cell_i] * area, len(table))
        centroid = shapely.centroid(shapes)
        anchor_x, anchor_y = shapely.get_x(centroid), shapely.get_y(centroid)
        row, col = grid.cell_of(anchor_x, anchor_y)
        weighted = area_weighted(
            plot_i, cell_i, area, cells[features].to_numpy(np.float64), len(table)
        )
        reason = faults.flag(
            np.where(present, vals, np.nan), on & present, crop_area > 0.5 * on_area
        )
    records = gpd.GeoDataFrame(
        {"value": vals, "reason": reason, "cell_row": np.where(on, row, -1),
         "cell_col": np.where(on, col, -1)},
        geometry=geom.to_numpy(), crs=table.crs,
    )  # fmt: skip
    if not on.any():
        _refuse_outside(path, table, cells, grid, len(table))
    if kind == "points":
        rows = match_points(records, cells, features)
    else:
        keep = reason == ""
        rows = pd.DataFrame({"cell_row": row[keep], "cell_col": col[keep],
                             "plot": np.flatnonzero(keep), "x": anchor_x[keep],
                             "y": anchor_y[keep], "measured": vals[keep], "n": 1})  # fmt: skip
        rows = pd.concat([rows, pd.DataFrame(weighted[keep], columns=features)], axis=1)
    truth = Truth(str(path), value, unit, kind, records, rows, tuple(features), grid.cell_m,
                  grid.crs_wkt, _metres_per_unit(grid))  # fmt: skip
    require_enough(truth, block_m)
    return truth


def _refuse_outside(
    path: Path, table: gpd.GeoDataFrame, cells: pd.DataFrame, grid: CellGrid, n: int
) -> None:
    half = grid.cell_m / 2 / _metres_per_unit(grid)
    x, y = cells["x"].to_numpy(), cells["y"].to_numpy()
    bounds = (
        f"{x.min() - half:.6g}..{x.max() + half:.6g} x {y.min() - half:.6g}..{y.max() + half:.6g}"
    )
    t = table.total_bounds
    raise InputError(
        f"{path}: all {n} truth records fall outside the image (image x {bounds}; truth x "
        f"{t[0]:.6g}..{t[2]:.6g} y {t[1]:.6g}..{t[3]:.6g}, in the image's CRS)"
    )


def require_enough(truth: Truth, block_m: float) -> None:
    """Refuse (InputError naming the file) fewer than :data:`MIN_ROWS` usable cells or
    plots, or fewer than :data:`MIN_BLOCKS` blocks of ``block_m`` m holding them."""
    rows = truth.rows
    n_blocks = np.unique(blocks(rows["cell_row"], rows["cell_col"], truth.cell_m, block_m)).size
    if len(rows) >= MIN_ROWS and n_blocks >= MIN_BLOCKS:
        return
    what = "cells" if truth.kind == "points" else "plots"
    left = ", ".join(f"{n} {r}" for r, n in truth.flagged.items() if n)
    raise InputError(
        f"{truth.path}: too few usable truth {what}: {len(rows)} in {n_blocks} blocks of "
        f"{block_m:g} m (records left out: {left or 'none'}); at least {MIN_ROWS} {what} in "
        f"{MIN_BLOCKS} blocks are needed (one block per cross-validation fold)"
    )
