"""Yield from a finished run: per-cell crop features, models calibrated on measured yield,
yield maps and per-field estimates with prediction intervals (issue 20).

* :func:`features`: the crop summarised on a grid of cells in ground units
  (:mod:`tiler.yield_.cells`), written as ``cells.parquet`` and ``features.tif``;
* :func:`calibrate`: a model relating the cells to yield measured on the ground
  (yield-monitor points or harvested plots, :mod:`tiler.yield_.truth`), chosen by
  spatially blocked cross-validation (:mod:`tiler.yield_.model`), saved as a folder
  with its model card;
* :func:`predict`: the model mapped over every cell (``yield.tif``) and summed per
  field with 95 % prediction intervals (``fields.csv``, ``yield.html``);
* :func:`potential`: without measured yield, the stand-based potential from a
  per-plant yield the user gives, labelled an estimate from assumptions.

Every function reads the run and writes only its own outputs (by default in
``RUN/yield``). The cell features of a run are computed once and reused while
``cells.parquet`` is of the same run and cell size.

>>> from tiler import yield_
>>> cal = yield_.calibrate("out/", "monitor.gpkg", "yield_t_ha")   # doctest: +SKIP
>>> yield_.predict("out/", cal.folder, fields="fields.gpkg")        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiler.io.output import MODEL  # RUN/yield/model: calibrate's default model folder
from tiler.io.output import YIELD as FOLDER  # RUN/yield: the default home of the outputs

if TYPE_CHECKING:
    import pandas as pd

    from tiler.stand import Settings
    from tiler.yield_.cells import CellFeatures
    from tiler.yield_.model import Calibration
    from tiler.yield_.outputs import Predicted

__all__ = ["Calibrated", "Potential", "calibrate", "features", "potential", "predict", "reusable"]

Log = Callable[[str], None]


def _out(run: str | os.PathLike, out: str | os.PathLike | None) -> Path:
    """The outputs' folder, checked to hold nothing tiler did not write (one line if so)."""
    from tiler.io import output
    from tiler.io.targets import claim

    folder = Path(out) if out is not None else Path(run) / FOLDER
    claim(folder, output.YIELD_OUTPUTS, overwrite=True)  # replaced file by file, never emptied
    return folder


def features(
    run: str | os.PathLike,
    cell: float = 5.0,
    *,
    out: str | os.PathLike | None = None,
    index: str | None = None,
    stand: str | os.PathLike | bool | None = None,
    scheduler: str = "threads",
    src: str | os.PathLike | None = None,
    reuse: bool = True,
    log: Log | None = None,
) -> CellFeatures:
    """The per-cell features of the run in ``run``, written to ``out`` (``RUN/yield``).

    ``cell``: the cell side in metres (whole pixels: :func:`tiler.yield_.cells.cell_grid`).
    ``index``, ``stand``, ``src``: as :func:`tiler.yield_.cells.features`. ``reuse``: read
    ``out/cells.parquet`` instead when it is of this run, cell size, index and stand.
    """
    from tiler.yield_ import cells, cells_io

    log = log or (lambda message: None)
    folder = _out(run, out)
    found = reusable(run, cell, folder, index=index, stand=stand) if reuse else None
    if found is not None:
        log(f"features: {folder / cells_io.PARQUET} (of this run: reused)")
        return found
    found = cells.features(run, cell, index=index, stand=stand, scheduler=scheduler, src=src,
                           log=log)  # fmt: skip
    cells_io.write(found, folder)
    return found


def reusable(
    run: str | os.PathLike,
    cell: float,
    folder: str | os.PathLike,
    *,
    index: str | None = None,
    stand: str | os.PathLike | bool | None = None,
) -> CellFeatures | None:
    """``folder/cells.parquet`` when it is of this run, cell size, index and stand, else None
    (only read: ``tiler report --yield-model`` reuses what ``tiler yield`` wrote)."""
    from tiler.errors import InputError
    from tiler.io.finished import check_complete
    from tiler.report import vigour
    from tiler.yield_ import cells, cells_io, cells_rows

    manifest = check_complete(run)
    written = Path(folder) / cells_io.PARQUET
    if not written.is_file():
        return None
    try:
        found = cells_io.read(written)
    except InputError:  # not readable as one: computed again, and replaced
        return None
    inputs = manifest["input"]
    chosen = vigour.choose(index, manifest.get("config", {}), inputs["count"], str(run))
    stand_at = cells_rows.stand_folder(Path(run), stand)
    # A stand found again after the cells were written (tiler rows rerun) makes them stale.
    stand_newer = stand_at is not None and any(
        (stand_at / name).stat().st_mtime_ns > written.stat().st_mtime_ns
        for name in cells_rows.FILES
    )
    same = (
        found.created == str(manifest.get("created", ""))
        and found.fingerprint == str(inputs.get("fingerprint_sha256", ""))
        and found.grid.k == cells.cell_grid(inputs, cell).k
        and found.index == (chosen.name if chosen is not None else None)
        and (stand_at is not None) == any(name in found.table for name in cells.STAND_COLUMNS)
        and not stand_newer
    )
    return found if same else None


@dataclass(frozen=True)
class Calibrated:
    """What :func:`calibrate` fitted and where it saved it."""

    calibration: Calibration
    folder: Path  # the model folder
    records: int  # truth records read
    flagged: dict[str, int]  # records left out, by reason

    @property
    def meta(self) -> dict:
        return self.calibration.meta


