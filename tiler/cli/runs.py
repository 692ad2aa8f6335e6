"""`tiler run` (segment one input) and `tiler demo` (run on a synthetic field and a real tile)."""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import (
    assume_crs_option,
    chunk_option,
    dashboard_option,
    memory_option,
    pixel_only_option,
    quiet_option,
    scheduler_address,
    scheduler_option,
    threads_option,
    workers_option,
)
from tiler.cluster import JOBQUEUES, security
from tiler.defaults import DEFAULT_MAX_PIXELS, MASK_MODES


@click.command()
@click.argument("src", type=click.Path(path_type=str))  # a path or a URL (s3://, https://...)
@click.argument("dst", type=click.Path(path_type=str))  # a folder, or s3:// gs:// az:// prefix
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
@dashboard_option
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
@click.option(
    "--device",
    type=click.Choice(("auto", "cpu", "cuda")),
    default=None,
    help="Where an ONNX model runs (model: {onnx}): cuda needs onnxruntime-gpu [the model's "
    "device:, auto].",
)
@click.option(
    "--asset",
    default=None,
    help="SRC a STAC ItemCollection JSON: the asset key whose GeoTIFFs make the mosaic.",
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
    dashboard,
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
    device,
    asset,
    quiet,
):
    """Segment SRC (a GeoTIFF, or its URL: s3://, gs://, az://, https://) into DST
    (a folder, or a prefix in object storage: s3://bucket/out/, gs://, az://):
    labels.zarr, objects.parquet, run.json.

    SRC may also be a mosaic of GeoTIFFs read as one image: a directory, a quoted
    glob ('tiles/*.tif'), @LIST (a text file of paths), a .vrt, or a STAC JSON
    file with --asset.
    """
    from tiler import api, presets  # here: `tiler --help` imports none of a run's stacks

    described = output.DEFAULT_PIPELINE if config is None else f"config {config}"
    if preset is not None:
        if config is not None:
            raise click.UsageError("use --config or --preset, not both")
        config = presets.load(preset)
        described = f"preset {preset}"
    if cluster is not None and scheduler is not None:
        raise click.UsageError("use --scheduler or --cluster, not both")
    if cluster is not None and dashboard:
        raise click.UsageError("--dashboard starts a local cluster: use it without --cluster")
    if overwrite and resume:
        raise click.UsageError("use --overwrite or --resume, not both")
    if assume_crs is not None and pixel_only:
        raise click.UsageError("use --assume-crs or --pixel-only, not both")
    result = api.run(
        src,
        dst,
        config,
        chunk_size=chunk_size,
        scheduler=cluster
        or scheduler_address(
            scheduler,
            dashboard,
            workers=workers,
            memory_limit=memory_limit,
            performance_report=performance_report,
        ),
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
        device=device,
        asset=asset,
        log=output.log(quiet),
        warn=output.warning,
    )
    for line in output.summary(result, described):
        click.echo(line)


@click.command()
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
@dashboard_option
@quiet_option
def demo(size, out, chunk_size, workers, scheduler, dashboard, quiet):
    """Run the plant preset on a synthetic row-crop field, and check a real NEON tile's result.

    Each result is scored against its ground truth and the score printed.
    """
    from tiler import api, presets
    from tiler import demo as checks
    from tiler.cluster import executor_for
    from tiler.synthetic import SyntheticField, write_geotiff

    out.mkdir(parents=True, exist_ok=True)
    field = SyntheticField(height=size, width=size)
    src = out / f"synthetic-field-{size}.tif"
    if not src.exists():
        started = time.perf_counter()
        output.echo(f"generating {src} ({size} x {size} px, RGBA, deflate) ...")
        write_geotiff(field, src)
        output.echo(f"  done in {time.perf_counter() - started:.1f} s")
    log = output.log(quiet)
    plants = "row-crop-plants"
    runs = [("synthetic row-crop field", src, out / "synthetic-field", plants)]
    with resources.as_file(checks.NEON_TILE) as neon:
        runs.append(("real NEON tile (SJER, oak savanna)", neon, out / "neon-sjer-477", None))
        address = scheduler_address(scheduler, dashboard, workers=workers)
        with executor_for(address, workers=workers, log=log) as executor:
            for title, path, dst, preset in runs:
                output.echo(f"{title}: {path}")
                result = api.run(
                    path,
                    dst,
                    None if preset is None else presets.load(preset),
                    chunk_size=chunk_size,
                    client=executor.scheduler,
                    overwrite=True,
                    log=log,
                    warn=output.warning,
                )
                click.echo(f"== {title}")
                described = output.DEFAULT_PIPELINE if preset is None else f"preset {preset}"
                for line in output.summary(result, described):
                    click.echo(line)
                objects = api.read_objects(dst)
                if path == src:
                    lines = checks.field_check(field, objects)
                else:
                    lines = checks.neon_check(objects, result.shape)
                for line in lines:
                    click.echo(line)
    from tiler import report as reporting
    from tiler.analysis import lines as stand_lines
    from tiler.stand import Settings
    from tiler.synthetic import plots

    fields = out / "synthetic-plots.geojson"
    plots(field).to_file(fields)
    nominal = Settings(plant_spacing=field.plant_spacing * field.unit_m)
    result = reporting.build(out / "synthetic-field", fields, "plot", overwrite=True,
                             stand=nominal, log=log)  # fmt: skip
    click.echo("== plant count report and stand along the rows, six trial plots of the "
               "synthetic field")  # fmt: skip
    assert result.stand is not None
    for line in [*stand_lines(result.stand), *checks.stand_check(field, result.stand)]:
        click.echo(line)
    click.echo(f"fields:     {fields}")
    click.echo(f"rows:       {result.stand.rows_path}")
    click.echo(f"report:     {result.html}")
    click.echo(f"outputs under {out.resolve()}")
