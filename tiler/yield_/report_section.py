"""The report's "Yield" section (issue 20): ``tiler report --yield-model MODEL``.

:func:`load_model` reads the model folder before the report's pass over the image
(a bad folder is one line, and nothing is written); :func:`predict` then maps it
over the run's cells and sums it over the report's own field polygons with
:mod:`tiler.yield_.prediction`, as ``tiler yield predict`` does: the same
figures for the same fields. The cells are ``RUN/yield/cells.parquet`` when
that is of this run (:func:`tiler.yield_.reusable`: what ``tiler yield
calibrate`` left there), else computed by a pass of their own and not kept
(the report only reads the run). The yield map is written as ``OUT/yield.tif``.
:class:`YieldSection` gives the fields table's columns, the summary's cards
and the page's section (:mod:`tiler.yield_.page`'s pieces).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from tiler.errors import OutputError
from tiler.io import stores
from tiler.io.grid_raster import cells_transform
from tiler.report.html import _number
from tiler.yield_ import cells_rows, page
from tiler.yield_.cells import STAND_COLUMNS
from tiler.yield_.model import load
from tiler.yield_.prediction import field_yield, predict_cells, rounded, write_yield_map

MAP = "yield.tif"  # the yield map's name in the report's folder
STYLE = "h3 { font-size: 16px; margin: 18px 0 6px; }\n"


@dataclass(frozen=True)
class YieldModel:
    """A model folder as loaded before the pass over the image."""

    folder: Path
    estimator: Any
    meta: dict  # model.json
    stand: bool  # its features include the stand along the rows'


def load_model(folder: str | os.PathLike, dst: Any, out: Any, with_rows: bool) -> YieldModel:
    """The model folder, checked before any work: not a model (or of another scikit-learn),
    a run or ``out`` in object storage, a model needing a stand the run lacks (and that
    ``--rows`` does not find): one line each (:class:`tiler.errors.InputError`,
    :class:`tiler.errors.OutputError`)."""
    estimator, meta = load(folder)
    if stores.is_remote(dst) or stores.is_remote(out):
        raise OutputError(
            f"{dst if stores.is_remote(dst) else out}: the yield (--yield-model) reads the "
            "run's cells and writes yield.tif by path, not in object storage: copy the run "
            "to a folder"
        )
    stand = bool(set(meta["features"]) & set(STAND_COLUMNS))
    if stand and not with_rows:
        cells_rows.stand_folder(Path(dst), True)  # one line when the run has none
    return YieldModel(Path(folder), estimator, meta, stand)


@dataclass(frozen=True)
class YieldSection:
    """The yield of a report's fields: the table, the cells and what the page shows.

    ``table`` is :func:`tiler.yield_.prediction.field_yield`'s (unrounded), one line per
    field in the report's order; ``cells`` the predicted cells; ``shape`` and
    ``transform_cells`` the cell grid's; ``map_path`` the written ``yield.tif``.
    """

    table: pd.DataFrame
    cells: gpd.GeoDataFrame
    shape: tuple[int, int]
    transform_cells: tuple[float, ...]
    fields: gpd.GeoDataFrame
    id_name: str
    model: YieldModel
    cv: pd.DataFrame | None
    map_path: Path
    style: str = STYLE  # the page's CSS for the section

    @property
    def columns(self) -> list[str]:
        """The fields table's yield columns: the mean, the total, each with its interval."""
        mean, total = self.table.attrs["mean"], self.table.attrs["total"]
        return [mean, f"{mean}_low", f"{mean}_high", total, f"{total}_low", f"{total}_high"]

    @property
    def fields_columns(self) -> pd.DataFrame:
        """The report's id column and :attr:`columns`, one line per field."""
        return self.table[[self.id_name, *self.columns]]

    def rounded(self, shown: pd.DataFrame) -> pd.DataFrame:
        """``shown`` (fields.csv's table) with its yield columns rounded as ``tiler yield
        predict``'s fields.csv rounds them."""
        out = shown.copy()
        out[self.columns] = rounded(out[self.columns])
        return out

    def mean(self) -> float:
        """The mean yield over the fields with a prediction, weighted by their predicted
        area (fields overlapping count twice, as the report's other figures)."""
        area = self.table["area_ha"].to_numpy(float)
        values = self.table[self.table.attrs["mean"]].to_numpy(float)
        used = np.isfinite(values) & (area > 0)
        return float(values[used] @ area[used] / area[used].sum()) if used.any() else math.nan

    def lines(self) -> list[str]:
        """What ``tiler report`` prints: a line per field, its mean and total with intervals."""
        unit, t = self.model.meta["unit"], self.table
        mean, total = t.attrs["mean"], t.attrs["total"]
        amount = unit.partition("/")[0] or "value"
        names = t[self.id_name].astype(str)
        width = max(len(n) for n in names)
        return [
            f"{name:<{width}}  {row[mean]:8.3f} {unit} ({row[mean + '_low']:.3f} to "
            f"{row[mean + '_high']:.3f})  total {row[total]:.2f} {amount} "
            f"({row[total + '_low']:.2f} to {row[total + '_high']:.2f})"
            for name, (_, row) in zip(names, t.iterrows(), strict=True)
        ]

    def cards(self) -> list[tuple[str, str]]:
        """The summary's card: the mean yield over the fields."""
        return [(f"mean yield ({self.model.meta['unit']})", _number(self.mean(), 2))]

    def html(self) -> str:
        """The section: the yield map with the fields, the table with its intervals, the
        calibration plot with the blocked CV's R², RMSE and bias."""
        meta = self.model.meta
        unit = meta["unit"]
        picture = page.yield_map(self.cells, self.shape, self.transform_cells, self.fields,
                                 self.id_name, unit)  # fmt: skip
        table = page.fields_table(self.table, self.id_name, unit, table_id="yield-fields")
        lead = (
            f"Yield ({unit}) predicted per {meta.get('cell_m')} m cell by the "
            f"{meta.get('chosen')} model of {self.model.folder.name}/, calibrated on "
            f"{meta.get('value')}; per field, the mean over the field's imaged ground and the "
            "total (mean × that area). That area is the imaged area of the cells in the field, "
            "each cell's taken as spread evenly over it, so it can differ from the imaged area "
            "of the fields table. The map is also yield.tif."
        )
        return f"""
<section id="yield"><h2>Yield</h2><p class="lead">{html.escape(lead)}</p>
{page.notes(self.cells)}<figure><img alt="predicted yield map" src="{picture}"><figcaption>
Predicted yield per cell ({html.escape(unit)}); fields outlined; blank: no prediction.
</figcaption></figure>
<h3>Yield per field</h3>{table}
<p class="lead">{html.escape(page.INTERVALS)}{html.escape(page.subsampled(self.table))}</p>
{page.calibration_section(self.cv, meta, "h3")}</section>"""


