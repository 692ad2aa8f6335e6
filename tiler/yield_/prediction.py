"""A calibrated model mapped over every cell: the yield map and per-field yield with intervals.

:func:`predict_cells` adds the predicted ``yield`` (the model's unit, t/ha by
default) to the features table (:mod:`tiler.yield_.cells`); a cell lacking one of
the model's features gets NaN, and cells whose features lie outside the ranges
the model was trained on (``model.json``'s ``ranges``, when given) are flagged.
:func:`write_yield_map` writes the cells as a float32 COG on the cell grid;
:func:`field_yield` sums them per field:

* a cell's weight in a field is its imaged area (``imaged_m2``) times the share
  of the cell's polygon inside the field (the valid pixels taken as spread evenly
  over the cell), so ``area_ha`` is the imaged ground of the field that has a
  prediction, in m² whatever the CRS;
* the mean is the weighted mean of the cells' predictions; the total is the mean
  times that area (t for t/ha);
* the 95 % prediction intervals come from the blocked-CV residuals' covariance
  (:mod:`tiler.yield_.intervals`): the mean's, and the total's (the mean's times
  the area, taken as known).

Distances between cells are ``cell_m`` times their (row, col) offsets: the grid is
square on the ground by construction.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from tiler.errors import InputError, TilerWarning
from tiler.io import atomic
from tiler.io.grid_raster import write_cells_cog
from tiler.yield_ import intervals
from tiler.yield_.faults import has_crop

YIELD = "yield"  # the prediction's column in the cells table
# Features of cells more than 10 % larger or smaller than the model's differ in scale
# (cover and index percentiles smooth with size): refused.
CELL_TOLERANCE = 0.1
DIGITS = {"area_ha": 4, "mean": 3, "total": 2}  # fields.csv's decimals


def unit_column(unit: str) -> str:
    """``t/ha`` -> ``t_ha``: a unit as part of a column name."""
    return "".join(c if c.isalnum() else "_" for c in unit).strip("_") or "value"


def predict_cells(
    features: gpd.GeoDataFrame,
    estimator: Any,
    meta: dict,
    warn: Callable[[str], None] | None = None,
) -> gpd.GeoDataFrame:
    """The features table with the predicted ``yield`` (``meta["unit"]``) per cell.

    Cells without crop (:func:`tiler.yield_.faults.has_crop`: no plant, or canopy cover
    under 1 %) yield 0: nothing grows there to harvest, and the model, calibrated on
    cells with crop, would extrapolate. Cells with crop lacking a feature (NaN: e.g. an
    index percentile of a cell whose vegetation is all nodata) are predicted by the
    model's own handling of missing values (tiler's models impute); their count is
    ``attrs["missing"]``.
    With ``meta["ranges"]`` (``{feature: [min, max]}`` of the training cells), the
    column ``outside_range`` flags cells with a feature outside its range (the model
    extrapolates there), counted in ``attrs["outside_range"]`` with a warning.
    """
    names = list(meta["features"])
    cell_m = features.attrs.get("cell_m")  # set by tiler.yield_.cells on its tables
    if (
        cell_m
        and meta.get("cell_m")
        and not math.isclose(cell_m, meta["cell_m"], rel_tol=CELL_TOLERANCE)
    ):
        raise InputError(
            f"the model was calibrated on {meta['cell_m']:g} m cells, the features are of "
            f"{cell_m:g} m cells: compute the features with --cell {meta['cell_m']:g} m"
        )
    absent = [n for n in names if n not in features.columns]
    if absent:
        raise InputError(
            f"the features table lacks the model's features {', '.join(absent)} "
            "(features from a run without a stand, for a model calibrated with one?)"
        )
    values = features[names].to_numpy(dtype=np.float64)
    crop = has_crop(features)
    complete = crop & np.isfinite(values).all(axis=1)
    out = features.copy()
    prediction = np.zeros(len(out))
    if crop.any():
        frame = pd.DataFrame(values[crop], columns=names)
        prediction[crop] = np.asarray(estimator.predict(frame), dtype=np.float64)
    out[YIELD] = prediction
    out["crop"] = crop
    out.attrs = dict(features.attrs) | {
        "missing": int((crop & ~complete).sum()), "no_crop": int((~crop).sum()),
        "unit": meta["unit"],
    }  # fmt: skip
    ranges = meta.get("ranges") or {}
    if ranges:
        outside = np.zeros(len(out), dtype=bool)
        for name, (low, high) in ranges.items():
            if name in names:
                v = values[:, names.index(name)]
                outside |= complete & ((v < low) | (v > high))
        out["outside_range"] = outside
        out.attrs["outside_range"] = int(outside.sum())
        if outside.any():
            message = (
                f"{int(outside.sum())} of {len(out)} cells have features outside the range "
                "the model was calibrated on: their yield is extrapolated"
            )
            if warn is not None:
                warn(message)
            else:
                warnings.warn(message, TilerWarning, stacklevel=2)
    return out


def yield_grid(cells: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """The cells' ``yield`` as a float32 ``(R, C)`` grid, NaN where no cell."""
    grid = np.full(shape, np.nan, dtype=np.float32)
    grid[cells["cell_row"].to_numpy(), cells["cell_col"].to_numpy()] = cells[YIELD]
    return grid


