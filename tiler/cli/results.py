"""`tiler report` (counts per field, an HTML page) and `tiler export` (COG, polygons, CSV)."""

from __future__ import annotations

from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import (
    Metres,
    fields_options,
    quiet_option,
    stand_options,
    stand_settings,
)


@click.command()
@click.argument("dst", type=click.Path(path_type=str))  # a folder, or an s3:// gs:// az:// URL
@fields_options
@click.option(
    "--out",
    type=click.Path(path_type=str),  # a folder, or a URL
    default=None,
    help="Folder (or s3:// gs:// az:// URL) for fields.csv, fields.parquet and report.html "
    "[DST/report].",
)
@click.option(
    "--index",
    default=None,
    metavar="NAME",
    help="Vegetation index averaged per object: exg, exgr, gray, ndvi, ndvi:RED,NIR or none "
    "[the run's NDVI, else exg].",
)
@click.option(
    "--src",
    type=click.Path(path_type=str),  # a path or a URL
    default=None,
    help="The run's input, if it moved (checked against run.json's size and fingerprint).",
)
@click.option(
    "--rows",
    "with_rows",
    is_flag=True,
    help="Also the stand along the rows (as `tiler rows`): its columns in the table, its "
    "section in the page, rows.parquet and gaps.parquet in OUT/stand.",
)
@stand_options
@click.option(
    "--yield-model",
    type=click.Path(path_type=str),
    default=None,
    metavar="MODEL",
    help="Also the yield per field with 95% prediction intervals, from a model folder of "
    "`tiler yield calibrate`: its columns in the table, the yield map (OUT/yield.tif), the "
    "calibration plot and a section in the page.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report there.")
@quiet_option
def report(dst, fields, field_id, out, index, src, with_rows, yield_model, overwrite, quiet,
           **stand):  # fmt: skip
    """Count objects per field, with density, canopy cover, sizes and a vegetation index
    per object (with --rows the stand along the rows, with --yield-model the yield);
    write an HTML report."""
    from tiler import report as reporting
    from tiler.analysis import lines as stand_lines

    result = reporting.build(
        dst, fields, field_id, out, index=index, src=src, overwrite=overwrite,
        stand=stand_settings(**stand) if with_rows else None, yield_model=yield_model,
        log=output.log(quiet), warn=output.warning,
    )  # fmt: skip
    for line in reporting.lines(result):
        click.echo(line)
    if result.stand is not None:
        click.echo("== stand along the rows")
        for line in stand_lines(result.stand):
            click.echo(line)
    if result.yield_ is not None:
        click.echo("== yield, 95% prediction intervals")
        for line in result.yield_.lines():
            click.echo(line)
    files = [("table", result.csv), ("geo table", result.parquet),
             ("objects", result.parquet.with_name("objects.parquet"))]  # fmt: skip
    if result.stand is not None:
        files += [("rows", result.stand.rows_path), ("gaps", result.stand.gaps_path)]
    if result.yield_ is not None:
        files.append(("yield map", result.yield_.map_path))
    for name, path in [*files, ("report", result.html)]:
        click.echo(f"{name + ':':<11}{path}")


@click.command()
@click.argument("dst", type=click.Path(path_type=str))  # a folder, or an s3:// gs:// az:// URL
@click.option(
    "--cog",
    type=click.Path(path_type=str),  # a URL is refused by name, not mangled
    default=None,
    metavar="PATH.tif",
    help="The labels as a Cloud-Optimized GeoTIFF (uint32, or uint64 as stored).",
)
@click.option(
    "--mask",
    is_flag=True,
    help="With --cog: a uint8 mask instead (1 object, 0 background, 255 nodata).",
)
@click.option(
    "--polygons",
    type=click.Path(path_type=str),  # a URL is refused by name, not mangled
    default=None,
    metavar="PATH.gpkg|.shp|.geojson|.fgb|.kml|.parquet",
    help="One polygon per object with the object table's columns; format by extension.",
)
@click.option(
    "--simplify",
    "simplify_m",
    type=Metres(),
    default=None,
    metavar="LENGTH",
    help="With --polygons: simplify outlines by this much, in metres or cm (0.2m, 20cm).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=str),  # a URL is refused by name, not mangled
    default=None,
    metavar="PATH.csv",
    help="The object table for spreadsheets, with lon/lat (WGS 84) and a crs column.",
)
@click.option(
    "--fields",
    type=click.Path(path_type=Path),
    default=None,
    help="Field polygons: tag each object (polygons, CSV) with the field its centroid is in.",
)
@click.option("--field-id", default=None, help="With --fields: the column naming each field.")
@click.option("--overwrite", is_flag=True, help="Replace files that exist at these paths.")
def export(dst, cog, mask, polygons, simplify_m, csv_path, fields, field_id, overwrite):
    """Export the finished run in DST: a COG of its labels, object polygons, a CSV table.

    The COG is how GDAL-based tools (QGIS, rioxarray.open_rasterio) open the
    labels: their GDAL does not read Zarr v3's labels.zarr.
    """
    from tiler.export import export as export_run

    if cog is None and polygons is None and csv_path is None:
        raise click.UsageError("give at least one of --cog, --polygons, --csv")
    if mask and cog is None:
        raise click.UsageError("--mask goes with --cog")
    if simplify_m is not None and polygons is None:
        raise click.UsageError("--simplify goes with --polygons")
    if field_id is not None and fields is None:
        raise click.UsageError("--field-id goes with --fields")
    if fields is not None and polygons is None and csv_path is None:
        raise click.UsageError("--fields goes with --polygons or --csv")
    export_run(
        dst,
        cog=cog,
        mask=mask,
        polygons=polygons,
        csv=csv_path,
        simplify_m=simplify_m,
        fields=fields,
        field_id=field_id,
        overwrite=overwrite,
        log=lambda kind, path: click.echo(f"{kind + ':':<11} {path}"),
    )
