"""Options that more than one command takes, written once."""

from __future__ import annotations

import os
from pathlib import Path

import click

from tiler.cluster import default_scheduler
from tiler.defaults import DEFAULT_CHUNK_SIZE

scheduler_option = click.option(
    "--scheduler",
    default=None,
    metavar="threads|local|sync|tcp://HOST:PORT|tls://HOST:PORT",
    help="Where tasks run: threads in this process (default), a LocalCluster on 127.0.0.1 "
    "with its dashboard (the default with --workers N>1, --memory-limit or --dashboard), the "
    "synchronous scheduler, or an existing dask.distributed scheduler (also "
    "DASK_SCHEDULER_ADDRESS).",
)
dashboard_option = click.option(
    "--dashboard",
    is_flag=True,
    help="Run on a LocalCluster and print the address of its dask dashboard.",
)
workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Local cluster: worker processes [one worker, its threads in this process]; "
    "--cluster: workers to start. Above 1, the default scheduler is a LocalCluster.",
)
threads_option = click.option(
    "--threads-per-worker",
    type=click.IntRange(min=1),
    default=None,
    help="Local cluster: threads per worker; threads: threads [cores / workers].",
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
    help=f"Tile size in pixels (also the Zarr chunk size) [default: {DEFAULT_CHUNK_SIZE}; "
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


def fields_options(command):
    """``--fields`` and ``--field-id``: the field polygons a result is given per field
    (``tiler report``, ``tiler rows``)."""
    command = click.option(
        "--field-id", default=None, help="The column naming each field [field 1, 2, ...]."
    )(command)
    return click.option(
        "--fields",
        type=click.Path(path_type=Path),
        default=None,
        help="Field polygons (GeoPackage, GeoJSON, any CRS). Default: the whole footprint.",
    )(command)


class Quantity(click.ParamType):
    """A number with its unit, in the base unit (``units``: suffix -> factor, a suffix
    that ends another listed before it)."""

    units: dict[str, float] = {}
    examples = ""

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
        self.fail(f"{value!r}: give a {self.name} with its unit, e.g. {self.examples}", param, ctx)


class Metres(Quantity):
    """A length with its unit, ``0.2m`` or ``20cm``, as metres."""

    name = "length"
    units = {"cm": 0.01, "m": 1.0}
    examples = "0.2m or 20cm"


class Kilograms(Quantity):
    """A mass with its unit, ``0.15kg`` or ``150g``, as kilograms."""

    name = "mass"
    units = {"kg": 1.0, "g": 1e-3}
    examples = "0.15kg or 150g"


def scheduler_address(value: str | None, dashboard: bool = False, **asked) -> str:
    """The scheduler named by --scheduler, else by DASK_SCHEDULER_ADDRESS, else the default for
    what was ``asked`` (:func:`tiler.cluster.default_scheduler`: threads, or a LocalCluster)."""
    if dashboard and value not in (None, "local"):
        raise click.UsageError("--dashboard starts a local cluster: use it without --scheduler")
    named = value or os.environ.get("DASK_SCHEDULER_ADDRESS")
    return named or default_scheduler(dashboard=dashboard, **asked)


class Paths(click.Option):
    """A repeatable option that also takes several values at once: ``--images A.tif B.tif``."""

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        option = parser._long_opt[self.opts[0]]
        take_one = option.process

        def take_all(value, state):
            take_one(value, state)
            while state.rargs and not state.rargs[0].startswith("-"):
                take_one(state.rargs.pop(0), state)

        option.process = take_all


def paths_option(name: str, help: str):
    """A required, repeatable option of paths that takes several at once (:class:`Paths`)."""
    return click.option(
        name, cls=Paths, multiple=True, required=True, type=click.Path(path_type=Path), help=help
    )


truth_pixels_option = click.option(
    "--truth-pixels",
    is_flag=True,
    help="CSV truth in pixel coordinates col,row (as the object table's centroid_col/_row).",
)
missing_truth_option = click.option(
    "--missing-truth",
    type=click.Choice(["error", "empty"]),
    default="error",
    show_default=True,
    help="A truth file that does not exist: an error, or an image with no objects "
    "(data sets that omit the file of an empty tile).",
)


class Lengths(click.ParamType):
    """Comma-separated lengths with their units, ``0.5m,1m,2m``, as metres."""

    name = "lengths"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        return tuple(Metres().convert(part, param, ctx) for part in str(value).split(","))


_STAND_OPTIONS = (
    click.option("--row-spacing", type=Metres(), default=None, metavar="LENGTH",
                 help="The rows' spacing, e.g. 0.76m or 76cm [found from the plants]."),
    click.option("--row-angle", type=float, default=None, metavar="DEG",
                 help="The rows' azimuth, degrees clockwise from north [found]."),
    click.option("--plant-spacing", type=Metres(), default=None, metavar="LENGTH",
                 help="Nominal in-row spacing, e.g. 0.18m [the median in-row spacing]."),
    click.option("--seeding-rate", type=float, default=None, metavar="SEEDS_PER_HA",
                 help="Seeds per hectare, for the emergence."),
    click.option("--gap-factor", type=float, default=1.5, show_default=True,
                 help="A gap is an in-row spacing longer than this times the nominal one."),
    click.option("--gap-classes", type=Lengths(), default="0.5m,1m,2m", show_default=True,
                 metavar="LENGTHS", help="Edges of the gap length classes."),
)  # fmt: skip


def stand_options(command):
    """The options of the stand along the rows (``tiler rows``, ``tiler report --rows``);
    :func:`stand_settings` makes their values a :class:`tiler.stand.Settings`."""
    for option in reversed(_STAND_OPTIONS):
        command = option(command)
    return command


def stand_settings(
    row_spacing=None, row_angle=None, plant_spacing=None, seeding_rate=None, gap_factor=1.5,
    gap_classes=(0.5, 1.0, 2.0), **_,
):  # fmt: skip
    """The :class:`tiler.stand.Settings` of :func:`stand_options`' values (others ignored)."""
    from tiler.stand import Settings

    return Settings(
        row_spacing=row_spacing, row_azimuth=row_angle, plant_spacing=plant_spacing,
        seeding_rate=seeding_rate, gap_factor=gap_factor, gap_classes=tuple(gap_classes),
    )  # fmt: skip