def write_yield_map(
    path: str | os.PathLike,
    cells: pd.DataFrame,
    shape: tuple[int, int],
    transform_cells: Sequence[float],
    crs_wkt: str,
    meta: dict,
) -> Path:
    """The cells' yield as a float32 COG (nodata NaN) on the cell grid, written atomically.

    Band description ``yield_<unit>`` (``yield_t_ha``); tags ``unit``, ``model`` (its
    chosen estimator and value column), ``kind=predicted``.
    """
    model = f"{meta.get('chosen', '?')} on {meta.get('value', '?')}"
    band = f"yield_{unit_column(meta['unit'])}"
    tags = {"unit": meta["unit"], "model": model, "kind": "predicted"}
    write_cells_cog(path, {band: yield_grid(cells, shape)}, transform_cells, crs_wkt,
                    units={band: meta["unit"]}, tags=tags)  # fmt: skip
    return Path(path)


def _area_unit(unit: str) -> tuple[str, float] | None:
    """``t/ha`` -> ``("t", m² per ha)``; None for a unit not per area."""
    amount, _, per = unit.partition("/")
    per_m2 = {"ha": 1e4, "ac": 4046.8564224, "acre": 4046.8564224, "m2": 1.0, "m²": 1.0}
    return (amount.strip(), per_m2[per.strip()]) if per.strip() in per_m2 and amount else None


def field_weights(
    tree: shapely.STRtree, imaged_m2: np.ndarray, geometry
) -> tuple[np.ndarray, np.ndarray]:
    """The cells (of ``tree``, their polygons) inside a field and their weights (m²):
    ``imaged_m2`` times the share of the cell's polygon inside the field; cells that
    only touch it are left out."""
    if geometry is None or geometry.is_empty:
        return np.empty(0, np.intp), np.empty(0)
    hit = np.sort(tree.query(geometry, predicate="intersects")).astype(np.intp)
    boxes = tree.geometries[hit]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nan_to_num(shapely.area(shapely.intersection(boxes, geometry))
                              / shapely.area(boxes))  # fmt: skip
    used = share > 0
    return hit[used], share[used] * imaged_m2[hit[used]]


