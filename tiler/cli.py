"""Thin click commands over the Python API.

Every error a user can fix prints one line on stderr and exits non-zero; no
traceback, and no ``run.json`` that could make the output look complete.
"""

from __future__ import annotations

import os
import sys
import time
from importlib import resources
from pathlib import Path

import click

from tiler import api, presets
from tiler.cluster import JOBQUEUES, executor_for, security
from tiler.errors import TilerError
from tiler.io.open_raster import MASK_MODES
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _warning(message: str) -> None:
    """A warning: shown even with --quiet (a run goes on, but the user should know)."""
    _echo(f"tiler: warning: {message}")


def _log(quiet: bool):
    return (lambda message: None) if quiet else (lambda message: _echo(f"  {message}"))


scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="local|threads|sync|tcp://HOST:PORT|tls://HOST:PORT",
    help="Where tasks run: a LocalCluster on 127.0.0.1 (default), threads, the synchronous "
    "scheduler, or an existing dask.distributed scheduler (also DASK_SCHEDULER_ADDRESS).",
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local cluster: worker processes [one worker, its threads in this process]; "
    "--cluster: workers to start.",
)
threads_option = click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    default=None,
    help="Local cluster: threads per worker [cores / workers].",
)
memory_option = click.option(
    "--memory-limit",
    default=None,
    metavar="SIZE",
    help="Local cluster: memory limit per worker, e.g. 4GiB [system memory / workers].",
)
chunk_option = click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help=f"Tile size in pixels (also the Zarr chunk size) [default: {api.DEFAULT_CHUNK_SIZE}; "
    "a striped GeoTIFF: tiles of as many pixels that follow its strips].",
)
assume_crs_option = click.option(
    "--assume-crs",
    default=None,
    metavar="CRS",
    help="The CRS (EPSG:32633, WKT, PROJ) of an input with a geotransform but no CRS.",
)
pixel_only_option = click.option(
    "--pixel-only",
    is_flag=True,
    default=None,  # not given: `run --resume` takes the run's
    help="Accept an input without georeferencing: areas and positions in pixels only.",
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")


def _scheduler(value: str | None) -> str:
    return value or os.environ.get("DASK_SCHEDULER_ADDRESS") or "local"


def _threshold_text(threshold) -> str:
    if threshold is None:
        return "per pixel (local threshold or model)"
    if isinstance(threshold, tuple):
        return ", ".join(f"{t:.6g}" for t in threshold)
    return f"{threshold:.6g}"


def _summary(result: api.RunResult, pipeline: str) -> list[str]:
    """The lines `tiler run` prints; ``pipeline`` says which ran (default, preset, config)."""
    h, w = result.shape
    return [
        f"pipeline:   {pipeline}",
        f"objects:    {result.n_objects}",
        f"threshold:  {_threshold_text(result.threshold)}",
        f"image:      {h} x {w} px ({h * w / 1e6:.1f} MP) in {result.n_tiles} tile(s)",
        f"time:       {result.seconds:.1f} s ({result.megapixels_per_second:.1f} MP/s)",
        f"labels:     {result.labels}",
        f"table:      {result.objects}",
        f"manifest:   {result.manifest}",
        f"GIS:        tiler export {result.dst} --cog labels.tif (QGIS/GDAL cannot read Zarr v3)",
    ]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tiler")
def cli() -> None:
    """Exact, out-of-core segmentation of huge GeoTIFF orthomosaics."""


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    default=None,
    help="Pipeline file (YAML). Default: the plant pipeline (see `tiler pipeline`).",
)
@click.option(
    "--preset",
    "-p",
    default=None,
    help="A shipped pipeline instead of --config (see `tiler presets`).",
)
@chunk_option
@scheduler_option
@click.option(
    "--cluster",
    type=click.Choice(sorted(JOBQUEUES)),
    default=None,
    help="Start workers as batch jobs with dask-jobqueue (configured by jobqueue.slurm or "
    "jobqueue.pbs in a dask config file; pip install 'tiler[jobqueue]').",
)
@workers_option
@threads_option
@memory_option
@click.option("--tls-ca-file", type=click.Path(), default=None, help="TLS: the cluster's CA (PEM).")
@click.option("--tls-cert", type=click.Path(), default=None, help="TLS: this client's certificate.")
@click.option("--tls-key", type=click.Path(), default=None, help="TLS: this client's private key.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the tiler outputs in DST (a DST holding other files is refused).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an unfinished run in DST, computing only the tiles it did not finish; "
    "its pipeline, chunk size and input options are the run's unless given.",
)
@click.option(
    "--performance-report",
    type=click.Path(path_type=Path),
    default=None,
    help="Write dask's performance report (HTML) here (distributed schedulers).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help=f"Refuse inputs larger than this [{DEFAULT_MAX_PIXELS:.0e} pixels].",
)
@click.option(
    "--mask",
    "mask_mode",
    type=click.Choice(MASK_MODES),
    default=None,
    help="Valid pixels: GDAL's dataset mask (internal mask, else alpha, else nodata), "
    "the nodata value, the alpha band, or none (every pixel valid) [dataset].",
)
@assume_crs_option
@pixel_only_option
@click.option(
    "--driver",
    default=None,
    help="The GDAL driver to open SRC with (inputs are GeoTIFFs unless you say otherwise) [GTiff].",
)
@quiet_option
def run(
    src,
    dst,
    config,
    preset,
    chunk_size,
    scheduler,
    cluster,
    workers,
    threads_per_worker,
    memory_limit,
    tls_ca_file,
    tls_cert,
    tls_key,
    overwrite,
    resume,
    performance_report,
    max_pixels,
    mask_mode,
    assume_crs,
    pixel_only,
    driver,
    quiet,
):
    """Segment SRC (a GeoTIFF) into DST: labels.zarr, objects.parquet, run.json."""
    described = "default (`tiler pipeline`)" if config is None else f"config {config}"
    if preset is not None:
        if config is not None:
            raise click.UsageError("use --config or --preset, not both")
        config = presets.load(preset)
        described = f"preset {preset}"
    if cluster is not None and scheduler is not None:
        raise click.UsageError("use --scheduler or --cluster, not both")
    if overwrite and resume:
        raise click.UsageError("use --overwrite or --resume, not both")
    if assume_crs is not None and pixel_only:
        raise click.UsageError("use --assume-crs or --pixel-only, not both")
    result = api.run(
        src,
        dst,
        config,
        chunk_size=chunk_size,
        scheduler=cluster or _scheduler(scheduler),
        workers=workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        security=security(tls_ca_file, tls_cert, tls_key),
        overwrite=overwrite,
        resume=resume,
        progress=not quiet,
        performance_report=performance_report,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        driver=driver,
        mask=mask_mode,
        assume_crs=assume_crs,
        pixel_only=pixel_only,
        log=_log(quiet),
        warn=_warning,
    )
    for line in _summary(result, described):
        click.echo(line)