def calibrate(
    run: str | os.PathLike,
    truth: str | os.PathLike,
    value: str,
    *,
    unit: str = "t/ha",
    time: str | None = None,
    cell: float = 5.0,
    block: float = 50.0,
    model: str | os.PathLike | None = None,
    overwrite: bool = False,
    out: str | os.PathLike | None = None,
    stand: str | os.PathLike | bool | None = None,
    scheduler: str = "threads",
    log: Log | None = None,
) -> Calibrated:
    """Fit a yield model of the run's cells to measured yield and save it.

    Parameters
    ----------
    truth, value, unit
        A file of yield-monitor points or harvested plots (anything GDAL reads, or a
        CSV with x,y or lon,lat; any CRS), its column of yield, and that column's unit.
    time
        The points' column of recording time, for the checks along the combine's track
        (default: a column named time, timestamp, ...: :func:`tiler.yield_.truth.read_truth`).
    cell, block
        The cell side and the side of the cross-validation blocks, metres.
    model
        The model folder to write (default ``RUN/yield/model``); an existing one is
        replaced only with ``overwrite``.
    out, stand, scheduler
        Where the cell features go (:func:`features`) and how they are computed.
    """
    from tiler.errors import InputError
    from tiler.yield_ import model as models
    from tiler.yield_.truth import read_truth

    log = log or (lambda message: None)
    if not Path(truth).is_file():  # before the pass over the image
        raise InputError(f"{truth}: no such truth file")
    found = features(run, cell, out=out, stand=stand, scheduler=scheduler, log=log)
    measured = read_truth(truth, value, found.table, found.grid, unit=unit, block_m=block,
                          time=time)  # fmt: skip
    fitted = models.calibrate(found.table, measured, block_m=block)
    folder = Path(model) if model is not None else _out(run, out) / MODEL
    models.save(fitted, folder, overwrite=overwrite)
    flagged = dict(fitted.meta["truth"].get("flagged", {}))
    cv = fitted.meta["cv"]
    log(f"calibrate: {fitted.meta['chosen']} on {cv['n_cells']} cell(s), blocked-CV R² "
        f"{cv['r2']:.3f} (random-CV {cv['random_r2']:.3f})")  # fmt: skip
    return Calibrated(fitted, folder, int(fitted.meta["truth"]["records"]), flagged)


def predict(
    run: str | os.PathLike,
    model: str | os.PathLike,
    *,
    fields: Any = None,
    field_id: str | None = None,
    out: str | os.PathLike | None = None,
    scheduler: str = "threads",
    log: Log | None = None,
    warn: Log | None = None,
) -> Predicted:
    """Map a model folder over the run's cells and sum it per field, with 95 % prediction
    intervals: ``yield.tif``, ``fields.csv``, ``fields.parquet`` and ``yield.html`` in
    ``out`` (``RUN/yield``). ``fields``: polygons in any CRS (default: the footprint).
    ``warn``: told of cells whose features lie outside the calibration's (default: a
    :class:`tiler.errors.TilerWarning`)."""
    from tiler.yield_.cells import STAND_COLUMNS
    from tiler.yield_.model import load
    from tiler.yield_.outputs import write_outputs

    estimator, meta = load(model)  # before any work: a bad folder is one line
    stand = True if set(meta["features"]) & set(STAND_COLUMNS) else False  # True: required
    found = features(run, float(meta["cell_m"]), out=out, stand=stand, scheduler=scheduler,
                     log=log)  # fmt: skip
    grid = found.grid
    return write_outputs(
        _out(run, out), found.table, model, transform=grid.transform,
        image_shape=grid.image_shape, k=grid.k, crs_wkt=grid.crs_wkt, fields=fields,
        field_id=field_id, title=Path(run).resolve().name, warn=warn, loaded=(estimator, meta),
    )  # fmt: skip


@dataclass(frozen=True)
class Potential:
    """The stand-based yield potential per field and its files."""

    table: pd.DataFrame
    csv: Path
    page: Path


def potential(
    run: str | os.PathLike,
    per_plant_kg: float,
    *,
    crowded_share: float = 0.5,
    target_per_ha: float | None = None,
    fields: Any = None,
    field_id: str | None = None,
    settings: Settings | None = None,
    out: str | os.PathLike | None = None,
    scheduler: str = "threads",
    log: Log | None = None,
) -> Potential:
    """The yield potential of each field's stand, an estimate from assumptions
    (:mod:`tiler.yield_.stand_potential`): the stand along the rows is found first
    (:func:`tiler.analysis.analyse`, in ``out/stand``), then ``potential.csv`` and
    ``potential.html`` are written in ``out`` (``RUN/yield``)."""
    from tiler.analysis import analyse
    from tiler.io.atomic import write_text
    from tiler.yield_ import page
    from tiler.yield_.stand_potential import potential as stand_potential
    from tiler.yield_.stand_potential import rounded

    folder = _out(run, out)
    found = analyse(run, fields, field_id, folder / "stand", settings=settings, overwrite=True,
                    scheduler=scheduler, log=log)  # fmt: skip
    table = stand_potential(found.fields, found.read_gaps(), per_plant_kg, crowded_share,
                            target_per_ha=target_per_ha)  # fmt: skip
    csv = Path(write_text(folder / "potential.csv", rounded(table).to_csv(index=False)))
    html = page.write(folder / "potential.html",
                      page.render_potential(Path(run).resolve().name, table))  # fmt: skip
    return Potential(table, csv, html)
