"""Before a run: `tiler pipeline`, `tiler presets` (what to run), `tiler validate` (the input)."""

from __future__ import annotations

import click

from tiler.cli.options import assume_crs_option, pixel_only_option, quiet_option
from tiler.defaults import DEFAULT_MAX_PIXELS


@click.command()
@click.option("--preset", "-p", default=None, help="Print this preset instead.")
def pipeline(preset):
    """Print the default pipeline file (or a preset's), to copy and adapt."""
    from tiler import presets
    from tiler.config import DEFAULT_PIPELINE_YAML

    click.echo(DEFAULT_PIPELINE_YAML if preset is None else presets.text(preset), nl=False)


@click.command("presets")
def list_presets():
    """List the shipped pipelines for `tiler run --preset NAME`."""
    from tiler import presets

    width = max(len(name) for name in presets.names())
    for name in presets.names():
        click.echo(f"{name:<{width}}  {presets.describe(name)}")


@click.command()
@click.argument("src", type=click.Path(path_type=str))  # a path or a URL (s3://, https://...)
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
