"""`tiler yield`: per-cell crop features, yield models calibrated on measured yield, yield
maps with per-field prediction intervals, and the stand-based potential (:mod:`tiler.yield_`)."""

from __future__ import annotations

from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import (
    Kilograms,
    Metres,
    fields_options,
    quiet_option,
    stand_options,
    stand_settings,
)

_RUN = click.argument("run", type=click.Path(path_type=Path))
_CELL = click.option("--cell", type=Metres(), default=5.0, show_default=True, metavar="LENGTH",
                     help="Cell side on the ground (5m), rounded to whole pixels.")  # fmt: skip
_OUT = click.option("--out", type=click.Path(path_type=Path), default=None,
                    help="Folder of the outputs [RUN/yield].")  # fmt: skip
_SCHEDULER = click.option("--scheduler", default="threads", show_default=True,
                          metavar="threads|sync", help="How the image pass runs.")  # fmt: skip


@click.group(name="yield")
def yield_() -> None:
    """Yield from a finished run: features per cell, models calibrated on measured yield,
    yield maps and per-field yield with prediction intervals."""


@yield_.command()
@_RUN
@_CELL
@click.option("--index", default=None, help="Vegetation index: exg, exgr, gray, ndvi[:RED,NIR].")
@click.option("--stand", type=click.Path(path_type=Path), default=None,
              help="Folder of `tiler rows`' rows.parquet and gaps.parquet [RUN/stand or "
              "RUN/report/stand when there].")  # fmt: skip
@_OUT
@_SCHEDULER
@quiet_option
def features(run, cell, index, stand, out, scheduler, quiet):
    """Write the crop's features per cell: cells.parquet (GeoParquet) and features.tif (COG,
    a band per feature): plants, density, cover, object size, the vegetation index over
    vegetation, and with a stand the plants per row metre, gaps and spacing uniformity."""
    from tiler import yield_ as api
    from tiler.yield_.cells_io import PARQUET, TIF

    found = api.features(run, cell, out=out, index=index, stand=stand, scheduler=scheduler,
                         reuse=False, log=output.log(quiet))  # fmt: skip
    folder = out or run / api.FOLDER
    click.echo(f"{len(found.table)} cells of {found.grid.cell_m:.3g} m ({found.grid.k} px), "
               f"features: {', '.join(found.names)}")  # fmt: skip
    click.echo(f"table:     {folder / PARQUET}")
    click.echo(f"raster:    {folder / TIF}")


@yield_.command()
@_RUN
@click.option("--truth", type=click.Path(path_type=Path), required=True,
              help="Measured yield: yield-monitor points or harvested plots (GeoPackage, "
              "GeoJSON, Shapefile, CSV with x,y or lon,lat; any CRS).")  # fmt: skip
@click.option("--value", required=True, help="The truth's column of yield.")
@click.option("--unit", default="t/ha", show_default=True, help="The unit of --value.")
@click.option("--time", default=None, help="The records' time column, for the checks along "
              "the combine's track [a column named time, timestamp, ...].")  # fmt: skip
@_CELL
@click.option("--block", type=Metres(), default=50.0, show_default=True, metavar="LENGTH",
              help="Side of the spatial blocks of cross-validation (50m).")  # fmt: skip
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Model folder to write [RUN/yield/model].")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing model folder.")
@_OUT
@_SCHEDULER
@quiet_option
def calibrate(run, truth, value, unit, time, cell, block, model, overwrite, out, scheduler, quiet):
    """Fit a yield model of the cells' features to measured yield, chosen by spatially
    blocked cross-validation, and save it with its model card."""
    from tiler import yield_ as api

    done = api.calibrate(run, truth, value, unit=unit, time=time, cell=cell, block=block,
                         model=model, overwrite=overwrite, out=out, scheduler=scheduler,
                         log=output.log(quiet))  # fmt: skip
    meta, cv = done.meta, done.meta["cv"]
    flagged = ", ".join(f"{n} {reason}" for reason, n in done.flagged.items() if n) or "none"
    click.echo(f"truth:     {done.records} records, left out: {flagged}")
    matched = "cells" if meta["truth"]["kind"] == "points" else "plots"
    click.echo(f"matched:   {cv['n_cells']} {matched}")
    for name, scores in meta["candidates"].items():
        mark = "  (chosen)" if name == meta["chosen"] else ""
        click.echo(f"{name + ':':<10} blocked-CV R² {scores['r2']:.3f}  RMSE {scores['rmse']:.3f} "
                   f"{meta['unit']}  bias {scores['bias']:+.3f}{mark}")  # fmt: skip
    click.echo(
        f"random CV: R² {cv['random_r2']:.3f} (cells dealt singly to the folds, for "
        "comparison: neighbours leak)"
    )
    click.echo(f"model:     {done.folder}")