@cli.command()
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--fields",
    type=click.Path(path_type=Path),
    default=None,
    help="Field polygons (GeoPackage, GeoJSON, any CRS). Default: the whole footprint.",
)
@click.option("--field-id", default=None, help="The column naming each field [field 1, 2, ...].")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for fields.csv, fields.parquet and report.html [DST/report].",
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
    type=click.Path(path_type=Path),
    default=None,
    help="The run's input, if it moved (checked against run.json's size and fingerprint).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing report there.")
@quiet_option
def report(dst, fields, field_id, out, index, src, overwrite, quiet):
    """Count objects per field, with density, canopy cover, sizes and a vegetation index
    per object; write an HTML report."""
    from tiler import report as reporting

    result = reporting.build(
        dst, fields, field_id, out, index=index, src=src, overwrite=overwrite, log=_log(quiet)
    )
    for line in reporting.lines(result):
        click.echo(line)
    for name, path in (
        ("table", result.csv),
        ("geo table", result.parquet),
        ("objects", result.parquet.with_name("objects.parquet")),
        ("report", result.html),
    ):
        click.echo(f"{name + ':':<11}{path}")


@cli.command()
@click.option("--preset", "-p", default=None, help="Print this preset instead.")
def pipeline(preset):
    """Print the default pipeline file (or a preset's), to copy and adapt."""
    from tiler.config import DEFAULT_PIPELINE_YAML

    click.echo(DEFAULT_PIPELINE_YAML if preset is None else presets.text(preset), nl=False)


@cli.command("presets")
def list_presets():
    """List the shipped pipelines for `tiler run --preset NAME`."""
    width = max(len(name) for name in presets.names())
    for name in presets.names():
        click.echo(f"{name:<{width}}  {presets.describe(name)}")


