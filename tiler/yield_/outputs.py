"""``tiler yield predict``'s files from a features table and a model folder.

:func:`write_outputs` maps the model over the cells and writes, in ``folder``:
``yield.tif`` (the yield map), ``fields.csv`` and ``fields.parquet`` (per-field
yield with 95 % prediction intervals) and ``yield.html`` (the page), each
atomically. Fields come from a file in any CRS (as ``tiler report --fields``:
:func:`tiler.report.fields.load_fields`), else the image's footprint is one field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from tiler.georef import image_bounds
from tiler.io.grid_raster import cells_transform
from tiler.report.fields import load_fields
from tiler.yield_ import page
from tiler.yield_.model import load
from tiler.yield_.prediction import (
    field_yield,
    predict_cells,
    write_fields,
    write_yield_map,
)


@dataclass(frozen=True)
class Predicted:
    """What :func:`write_outputs` computed and wrote."""

    cells: gpd.GeoDataFrame  # the features with ``yield``
    fields: pd.DataFrame  # field_yield's table (unrounded)
    meta: dict  # model.json
    paths: dict[str, Path]  # "map", "csv", "parquet", "page"


def write_outputs(
    folder: str | os.PathLike,
    features: gpd.GeoDataFrame,
    model: str | os.PathLike,
    *,
    transform: tuple[float, ...],
    image_shape: tuple[int, int],
    k: int,
    crs_wkt: str,
    fields: Any = None,
    field_id: str | None = None,
    title: str = "",
    warn: Callable[[str], None] | None = None,
    loaded: tuple[Any, dict] | None = None,
) -> Predicted:
    """Predict the cells with the model folder ``model`` and write the four outputs.

    Parameters
    ----------
    folder : path
        Where the files go (made if missing).
    features : GeoDataFrame
        The features table (:mod:`tiler.yield_.cells`), in the raster's CRS.
    model : path
        The model folder (``model.joblib``, ``model.json``; ``cv.parquet`` and
        ``card.md`` shown when present).
    transform, image_shape, k, crs_wkt
        The raster's affine and ``(height, width)`` in pixels, the cell side in pixels,
        the raster's CRS.
    fields, field_id
        A fields file (any CRS) or GeoDataFrame and its id column; ``None``: the footprint.
    loaded
        ``model`` as :func:`tiler.yield_.model.load` already read it (else read here).
    """
    folder = Path(folder)
    estimator, meta = loaded if loaded is not None else load(model)
    frame, id_name = load_fields(fields, field_id, crs_wkt, image_bounds(transform, *image_shape))
    cells = predict_cells(features, estimator, meta, warn)
    table = field_yield(cells, frame, id_name, meta)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (-(-image_shape[0] // k), -(-image_shape[1] // k))
    grid = cells_transform(transform, k)
    map_path = write_yield_map(folder / "yield.tif", cells, shape, grid, crs_wkt, meta)
    csv_path, parquet_path = write_fields(folder, table, frame)
    cv_path, card_path = Path(model) / "cv.parquet", Path(model) / "card.md"
    html = page.render(
        title=title or folder.name, cells=cells, shape=shape, transform_cells=grid,
        fields=frame, id_name=id_name, table=table, meta=meta,
        cv=pd.read_parquet(cv_path) if cv_path.is_file() else None,
        card=card_path.read_text() if card_path.is_file() else "",
    )  # fmt: skip
    page_path = page.write(folder / "yield.html", html)
    paths = {"map": map_path, "csv": csv_path, "parquet": parquet_path, "page": page_path}
    return Predicted(cells, table, meta, paths)