@yield_.command()
@_RUN
@click.option("--model", type=click.Path(path_type=Path), required=True,
              help="A model folder from `tiler yield calibrate`.")  # fmt: skip
@fields_options
@_OUT
@_SCHEDULER
@quiet_option
def predict(run, model, fields, field_id, out, scheduler, quiet):
    """Map the model over every cell (yield.tif) and give each field its mean and total
    yield with 95 % prediction intervals (fields.csv, yield.html)."""
    from tiler import yield_ as api

    done = api.predict(run, model, fields=fields, field_id=field_id, out=out,
                       scheduler=scheduler, log=output.log(quiet), warn=output.warning)  # fmt: skip
    table = done.fields
    unit, mean, total = table.attrs["unit"], table.attrs["mean"], table.attrs["total"]
    amount = unit.partition("/")[0]
    id_name = str(table.columns[0])
    for _, row in table.iterrows():
        click.echo(f"{row[id_name]!s:<14} {row[mean]:8.3f} {unit} "
                   f"[{row[mean + '_low']:.3f}, {row[mean + '_high']:.3f}]  total "
                   f"{row[total]:,.2f} {amount} [{row[total + '_low']:,.2f}, "
                   f"{row[total + '_high']:,.2f}] (95 % prediction intervals)")  # fmt: skip
    for name, path in done.paths.items():
        click.echo(f"{name + ':':<10} {path}")


@yield_.command()
@_RUN
@click.option("--per-plant", type=Kilograms(), required=True, metavar="MASS",
              help="Assumed yield of one plant, e.g. 0.15kg.")  # fmt: skip
@click.option("--crowded-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Assumed share of a plant's yield a plant in a multiple gives.")  # fmt: skip
@click.option("--target", type=float, default=None, metavar="PLANTS_PER_HA",
              help="Target stand [one plant per nominal slot].")  # fmt: skip
@fields_options
@stand_options
@_OUT
@_SCHEDULER
@quiet_option
def potential(run, per_plant, crowded_share, target, fields, field_id, out, scheduler, quiet,
              **stand):  # fmt: skip
    """Yield potential from the stand, without measured yield: plants per ha x an assumed
    per-plant yield, with the losses to gaps and uneven spacing. An estimate from
    assumptions, never a measurement."""
    from tiler import yield_ as api

    done = api.potential(run, per_plant, crowded_share=crowded_share, target_per_ha=target,
                         fields=fields, field_id=field_id, settings=stand_settings(**stand),
                         out=out, scheduler=scheduler, log=output.log(quiet))  # fmt: skip
    id_name = str(done.table.columns[0])
    for _, row in done.table.iterrows():
        click.echo(f"{row[id_name]!s:<14} potential {row['potential_t_ha_estimate']:.2f} t/ha, "
                   f"lost to gaps {row['gap_loss_t_ha_estimate']:.2f}, to uneven spacing "
                   f"{row['spacing_loss_t_ha_estimate']:.2f} (estimates)")  # fmt: skip
    click.echo(f"table:     {done.csv}")
    click.echo(f"page:      {done.page}")
