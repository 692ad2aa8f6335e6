"""`tiler synthetic`: synthetic row-crop fields with their plant centres, as training and test data.

Each seed gives one field (:class:`tiler.synthetic.SyntheticField`, drawn with
:meth:`~tiler.synthetic.SyntheticField.at` at the pixel size asked for) as an
RGBA GeoTIFF, ``field-<seed>.tif``, and its crop-plant centres in map
coordinates as ``field-<seed>.csv`` (``x,y``; weeds are not in it), the
layout `tiler train` and `tiler evaluate` read (images and truth paired by
file stem).
"""

from __future__ import annotations

from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import Metres
from tiler.errors import ConfigError


def _seeds(text: str) -> list[int]:
    """``"3"``, ``"1-8"`` or ``"1,4,9-11"`` as a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            span = range(int(first), int(last if dash else first) + 1)
        except ValueError:
            raise ConfigError(
                f"--seeds: expected numbers or ranges like 1-8, got {text!r}"
            ) from None
        if not span:
            raise ConfigError(f"--seeds: empty range {part.strip()!r}")
        seeds.extend(span)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: a seed repeats in {text!r}")
    return seeds


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seeds", default="1", show_default=True, help="Seeds, e.g. 1-8 or 1,4,9-11.")
@click.option(
    "--extent",
    type=Metres(),
    default=50.0,
    show_default=True,
    metavar="LENGTH",
    help="Height and width of each field on the ground (50m).",
)
@click.option(
    "--pixel-size",
    type=Metres(),
    default=0.025,
    show_default=True,
    metavar="LENGTH",
    help="Ground pixel size (2.5cm).",
)
def synthetic(out, seeds, extent, pixel_size):
    """Write synthetic row-crop fields to OUT: field-<seed>.tif and its plant centres
    field-<seed>.csv (x,y in map coordinates), for `tiler train` and `tiler evaluate`."""
    import pandas as pd

    from tiler.io.atomic import write_text
    from tiler.synthetic import SyntheticField, write_geotiff

    if not (extent > 0 and pixel_size > 0 and extent / pixel_size >= 16):
        raise ConfigError(f"--extent {extent:g} m at {pixel_size:g} m: under 16 pixels across")
    out.mkdir(parents=True, exist_ok=True)
    for seed in _seeds(seeds):
        field = SyntheticField.at(pixel_size, (extent, extent), seed=seed)
        tif = write_geotiff(field, out / f"field-{seed}.tif")
        xy = field.plant_xy()
        table = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).to_csv(index=False)
        write_text(out / f"field-{seed}.csv", table)
        output.echo(f"{tif} ({field.height} x {field.width} px), {len(xy)} plants")
