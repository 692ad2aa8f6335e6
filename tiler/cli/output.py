"""What the commands print: the summary of a run, and lines on stderr (log, warnings)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tiler import api

# How a summary names the default pipeline.
DEFAULT_PIPELINE = "default (`tiler pipeline`)"


def echo(message: str) -> None:
    click.echo(message, err=True)


def warning(message: str) -> None:
    """A warning: shown even with --quiet (a run goes on, but the user should know)."""
    echo(f"tiler: warning: {message}")


def log(quiet: bool) -> Callable[[str], None]:
    """The API's log: progress lines on stderr, none with --quiet but the one that says how
    to continue an interrupted run (else -q hides how to finish it)."""
    from tiler.resumption import RESUME_HINT  # here: `tiler --help` reads no run's files

    def write(message: str) -> None:
        if not quiet or message.endswith(RESUME_HINT):
            echo(f"  {message}")

    return write


def threshold_text(threshold) -> str:
    if threshold is None:
        return "per pixel (local threshold or model)"
    if isinstance(threshold, tuple):
        return ", ".join(f"{t:.6g}" for t in threshold)
    return f"{threshold:.6g}"


def summary(result: api.RunResult, pipeline: str) -> list[str]:
    """The lines `tiler run` prints; ``pipeline`` says which ran (default, preset, config)."""
    h, w = result.shape
    return [
        f"pipeline:   {pipeline}",
        f"objects:    {result.n_objects}",
        f"threshold:  {threshold_text(result.threshold)}",
        f"image:      {h} x {w} px ({h * w / 1e6:.1f} MP) in {result.n_tiles} tile(s)",
        f"time:       {result.seconds:.1f} s ({result.megapixels_per_second:.1f} MP/s)",
        f"labels:     {result.labels}",
        f"table:      {result.objects}",
        f"manifest:   {result.manifest}",
        f"GIS:        tiler export {result.dst} --cog labels.tif (QGIS/GDAL cannot read Zarr v3)",
    ]