@cli.command()
@click.option(
    "--size",
    type=click.IntRange(min=64),
    default=8000,
    show_default=True,
    help="Height and width of the synthetic orthomosaic in pixels.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Folder for the generated input and the outputs.",
)
@chunk_option
@workers_option
@scheduler_option
@quiet_option
def demo(size, out, chunk_size, workers, scheduler, quiet):
    """Run the plant preset on a synthetic row-crop field, and check a real NEON tile's result.

    Each result is scored against its ground truth and the score printed.
    """
    from tiler import demo as checks
    from tiler.synthetic import SyntheticField, write_geotiff

    out.mkdir(parents=True, exist_ok=True)
    field = SyntheticField(height=size, width=size)
    src = out / f"synthetic-field-{size}.tif"
    if not src.exists():
        started = time.perf_counter()
        _echo(f"generating {src} ({size} x {size} px, RGBA, deflate) ...")
        write_geotiff(field, src)
        _echo(f"  done in {time.perf_counter() - started:.1f} s")
    log = _log(quiet)
    plants = "row-crop-plants"
    runs = [("synthetic row-crop field", src, out / "synthetic-field", plants)]
    with resources.as_file(checks.NEON_TILE) as neon:
        runs.append(("real NEON tile (SJER, oak savanna)", neon, out / "neon-sjer-477", None))
        with executor_for(_scheduler(scheduler), workers=workers, log=log) as executor:
            for title, path, dst, preset in runs:
                _echo(f"{title}: {path}")
                result = api.run(
                    path,
                    dst,
                    None if preset is None else presets.load(preset),
                    chunk_size=chunk_size,
                    client=executor.scheduler,
                    overwrite=True,
                    log=log,
                    warn=_warning,
                )
                click.echo(f"== {title}")
                described = "default (`tiler pipeline`)" if preset is None else f"preset {preset}"
                for line in _summary(result, described):
                    click.echo(line)
                objects = api.read_objects(dst)
                if path == src:
                    lines = checks.field_check(field, objects)
                else:
                    lines = checks.neon_check(objects, result.shape)
                for line in lines:
                    click.echo(line)
    from tiler import report as reporting
    from tiler.synthetic import plots

    fields = out / "synthetic-plots.geojson"
    plots(field).to_file(fields)
    result = reporting.build(out / "synthetic-field", fields, "plot", overwrite=True, log=log)
    click.echo("== plant count report, six trial plots of the synthetic field")
    click.echo(f"fields:     {fields}")
    click.echo(f"report:     {result.html}")
    click.echo(f"outputs under {out.resolve()}")


class _Metres(click.ParamType):
    """A length with its unit, ``0.2m`` or ``20cm``, as metres."""

    name = "length"
    units = {"cm": 0.01, "m": 1.0}

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        for unit, factor in self.units.items():
            if text.endswith(unit):
                try:
                    return float(text[: -len(unit)]) * factor
                except ValueError:
                    break
        self.fail(f"{value!r}: give a length with its unit, e.g. 0.2m or 20cm", param, ctx)


@cli.command()
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--cog",
    type=click.Path(path_type=Path),
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
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH.gpkg|.shp|.geojson|.fgb|.kml|.parquet",
    help="One polygon per object with the object table's columns; format by extension.",
)
@click.option(
    "--simplify",
    "simplify_m",
    type=_Metres(),
    default=None,
    metavar="LENGTH",
    help="With --polygons: simplify outlines by this much, in metres or cm (0.2m, 20cm).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path),
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


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads reading blocks, each with its own handle on SRC [one per core].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=None,
    help="Refuse SRC above this many pixels, as `tiler run` does [200000000000].",
)
@assume_crs_option
@pixel_only_option
@quiet_option
def validate(src, threads, max_pixels, assume_crs, pixel_only, quiet):
    """Read every block of SRC (every band and the mask); list every block that fails."""
    from tiler.io.validate import validate as validate_file

    report = validate_file(
        src,
        threads=threads,
        progress=not quiet,
        max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
        assume_crs=assume_crs,
        pixel_only=pixel_only,
    )
    click.echo(report.summary())
    for bad in report.bad:
        click.echo(bad.describe())
    if not report.ok:
        raise report.error()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command; user errors become one line on stderr."""
    try:
        cli.main(args=argv, prog_name="tiler", standalone_mode=False)
    except TilerError as exc:
        _echo(f"tiler: error: {exc}")
        return exc.exit_code
    except click.exceptions.Abort:  # click's name for a KeyboardInterrupt
        _echo("tiler: interrupted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        _echo("tiler: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
