"""Features tables and truth files for the yield tests, without a tiler run.

The features of each cell come from the known stand of :func:`tiler.synthetic_yield.yield_truth`
(density, plant size, gaps, footprint cover) with a little measurement noise, on the cell
grid a run would use (cells of 5 m = 100 pixels of 5 cm from the image's top-left corner);
the truth files are real GeoPackages written with geopandas.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from tiler.synthetic import SyntheticField
from tiler.synthetic_yield import YieldTruth, yield_monitor_points, yield_truth
from tiler.yield_.cells import CellGrid

PIXEL, CELL = 0.05, 5.0
FIELD = SyntheticField.at(PIXEL, (200, 200), seed=3, row_angle=-61.0, skip_rate=0.05)


def grid_of(field: SyntheticField = FIELD) -> CellGrid:
    """The grid of 5 m cells a run of ``field`` would use."""
    k = round(CELL / field.pixel_size)
    shape = (-(-field.height // k), -(-field.width // k))
    return CellGrid(k, k * field.pixel_size, field.pixel_size, shape, field.shape,
                    tuple(field.transform)[:6], CRS(field.crs).to_wkt())  # fmt: skip


def features(truth: YieldTruth, seed: int = 0, noise: float = 0.03) -> gpd.GeoDataFrame:
    """A features table of every cell of ``truth``'s grid, from its stand plus noise."""
    rng = np.random.default_rng(seed)
    shape = truth.signal.shape
    jitter = lambda: 1.0 + noise * rng.standard_normal(shape)  # noqa: E731
    r_ref = 0.5 * sum(truth.field.plant_radius) * truth.field.unit_m
    plants = np.rint(truth.density * truth.cover * truth.cell**2 / 1e4)
    crop = plants > 0
    row, col = np.indices(shape)
    x0, y0 = truth.field.origin_xy
    x, y = x0 + (col + 0.5) * truth.cell, y0 - (row + 0.5) * truth.cell
    columns = {
        "cell_row": row.astype(np.int32), "cell_col": col.astype(np.int32), "x": x, "y": y,
        "imaged_m2": np.full(shape, truth.cell**2), "imaged_fraction": np.ones(shape),
        "plants": plants.astype(np.int64),
        "density_per_ha": truth.density * jitter(),
        "canopy_cover_pct": 100 * truth.cover * 0.3 * truth.size**2 * jitter(),
        "object_area_m2": np.where(crop, math.pi * (truth.size * r_ref) ** 2 * jitter(), np.nan),
        "exg_mean": np.where(crop, 0.2 + 0.05 * truth.size * jitter(), np.nan),
        "gap_fraction": np.clip(truth.gap + noise * rng.standard_normal(shape), 0, 1),
    }  # fmt: skip
    flat = {k: v.ravel() for k, v in columns.items()}
    boxes = shapely.box(flat["x"] - CELL / 2, flat["y"] - CELL / 2, flat["x"] + CELL / 2,
                        flat["y"] + CELL / 2)  # fmt: skip
    return gpd.GeoDataFrame(flat, geometry=boxes, crs=truth.field.crs)


def truth_of(field: SyntheticField = FIELD, **kwargs) -> YieldTruth:
    return yield_truth(field, CELL, **kwargs)


def monitor_file(truth: YieldTruth, path: Path, n: int = 2000, seed: int = 2, **kw) -> dict:
    """Yield-monitor points of ``truth`` written to the GeoPackage ``path``; returns them."""
    pts = yield_monitor_points(truth, n=n, seed=seed, **kw)
    table = gpd.GeoDataFrame(
        {"yield_t_ha": pts["yield_t_ha"], "fault": pts["fault"]},
        geometry=gpd.points_from_xy(pts["x"], pts["y"]), crs=truth.field.crs,
    )  # fmt: skip
    table.to_file(path, driver="GPKG")
    return pts


@functools.cache
def known() -> tuple[YieldTruth, gpd.GeoDataFrame]:
    """The truth of the test field (seed 1) and its features, made once per session."""
    truth = truth_of(seed=1)
    return truth, features(truth)
