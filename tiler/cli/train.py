"""`tiler train`: fit the small U-Net to annotated GeoTIFFs; write OUT.onnx and OUT.md."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import (
    Metres,
    missing_truth_option,
    paths_option,
    quiet_option,
    truth_pixels_option,
)
from tiler.errors import OutputError


class _Bands(click.ParamType):
    """``1,2,3,4``: file bands (1-based), in the model's input order."""

    name = "bands"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            bands = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r}: give band numbers, e.g. 1,2,3,4", param, ctx)
        if not bands or min(bands) < 1:
            self.fail(f"{value!r}: band numbers start at 1", param, ctx)
        return bands


class _Pixels(click.ParamType):
    """A length in pixels: ``3px`` or ``3``."""

    name = "px"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        text = str(value).strip().lower().removesuffix("px")
        try:
            px = float(text)
        except ValueError:
            self.fail(f"{value!r}: give a length in pixels, e.g. 3px", param, ctx)
        if not px > 0:
            self.fail(f"{value!r}: must be > 0", param, ctx)
        return px


@click.command()
@click.argument("out", metavar="OUT.onnx", type=click.Path(path_type=Path))
@paths_option("--images", "GeoTIFFs, or folders of them.")
@paths_option(
    "--truth",
    "Annotations, or folders of them, paired with the images by file stem: CSV "
    "x,y (map coordinates), or points, boxes or polygons in any vector format.",
)
@truth_pixels_option
@missing_truth_option
@click.option(
    "--list",
    "train_list",
    type=click.Path(path_type=Path),
    help="Train on these stems (one per line) [every image].",
)
@click.option(
    "--val-list", type=click.Path(path_type=Path), help="Validate on these stems (one per line)."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.1,
    show_default=True,
    help="Without --val-list: the share held out.",
)
@click.option(
    "--kind",
    type=click.Choice(["points", "mask"]),
    default="points",
    show_default=True,
    help="Learn a point confidence map, or a mask from polygons.",
)
@click.option(
    "--bands",
    type=_Bands(),
    default=None,
    help="File bands in input order, 1-based [the non-alpha bands].",
)
@click.option(
    "--band-names",
    default=None,
    metavar="NAMES",
    help="The bands' names in input order, for the model file (red,green,blue,nir) "
    "[the files' colour interpretation, else bandN].",
)
@click.option(
    "--sigma",
    type=_Pixels(),
    default=3.0,
    show_default=True,
    help="Width of the Gaussian around each point, px.",
)
@click.option("--epochs", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Stop after this many epochs without a better val F1.",
)
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True)
@click.option(
    "--patch",
    type=click.IntRange(8),
    default=256,
    show_default=True,
    help="Side of the training tiles, px.",
)
@click.option("--depth", type=click.IntRange(1, 6), default=3, show_default=True)
@click.option("--width", type=click.IntRange(1), default=16, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=3e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads for torch [torch's default].",
)
@click.option(
    "--within",
    "within_m",
    type=Metres(),
    default="6m",
    show_default=True,
    help="Largest distance of a match in validation (3m, 50cm).",
)
@click.option(
    "--min-distance",
    "min_distance_m",
    type=Metres(),
    default="2.4m",
    show_default=True,
    help="Peaks closer than this are one object.",
)
@click.option("--name", default=None, help="The model's name [OUT's stem].")
@click.option("--description", default="", help="One line on what it finds.")
@click.option("--licence", default="", help="The data's licence, for the model card.")
@quiet_option
@click.pass_context
def train(ctx, out, **options):
    """Fit a small U-Net (121k parameters) to annotated GeoTIFFs and write OUT.onnx, a tiler
    model file with its metadata, and the model card OUT.md. The decode threshold is chosen
    on the validation images only."""
    from tiler.train import require_torch

    require_torch()
    from tiler.train.loop import Recipe
    from tiler.train.net import NetConfig
    from tiler.train.run import Files, train_model

    if out.suffix.lower() != ".onnx":
        raise OutputError(f"{out}: the model file must end in .onnx")
    o = options
    files = Files(
        images=o["images"],
        truth=o["truth"],
        truth_pixels=o["truth_pixels"],
        missing_truth=o["missing_truth"],
        bands=o["bands"],
        band_names=None if o["band_names"] is None else o["band_names"].split(","),
        train_list=o["train_list"],
        val_list=o["val_list"],
        val_fraction=o["val_fraction"],
    )
    recipe = Recipe(
        kind=o["kind"],
        sigma_px=o["sigma"],
        epochs=o["epochs"],
        patience=o["patience"],
        batch=o["batch"],
        patch=o["patch"],
        lr=o["lr"],
        seed=o["seed"],
        threads=o["threads"],
        within_m=o["within_m"],
        min_distance_m=o["min_distance_m"],
        net=NetConfig(depth=o["depth"], width=o["width"]),
    )
    log = output.log(o["quiet"])
    summary = train_model(
        out,
        files,
        recipe,
        name=o["name"] or out.stem,
        description=o["description"],
        licence=o["licence"],
        command=_command(ctx, out),
        quiet=o["quiet"],
        log=log,
    )
    val = summary["val"]
    click.echo(
        f"val:        P {val['precision']:.3f} R {val['recall']:.3f} F1 {val['f1']:.3f} "
        f"count {val['count_error']:+.1%} at threshold {val['threshold']:g} "
        f"(epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['seconds_per_epoch']:.1f} s/epoch)"
    )
    click.echo(f"model:      {summary['model']}")
    click.echo(f"card:       {summary['card']}")


def _command(ctx: click.Context, out: Path) -> str:
    """The command as given (the options on the command line, in a canonical order)."""
    words = ["tiler", "train", str(out)]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name == "out" or source != click.core.ParameterSource.COMMANDLINE:
            continue
        value, flag = ctx.params[param.name], param.opts[0]
        if isinstance(param, click.Option) and param.is_flag:
            words.append(flag)
        elif isinstance(value, tuple) and param.name == "bands":
            words += [flag, ",".join(map(str, value))]
        elif isinstance(param.type, Metres):
            words += [flag, f"{value:g}m"]
        elif isinstance(param.type, _Pixels):
            words += [flag, f"{value:g}px"]
        elif isinstance(value, tuple):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)
