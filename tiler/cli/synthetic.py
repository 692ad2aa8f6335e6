"""`tiler synthetic`: synthetic row-crop fields with their plant centres, as training and test data.

Each seed gives one field (:class:`tiler.synthetic.SyntheticField`, drawn with
:meth:`~tiler.synthetic.SyntheticField.at` at the pixel size asked for) as an
RGBA GeoTIFF, ``field-<seed>.tif``, and its crop-plant centres in map
coordinates as ``field-<seed>.csv`` (``x,y``; weeds are not in it), the
layout `tiler train` and `tiler evaluate` read (images and truth paired by
file stem).
Beside them, the stand as planted (:meth:`~tiler.synthetic.SyntheticField.stand_truth`)
in the field's CRS: ``field-<seed>-rows.geojson``, each crop row as a LineString
from its first to its last plant (``row``, ``plants``, ``length_m``), and
``field-<seed>-gaps.geojson``, every interval between consecutive plants of a row
(``row``, ``length_m``).
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import Metres
from tiler.errors import ConfigError


def _rate_option(flag: str, default: float, help: str):
    """A probability option of the field's layout (checked by :func:`_rate`)."""
    return click.option(flag, type=float, default=default, show_default=True, metavar="RATE",
                        help=help)  # fmt: skip


def _rate(name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name}: a rate is between 0 and 1, got {value:g}")
    return value


