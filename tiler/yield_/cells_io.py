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

from tiler.errors import OutputError
from tiler.io.export_files import replacing
from tiler.yield_.cells import CellFeatures

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
        "fingerprint_sha256": found.fingerprint, "tiler_version": version,
    }  # fmt: skip


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
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile

    grid = found.grid
    bands = raster(found)
    profile = dict(
        driver="GTiff", height=grid.shape[0], width=grid.shape[1], count=max(1, len(bands)),
        dtype="float32", nodata=float("nan"), transform=rasterio.Affine(*grid.transform_cells),
        crs=rasterio.crs.CRS.from_wkt(grid.crs_wkt) if grid.crs_wkt else None,
    )  # fmt: skip
    with MemoryFile() as memory, replacing(path) as partial:
        with memory.open(**profile) as ds:
            ds.write(bands)
            for band, name in enumerate(found.names, start=1):
                ds.set_band_description(band, name)
                ds.update_tags(band, unit=found.units.get(name, ""))
            ds.update_tags(tiler_yield_cells=json.dumps(metadata(found)))
        rasterio.shutil.copy(
            memory.name, partial, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
            BLOCKSIZE=512, BIGTIFF="IF_SAFER",
        )  # fmt: skip
    return path