def predict(
    model: YieldModel,
    dst: str | os.PathLike,
    fields: gpd.GeoDataFrame,
    id_name: str,
    out: str | os.PathLike,
    *,
    stand: str | os.PathLike | None = None,
    scheduler: str = "threads",
    src: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> YieldSection:
    """The model over the run's cells, summed per field of ``fields`` (the report's, in
    the raster's CRS); ``out/yield.tif`` written. ``stand``: the report's stand folder
    (``--rows``), else the run's (``RUN/stand``) when the model needs one. ``warn``: as
    :func:`tiler.yield_.prediction.predict_cells`'."""
    from tiler.yield_ import FOLDER, reusable
    from tiler.yield_.cells import features

    log = log or (lambda message: None)
    dst, out = Path(dst), Path(out)  # by path: load_model refused object storage
    cell = float(model.meta["cell_m"])
    wanted: str | os.PathLike | bool | None = (
        stand if stand is not None else (True if model.stand else None)
    )
    found = reusable(dst, cell, dst / FOLDER, stand=wanted)
    if found is None:
        found = features(dst, cell, stand=wanted if model.stand else False,
                         scheduler=scheduler, src=src, log=log)  # fmt: skip
    else:
        log(f"yield: the cells of {dst / FOLDER} (of this run: reused)")
    cells = predict_cells(found.table, model.estimator, model.meta, warn)
    table = field_yield(cells, fields, id_name, model.meta)
    grid = found.grid
    transform_cells = tuple(cells_transform(grid.transform, grid.k))
    map_path = write_yield_map(out / MAP, cells, grid.shape, transform_cells, grid.crs_wkt,
                               model.meta)  # fmt: skip
    cv_path = model.folder / "cv.parquet"
    cv = pd.read_parquet(cv_path) if cv_path.is_file() else None
    return YieldSection(table, cells, grid.shape, transform_cells, fields, id_name, model, cv,
                        map_path)  # fmt: skip
