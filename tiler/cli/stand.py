"""`tiler rows`: the stand along the rows of each field of a finished run."""

from __future__ import annotations

from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import fields_options, quiet_option, stand_options, stand_settings


@click.command()
@click.argument("dst", type=click.Path(path_type=str))  # a folder (a URL: refused, one line)
@fields_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for rows.parquet, gaps.parquet and stand.csv [DST/stand].",
)
@stand_options
@click.option("--overwrite", is_flag=True, help="Replace an existing stand analysis there.")
@click.option(
    "--scheduler",
    default="threads",
    show_default=True,
    metavar="threads|sync|local|tcp://HOST:PORT",
    help="Where the per-field tasks run (workers must see DST and --out).",
)
@quiet_option
def rows(dst, fields, field_id, out, overwrite, scheduler, quiet, **stand):
    """Find the rows of each field's plants: per field and per row the plants per metre,
    in-row spacing, doubles, skips, gaps and the Kachman-Smith indices."""
    from tiler.analysis import analyse, lines

    result = analyse(
        dst, fields, field_id, out, settings=stand_settings(**stand), overwrite=overwrite,
        scheduler=scheduler, log=output.log(quiet),
    )  # fmt: skip
    for line in lines(result):
        click.echo(line)
    for name, path in (("table", result.csv_path), ("rows", result.rows_path),
                       ("gaps", result.gaps_path)):  # fmt: skip
        click.echo(f"{name + ':':<11}{path}")
