"""`tiler evaluate`: score a preset or pipeline against ground-truth points (calibration)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import click

from tiler.cli import output
from tiler.cli.options import (
    Metres,
    chunk_option,
    missing_truth_option,
    paths_option,
    quiet_option,
    scheduler_address,
    scheduler_option,
    truth_pixels_option,
)
from tiler.errors import OutputError

OUT_FORMATS = (".csv", ".json")


@click.command()
@click.argument("pipeline", metavar="PRESET|PIPELINE.yaml")
@paths_option("--images", "The GeoTIFFs to run (projected CRS).")
@paths_option(
    "--truth",
    "One truth file per image, in order: CSV x,y (map coordinates), or points or "
    "polygons in any vector format (GeoJSON, GPKG, shapefile, GeoParquet; reprojected).",
)
@truth_pixels_option
@missing_truth_option
@click.option(
    "--within",
    "within_m",
    type=Metres(),
    required=True,
    metavar="LENGTH",
    help="Largest distance of a match, in metres or cm (3m, 50cm).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="PATH.csv|.json",
    help="Write the per-image table (CSV), or it and the pooled row (JSON).",
)
@click.option(
    "--keep",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Keep each run in DIR/<image name> [a temporary folder].",
)
@chunk_option
@scheduler_option
@quiet_option
def evaluate(
    pipeline,
    images,
    truth,
    truth_pixels,
    missing_truth,
    within_m,
    out,
    keep,
    chunk_size,
    scheduler,
    quiet,
):
    """Score PRESET or PIPELINE.yaml against your own counts: precision, recall, F1,
    count error and RMSE of positions, per image and pooled, matching detections to
    truth points one to one within --within metres."""
    from tiler.evaluate import evaluate as run_evaluation

    if out is not None and out.suffix.lower() not in OUT_FORMATS:
        raise OutputError(f"{out}: unknown table format; use .csv or .json")
    result = run_evaluation(
        pipeline,
        images,
        truth,
        within_m=within_m,
        truth_pixels=truth_pixels,
        missing_empty=missing_truth == "empty",
        keep=keep,
        chunk_size=chunk_size,
        scheduler=scheduler_address(scheduler),
        log=output.log(quiet),
    )
    for line in table(result):
        click.echo(line)
    if out is not None:
        from tiler.io.atomic import write_text

        write_text(out, _json(result) if out.suffix.lower() == ".json" else _csv(result))
        click.echo(f"table:      {out}")


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%" if math.isfinite(value) else "n/a"


def _row(name: str, s, rmse_m: float) -> str:
    rmse = f"{rmse_m:.2f}" if math.isfinite(rmse_m) else "n/a"
    return (
        f"{name:<24} {s.n_truth:>6} {s.n_pred:>6} {s.tp:>6} {s.fp:>6} {s.fn:>6} "
        f"{s.precision:>6.3f} {s.recall:>6.3f} {s.f1:>6.3f} {_pct(s.count_error):>8} {rmse:>7}"
    )


def table(result) -> list[str]:
    """The per-image table and the pooled line."""
    head = (
        f"{'image':<24} {'truth':>6} {'found':>6} {'tp':>6} {'fp':>6} {'fn':>6} "
        f"{'P':>6} {'R':>6} {'F1':>6} {'count':>8} {'RMSE m':>7}"
    )
    return [
        f"pipeline:   {result.pipeline}, matched within {result.within_m:g} m",
        head,
        *(_row(i.name, i.score, i.rmse_m) for i in result.images),
        _row("pooled", result.pooled, result.pooled_rmse_m),
    ]


def _csv(result) -> str:
    rows = result.rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _json(result) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"