def _curvature(text: str) -> tuple[float, float]:
    """``"0.3m,40m"`` as (amplitude, wavelength) in metres."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise click.BadParameter("")
        amplitude, wavelength = (Metres().convert(p, None, None) for p in parts)
    except click.BadParameter:
        raise ConfigError(
            f"--curvature: expected AMPLITUDE,WAVELENGTH lengths like 0.3m,40m, got {text!r}"
        ) from None
    if not (amplitude >= 0 and wavelength > 0):
        raise ConfigError(f"--curvature {text}: needs amplitude >= 0 and wavelength > 0")
    return amplitude, wavelength


def _write_lines(path: Path, columns: dict, lines: list, crs: str) -> None:
    """LineStrings with their columns as GeoJSON, written atomically."""
    import geopandas as gpd
    from shapely.geometry import LineString

    from tiler.io.atomic import partial_name, replacing

    frame = gpd.GeoDataFrame(columns, geometry=[LineString(x) for x in lines], crs=crs)
    with replacing(path, partial_name(path, unique=True)) as tmp:
        frame.to_file(tmp, driver="GeoJSON", layer=path.stem)


def _write_yield(out: Path, field, seed: int, n: int) -> None:
    """The field's known yield (a COG of 5 m cells: yield and its noise-free part), its
    yield-monitor records (points, fault bits in ``fault``: 1 headland, 2 GPS lag, 4 zero)
    and its trial plots with the yield a harvest of each would measure (GeoPackages)."""
    import geopandas as gpd
    from rasterio.crs import CRS

    from tiler.io.atomic import replacing
    from tiler.io.grid_raster import write_cells_cog
    from tiler.synthetic import plots
    from tiler.synthetic_yield import plot_yield, yield_monitor_points, yield_truth

    truth = yield_truth(field, seed=seed)
    a, _, c, _, e, f = tuple(field.transform)[:6]
    write_cells_cog(
        out / f"field-{seed}-yield.tif",
        {"yield_t_ha": truth.yield_t_ha, "signal_t_ha": truth.signal},
        (truth.cell, 0.0, c, 0.0, -truth.cell, f), CRS.from_user_input(field.crs).to_wkt(),
        units={"yield_t_ha": "t/ha", "signal_t_ha": "t/ha"},
        tags={"best_r2": f"{truth.best_r2:.4f}", "noise_sd_t_ha": str(truth.noise_sd)},
    )  # fmt: skip
    records = yield_monitor_points(truth, n=n, seed=seed)
    xy = gpd.points_from_xy(records.pop("x"), records.pop("y"))
    layers = {
        "yield-points": gpd.GeoDataFrame(records, geometry=xy, crs=field.crs),
        "yield-plots": plots(field).assign(
            yield_t_ha=lambda p: plot_yield(truth, list(p.geometry))
        ),
    }
    for name, frame in layers.items():
        path = out / f"field-{seed}-{name}.gpkg"
        with replacing(path, path.with_name(f".{path.stem}.partial.gpkg")) as tmp:
            frame.to_file(tmp, driver="GPKG", layer=name)


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
@click.option(
    "--row-angle",
    type=float,
    default=0.0,
    show_default=True,
    metavar="DEG",
    help="Rows' direction, degrees counter-clockwise from east (the image's +x).",
)
@click.option(
    "--curvature",
    default=None,
    metavar="AMPLITUDE,WAVELENGTH",
    help="Sideways sine wave of the rows, e.g. 0.3m,40m (default: straight).",
)
@_rate_option("--skips", 0.0, "Probability that a slot starts a skip of 2 to 6 missing plants.")
@_rate_option("--doubles", 0.0, "Probability that a plant has a second one next to it.")
@_rate_option("--missing", 0.07, "Probability that a single plant is missing.")
@_rate_option("--weeds", 0.12, "Probability of a weed in each 1 m slot between two rows.")
@click.option(
    "--yield",
    "yield_points",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Also its known yield on 5 m cells (field-<seed>-yield.tif), N simulated "
    "yield-monitor records with their faults (field-<seed>-yield-points.gpkg) and the yield "
    "harvested plots would measure (field-<seed>-yield-plots.gpkg).",
)
def synthetic(
    out, seeds, extent, pixel_size, row_angle, curvature, skips, doubles, missing, weeds,
    yield_points,
):  # fmt: skip
    """Write synthetic row-crop fields to OUT: field-<seed>.tif, its plant centres
    field-<seed>.csv (x,y in map coordinates), for `tiler train` and `tiler evaluate`,
    and its rows and in-row gaps, field-<seed>-rows.geojson and field-<seed>-gaps.geojson."""
    import numpy as np
    import pandas as pd

    from tiler.io.atomic import write_text
    from tiler.synthetic import SyntheticField, write_geotiff

    if not (extent > 0 and pixel_size > 0 and extent / pixel_size >= 16):
        raise ConfigError(f"--extent {extent:g} m at {pixel_size:g} m: under 16 pixels across")
    if not math.isfinite(row_angle):
        raise ConfigError(f"--row-angle: expected degrees, got {row_angle}")
    unit_m = SyntheticField.unit_m
    amplitude, wavelength = _curvature(curvature) if curvature else (0.0, 1000.0 * unit_m)
    layout = dict(
        row_angle=row_angle, row_curvature=(amplitude / unit_m, wavelength / unit_m),
        skip_rate=_rate("--skips", skips), double_rate=_rate("--doubles", doubles),
        missing_fraction=_rate("--missing", missing), weed_density=_rate("--weeds", weeds),
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for seed in _seeds(seeds):
        field = SyntheticField.at(pixel_size, (extent, extent), seed=seed, **layout)
        tif = write_geotiff(field, out / f"field-{seed}.tif")
        xy = field.plant_xy()
        table = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}).to_csv(index=False)
        write_text(out / f"field-{seed}.csv", table)
        truth = field.stand_truth()
        rows = {"row": [r.row for r in truth.rows], "plants": [r.plants for r in truth.rows],
                "length_m": [r.length_m for r in truth.rows]}  # fmt: skip
        _write_lines(out / f"field-{seed}-rows.geojson", rows,
                     [r.line for r in truth.rows], field.crs)  # fmt: skip
        gaps = {"row": truth.gap_row, "length_m": truth.gap_length_m}
        ends = np.stack([truth.gap_start_xy, truth.gap_end_xy], axis=1)
        _write_lines(out / f"field-{seed}-gaps.geojson", gaps, list(ends), field.crs)
        if yield_points:
            _write_yield(out, field, seed, yield_points)
        output.echo(f"{tif} ({field.height} x {field.width} px), {len(xy)} plants")