def field_yield(
    cells: gpd.GeoDataFrame, fields: gpd.GeoDataFrame, id_name: str, meta: dict,
    cell_m: float | None = None, limit: int = intervals.MAX_CELLS,
) -> pd.DataFrame:  # fmt: skip
    """Per field: imaged area, mean and total yield with 95 % prediction intervals.

    Parameters
    ----------
    cells : GeoDataFrame
        :func:`predict_cells`' table (``cell_row``, ``cell_col``, ``imaged_m2``, ``yield``).
    fields : GeoDataFrame
        The fields in the cells' CRS (:func:`tiler.report.fields.load_fields`).
    id_name : str
        The fields' id column.
    meta : dict
        ``model.json``: ``unit``, ``residuals``, ``cv.bias``, ``cell_m``.
    cell_m : float, optional
        The cells' side (m), for distances; default ``cells.attrs["cell_m"]``, else
        ``meta["cell_m"]``.

    Returns
    -------
    pandas.DataFrame
        ``id_name``, ``area_ha``, ``yield_mean_<u>``, ``yield_mean_<u>_low``/``_high``,
        ``yield_total_<a>`` and its ``_low``/``_high`` (``<a>`` the unit's amount: t),
        ``cells`` (cells with a prediction and weight in the field). Unrounded.
    """
    cell_m = float(cell_m or cells.attrs.get("cell_m") or meta["cell_m"])
    residuals = intervals.Residuals.from_meta(meta)
    unit = meta["unit"]
    mean_name = f"yield_mean_{unit_column(unit)}"
    per_area = _area_unit(unit)
    total_name = f"yield_total_{unit_column(per_area[0]) if per_area else 'value'}"
    predicted = cells[np.isfinite(cells[YIELD].to_numpy())]
    rc = predicted[["cell_row", "cell_col"]].to_numpy(dtype=np.float64)
    xy_m = np.column_stack([rc[:, 1], -rc[:, 0]]) * cell_m
    values = predicted[YIELD].to_numpy()
    tree = shapely.STRtree(predicted.geometry.values)
    imaged = predicted["imaged_m2"].to_numpy(dtype=np.float64)
    records = []
    for name, geometry in zip(fields[id_name], fields.geometry, strict=True):
        hit, w = field_weights(tree, imaged, geometry)
        area_m2 = float(w.sum())
        mean = float(w @ values[hit] / area_m2) if area_m2 > 0 else math.nan
        variance = intervals.mean_variance(xy_m[hit], w, residuals, limit) if hit.size else math.nan
        half = intervals.half_width(variance, residuals)
        per_m2 = per_area[1] if per_area else math.nan
        total, total_half = mean * area_m2 / per_m2, half * area_m2 / per_m2
        records.append({
            id_name: name, "area_ha": area_m2 / 1e4,
            mean_name: mean, f"{mean_name}_low": mean - half, f"{mean_name}_high": mean + half,
            total_name: total, f"{total_name}_low": total - total_half,
            f"{total_name}_high": total + total_half, "cells": int(hit.size),
        })  # fmt: skip
    out = pd.DataFrame.from_records(records)
    out.attrs = {"unit": unit, "mean": mean_name, "total": total_name, "subsampled_above": limit}
    return out


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """``fields.csv``'s figures: area to 4 decimals (1 m²), means to 3, totals to 2."""
    out = table.copy()
    for column in out.columns:
        if column == "area_ha":
            out[column] = out[column].round(DIGITS["area_ha"])
        elif column.startswith("yield_mean_"):
            out[column] = out[column].round(DIGITS["mean"])
        elif column.startswith("yield_total_"):
            out[column] = out[column].round(DIGITS["total"])
    return out


def write_fields(
    folder: str | os.PathLike, table: pd.DataFrame, fields: gpd.GeoDataFrame
) -> tuple[Path, Path]:
    """``fields.csv`` (rounded, no geometry) and ``fields.parquet`` (GeoParquet, unrounded,
    the fields' geometry) in ``folder``, each written atomically."""
    folder = Path(folder)
    csv_path, parquet_path = folder / "fields.csv", folder / "fields.parquet"
    atomic.write_text(csv_path, rounded(table).to_csv(index=False))
    frame = gpd.GeoDataFrame(table.reset_index(drop=True), geometry=fields.geometry.values,
                             crs=fields.crs)  # fmt: skip
    with atomic.replacing(parquet_path) as partial:
        frame.to_parquet(partial)
    return csv_path, parquet_path
