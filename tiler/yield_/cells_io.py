"""Writing the per-cell features: ``cells.parquet`` (GeoParquet) and ``features.tif`` (COG).

``cells.parquet`` is the table of :func:`tiler.yield_.cells.features` with its
GeoParquet metadata and a key ``tiler_yield_cells`` (JSON: the grid, the index,
the feature names and units, the run's input fingerprint, tiler's version).
``features.tif`` is a float32 Cloud-Optimized GeoTIFF on the cell grid (the
cell raster's transform, the raster's CRS): one band per feature column in the
table's order, described by the column's name, its unit in the band's tags,
NaN where a cell has no value or no row. Both are written under temporary names
and renamed when whole.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from tiler.errors import InputError, OutputError
from tiler.io.atomic import replacing
from tiler.io.grid_raster import write_cells_cog
from tiler.yield_.cells import CellFeatures, CellGrid

METADATA_KEY = b"tiler_yield_cells"
PARQUET, TIF = "cells.parquet", "features.tif"


def metadata(found: CellFeatures) -> dict:
    """The ``tiler_yield_cells`` metadata of a features table."""
    # tiler/__init__.py holds __version__ and sits above this layer (tests/test_layers.py's
    # EXCEPTIONS): read it from the package already imported, not by importing it.
    version = sys.modules["tiler"].__version__
    grid = found.grid
    return {
        "cell_m": grid.cell_m, "k": grid.k, "pixel_m": grid.pixel_m,
        "transform": list(grid.transform), "transform_cells": list(grid.transform_cells),
        "crs_wkt": grid.crs_wkt, "shape": list(grid.shape), "image_shape": list(grid.image_shape),
        "index": found.index, "features": list(found.names), "units": found.units,
        "fingerprint_sha256": found.fingerprint, "run_created": found.created,
        "tiler_version": version,
    }  # fmt: skip


def read(path: str | os.PathLike) -> CellFeatures:
    """A ``cells.parquet`` :func:`write` wrote, as its :class:`CellFeatures` (one line if not)."""
    import geopandas as gpd
    import pyarrow.parquet as pq

    try:
        meta = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
        table = gpd.read_parquet(path)
        table.attrs["cell_m"] = float(meta["cell_m"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a tiler cells table ({exc})") from None
    grid = CellGrid(int(meta["k"]), float(meta["cell_m"]), float(meta["pixel_m"]),
                    tuple(meta["shape"]), tuple(meta["image_shape"]), tuple(meta["transform"]),
                    meta["crs_wkt"])  # fmt: skip
    return CellFeatures(table, grid, meta["index"], tuple(meta["features"]), meta["units"],
                        meta["fingerprint_sha256"], {}, meta.get("run_created", ""))  # fmt: skip


def raster(found: CellFeatures) -> np.ndarray:
    """``(features, R, C)`` float32: each feature on the cell grid, NaN off the table."""
    grid = found.grid
    out = np.full((len(found.names), *grid.shape), np.nan, dtype=np.float32)
    rows = found.table["cell_row"].to_numpy()
    cols = found.table["cell_col"].to_numpy()
    for band, name in enumerate(found.names):
        out[band, rows, cols] = found.table[name].to_numpy(dtype=np.float64)
    return out


def write(found: CellFeatures, out_folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``cells.parquet`` and ``features.tif`` into ``out_folder`` (made if needed).

    Returns
    -------
    (Path, Path)
        The two files' paths.
    """
    folder = Path(out_folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{folder}: cannot write the cell features ({exc.strerror or exc})"
        ) from None
    try:
        return _parquet(found, folder / PARQUET), _cog(found, folder / TIF)
    except OSError as exc:  # a read-only or full file system: one line
        raise OutputError(
            f"{folder}: cannot write the cell features ({exc.strerror or exc})"
        ) from None


def _parquet(found: CellFeatures, path: Path) -> Path:
    import pyarrow.parquet as pq

    with replacing(path) as partial:
        found.table.to_parquet(partial, index=False)
        table = pq.read_table(partial)  # small: one row per cell
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = json.dumps(metadata(found)).encode()
        pq.write_table(table.replace_schema_metadata(meta), partial)
    return path


def _cog(found: CellFeatures, path: Path) -> Path:
    grid = found.grid
    bands = dict(zip(found.names, raster(found), strict=True))
    write_cells_cog(path, bands, grid.transform_cells, grid.crs_wkt, units=found.units,
                    tags={"tiler_yield_cells": json.dumps(metadata(found))})  # fmt: skip
    return path
