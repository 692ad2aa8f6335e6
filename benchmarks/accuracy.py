"""How accurate is tiler? Its detected objects scored against ground-truth points.

    python -m benchmarks.accuracy --out benchmarks/results \\
        [--pipeline-naip PRESET|FILE.yaml] [--pipeline-field PRESET|FILE.yaml]

Three datasets, each run through ``tiler.run`` and scored with
:mod:`tiler.accuracy` (optimal one-to-one matching of object centroids, the
``x``/``y`` columns of ``objects.parquet``, to truth points within a radius,
or into truth boxes):

* **Tree crowns at two pixel sizes**, one pipeline (default: the ``tree-crowns-classical``
  preset, its sizes in ground units; ``benchmarks/pipelines/naip-trees.yaml``
  is the best NAIP variant without watershed splitting, for comparison):
  the 8 NAIP 2020 tiles of ``tests/data/urban_trees_naip`` (256 x 256 px,
  0.6 m, R, G, B, NIR) against the annotated tree points in
  ``json/<tile>.json``, within 3 m; and the NEON tile ``tiler/data/neon_sjer_477.tif``
  (400 x 400 px, 0.1 m, oak savanna) against its 7 crown boxes, a centroid
  counting in a box it lies in (as ``tiler demo`` scores it).
* **Synthetic row-crop field**: a 4000 x 4000 ``tiler.synthetic.SyntheticField``
  (2.5 cm pixels), and a 40 m x 40 m field of the same seed drawn at 1, 2, 2.5
  and 4 cm (``SyntheticField.at``: the same plants at any pixel size), against
  its known crop-plant centres, within half the plant spacing (0.3125 m);
  default pipeline: the ``row-crop-plants`` preset. Weeds are not in the
  truth: detecting one is a false positive.

Scores are per tile and pooled (sums of tp/fp/fn, then precision, recall, F1).
Writes ``accuracy.md`` and ``accuracy.json`` to ``--out`` and prints the
Markdown. The NAIP pipelines tried, with their overall F1, are listed in the
"Accuracy" section of ``benchmarks/README.md``.

In ``bishop_2020_3`` and ``eureka_2020_20`` band 4 (NIR) is tagged as alpha:
tiler's default band selection leaves it out, and GDAL's dataset mask (the
valid pixels) is ``NIR > 0``. The harness changes nothing about that: a
pipeline that needs NIR must list it in ``bands:`` and run with ``--mask nodata``
(an alpha band takes no spectral role while it is the mask), and the report
notes the share of valid pixels of such tiles.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pyproj import CRS

import tiler
from tiler import demo, presets
from tiler.accuracy import Score, combine_scores, match_points
from tiler.config import Pipeline, load_pipeline
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import GeoTiffSource
from tiler.synthetic import SyntheticField, write_geotiff

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NAIP_DIR = ROOT / "tests" / "data" / "urban_trees_naip"
NAIP_RADIUS_M = 3.0
FIELD_SIZE = 4000
FIELD_SEED = 0
FIELD_EXTENT_M = 40.0  # the side of the field drawn at each of FIELD_PIXEL_SIZES
FIELD_PIXEL_SIZES = (0.01, 0.02, 0.025, 0.04)
NEON_NAME = "neon_sjer_477 (0.1 m, 7 crown boxes)"


@dataclass(frozen=True)
class TileScore:
    """The score of one input, with what the run reported."""

    name: str
    score: Score
    threshold: float
    seconds: float
    radius: float
    dst: Path
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.score.to_dict(),
            "radius_m": self.radius,
            "threshold": self.threshold,
            "seconds": round(self.seconds, 3),
            "notes": self.notes,
        }


# ---------------------------------------------------------------------------
# Inputs and truth
# ---------------------------------------------------------------------------


def naip_tiles(folder: Path = NAIP_DIR) -> list[tuple[Path, Path]]:
    """``(GeoTIFF, GeoJSON truth)`` of every NAIP tile, sorted by name."""
    pairs = []
    for tif in sorted(folder.glob("*.tif")):
        truth = folder / "json" / f"{tif.stem}.json"
        if not truth.is_file():
            raise FileNotFoundError(f"{truth}: no ground truth for {tif.name}")
        pairs.append((tif, truth))
    if not pairs:
        raise FileNotFoundError(f"{folder}: no NAIP tiles")
    return pairs


def read_truth_points(path: Path, crs_wkt: str | None = None) -> np.ndarray:
    """The ``(N, 2)`` map ``(x, y)`` of the Point features of a GeoJSON file.

    When ``crs_wkt`` is given, the file's ``crs`` member must name the same
    CRS (the points are used as they are, never reprojected).
    """
    data = json.loads(path.read_text())
    if crs_wkt is not None:
        name = data.get("crs", {}).get("properties", {}).get("name")
        if name is None or not CRS.from_user_input(name).equals(
            CRS.from_wkt(crs_wkt), ignore_axis_order=True
        ):
            raise ValueError(f"{path}: CRS {name!r} is not the raster's")
    points = []
    for feature in data["features"]:
        geometry = feature["geometry"]
        if geometry["type"] != "Point":
            raise ValueError(f"{path}: expected Point features, got {geometry['type']}")
        points.append(geometry["coordinates"][:2])
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def field_truth_points(synthetic: SyntheticField) -> np.ndarray:
    """Map ``(x, y)`` of the field's crop plants (:meth:`SyntheticField.plant_xy`)."""
    return synthetic.plant_xy()


def _inside(points: np.ndarray, source: GeoTiffSource) -> bool:
    """Whether every point lies within the raster's bounds (north-up rasters)."""
    a, _, c, _, e, f = source.transform
    x0, x1 = sorted((c, c + a * source.width))
    y0, y1 = sorted((f, f + e * source.height))
    x, y = points.T
    return bool(((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)).all())


# ---------------------------------------------------------------------------
# Running and scoring
# ---------------------------------------------------------------------------


def detect(
    src: Path, dst: Path, pipeline: Pipeline, *, scheduler: str = "sync"
) -> tuple[np.ndarray, tiler.RunResult]:
    """Run tiler and return the ``(N, 2)`` map ``(x, y)`` of the objects' centroids."""
    result = tiler.run(src, dst, config=pipeline, scheduler=scheduler, overwrite=True)
    objects = tiler.read_objects(dst)
    return np.column_stack([objects["x"].to_numpy(), objects["y"].to_numpy()]), result


def score_naip_tile(
    tif: Path,
    truth: Path,
    pipeline: Pipeline,
    workdir: Path,
    *,
    radius: float = NAIP_RADIUS_M,
) -> TileScore:
    """Run ``pipeline`` on one NAIP tile and score its centroids against the truth points."""
    source = open_geotiff(tif)
    truth_xy = read_truth_points(truth, source.crs_wkt)
    if not _inside(truth_xy, source):
        raise ValueError(f"{truth}: truth points outside {tif.name}")
    dst = workdir / tif.stem
    pred_xy, result = detect(tif, dst, pipeline)
    score = match_points(pred_xy, truth_xy, radius).score()
    notes = _alpha_notes(source, pipeline)
    return TileScore(tif.stem, score, result.threshold, result.seconds, radius, dst, notes)


def _alpha_notes(source: GeoTiffSource, pipeline: Pipeline) -> list[str]:
    """What an alpha-tagged band does to a run: bands used and valid pixels."""
    if not source.alpha_bands:
        return []
    bands = pipeline.resolve_bands(source.count, source.alpha_bands, source=source.name).bands
    _, valid = source.read_all(bands)
    alpha = ", ".join(map(str, source.alpha_bands))
    return [
        f"band {alpha} is tagged alpha, so the dataset mask is band {alpha} > 0: "
        f"{int(valid.sum())} of {valid.size} pixels valid; bands used {list(bands)}"
    ]


def score_field(
    synthetic: SyntheticField, pipeline: Pipeline, workdir: Path, *, scheduler: str = "threads"
) -> TileScore:
    """Write the synthetic field, run ``pipeline`` on it, and score against its plant centres.

    The radius is half the plant spacing in metres.
    """
    tif = write_geotiff(synthetic, workdir / "field.tif")
    radius = 0.5 * synthetic.plant_spacing * synthetic.unit_m
    dst = workdir / "field-out"
    pred_xy, result = detect(tif, dst, pipeline, scheduler=scheduler)
    score = match_points(pred_xy, field_truth_points(synthetic), radius).score()
    name = (
        f"field {synthetic.height * synthetic.pixel_size:g} m x "
        f"{synthetic.width * synthetic.pixel_size:g} m at {100 * synthetic.pixel_size:g} cm "
        f"({synthetic.height} x {synthetic.width} px), seed {synthetic.seed}"
    )
    return TileScore(name, score, result.threshold, result.seconds, radius, dst)


def score_fields(
    pipeline: Pipeline, workdir: Path, size: int, log: Callable[[str], None] = print
) -> list[TileScore]:
    """The ``size``-pixel field at 2.5 cm, then the same field's corner at each pixel size."""
    fields = [SyntheticField(height=size, width=size, seed=FIELD_SEED)]
    extent = (FIELD_EXTENT_M, FIELD_EXTENT_M)
    fields += [SyntheticField.at(ps, extent, seed=FIELD_SEED) for ps in FIELD_PIXEL_SIZES]
    scores = []
    for i, synthetic in enumerate(fields):
        (workdir / f"field-{i}").mkdir()
        scores.append(score_field(synthetic, pipeline, workdir / f"field-{i}"))
        log(f"  {scores[-1].name}: F1 {scores[-1].score.f1:.3f}")
    return scores


def score_neon(pipeline: Pipeline, workdir: Path) -> TileScore:
    """The NEON tile's objects against its 7 truth crown boxes (centroid inside, one to one)."""
    dst = workdir / "neon"
    with resources.as_file(demo.NEON_TILE) as tif:
        result = tiler.run(tif, dst, config=pipeline, scheduler="sync", overwrite=True)
    score = demo.neon_score(tiler.read_objects(dst))
    return TileScore(NEON_NAME, score, result.threshold, result.seconds, math.nan, dst)


def score_naip(
    pipeline: Pipeline, workdir: Path, log: Callable[[str], None] = print
) -> list[TileScore]:
    """Score every NAIP tile (one after another, each with the sync scheduler)."""
    scores = []
    for tif, truth in naip_tiles():
        scores.append(score_naip_tile(tif, truth, pipeline, workdir))
        log(f"  {tif.stem}: F1 {scores[-1].score.f1:.3f}")
    return scores


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{100 * value:+.1f} %" if math.isfinite(value) else "n/a"


def table(rows: list[tuple[str, Score]]) -> list[str]:
    """A Markdown table of scores, one row per ``(name, score)``."""
    lines = [
        "| input | truth | detected | count error | TP | FP | FN | precision | recall | F1 "
        "| mean offset |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows:
        offset = f"{s.mean_distance:.2f} m" if math.isfinite(s.mean_distance) else "n/a"
        lines.append(
            f"| {name} | {s.n_truth} | {s.n_pred} | {_pct(s.count_error)} | {s.tp} | {s.fp} "
            f"| {s.fn} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {offset} |"
        )
    return lines


def _versions() -> str:
    names = (
        "tiler",
        "numpy",
        "scipy",
        "scikit-image",
        "opencv-python-headless",
        "rasterio",
        "dask",
    )
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(found) + f"; Python {platform.python_version()}"


def _yaml(pipeline: Pipeline) -> list[str]:
    return [
        "```yaml",
        yaml.safe_dump(pipeline.to_dict(), sort_keys=False, default_flow_style=None).rstrip(),
        "```",
    ]


def report(
    naip: list[TileScore],
    neon: TileScore,
    fields: list[TileScore],
    naip_pipeline: tuple[str, Pipeline],
    field_pipeline: tuple[str, Pipeline],
) -> tuple[str, dict[str, Any]]:
    """The Markdown report and the JSON data."""
    overall = combine_scores(t.score for t in naip)
    notes = [f"- {t.name}: {n}" for t in naip for n in t.notes]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        "# Accuracy: tiler's objects against ground-truth points",
        "",
        f"- Date: {created}",
        f"- Versions: {_versions()}",
        "- Matching: optimal one-to-one (maximum number of pairs, then minimum total "
        "distance) of object centroids to truth points, a pair counting when its distance "
        "is at most the radius; count error = (detected - truth) / truth; F1 = 2 TP / "
        "(2 TP + FP + FN); overall = counts summed over tiles, then the measures.",
        "",
        f"## NAIP urban trees ({len(naip)} tiles, 0.6 m, radius {NAIP_RADIUS_M:g} m)",
        "",
        *table([(t.name, t.score) for t in naip] + [("**overall**", overall)]),
        "",
        *(notes and ["Notes:", "", *notes, ""]),
        "## NEON oak savanna (0.1 m), the same pipeline",
        "",
        *table([(neon.name, neon.score)]),
        "",
        "Truth: 7 crown boxes; an object counts when its centroid lies in a box (one to "
        "one), as `tiler demo` scores it. Leafless oaks on green grass: see README, Accuracy.",
        "",
        f"Pipeline ({naip_pipeline[0]}), sizes as written:",
        "",
        *_yaml(naip_pipeline[1]),
        "",
        f"## Synthetic row-crop field (radius {fields[0].radius:g} m = half the plant spacing)",
        "",
        *table([(f.name, f.score) for f in fields]),
        "",
        f"The others are one {FIELD_EXTENT_M:g} m x {FIELD_EXTENT_M:g} m field of the same "
        "seed drawn at each pixel size (`SyntheticField.at`: the same plants, of the same "
        "size, at the same map positions), scored with the same pipeline file.",
        "",
        "Truth: the crop plants (`SyntheticField.plant_centres`); weeds are not in the "
        "truth, so each weed detected is a false positive.",
        "",
        f"Pipeline ({field_pipeline[0]}), sizes as written:",
        "",
        *_yaml(field_pipeline[1]),
        "",
    ]
    data = {
        "created": created,
        "versions": _versions(),
        "naip": {
            "radius_m": NAIP_RADIUS_M,
            "pipeline": naip_pipeline[1].to_dict(),
            "pipeline_source": naip_pipeline[0],
            "tiles": [t.to_dict() for t in naip],
            "overall": overall.to_dict(),
        },
        "neon": neon.to_dict(),
        "field": {
            "pipeline": field_pipeline[1].to_dict(),
            "pipeline_source": field_pipeline[0],
            "runs": [f.to_dict() for f in fields],
        },
    }
    return "\n".join(lines), data


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pipeline(choice: str | None, default: str) -> tuple[str, Pipeline]:
    """A preset by name (default ``default``) or a pipeline file, and how to show it."""
    choice = choice or default
    if choice in presets.names():
        return f"preset {choice} (tiler/data/presets/{choice}.yaml)", presets.load(choice)
    chosen = Path(choice)
    try:
        shown = str(chosen.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(chosen)
    return shown, load_pipeline(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--pipeline-naip",
        help="preset name or pipeline file (default: preset tree-crowns-classical)",
    )
    parser.add_argument(
        "--pipeline-field", help="preset name or pipeline file (default: preset row-crop-plants)"
    )
    parser.add_argument("--field-size", type=int, default=FIELD_SIZE, help="field side in px")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        naip_pipeline = _pipeline(args.pipeline_naip, "tree-crowns-classical")
        field_pipeline = _pipeline(args.pipeline_field, "row-crop-plants")
        with tempfile.TemporaryDirectory(prefix="tiler-accuracy-") as tmp:
            workdir = Path(tmp)
            print("NAIP urban trees:", flush=True)
            naip = score_naip(naip_pipeline[1], workdir)
            print("NEON tile:", flush=True)
            neon = score_neon(naip_pipeline[1], workdir)
            print("synthetic field:", flush=True)
            fields = score_fields(field_pipeline[1], workdir, args.field_size)
    except tiler.TilerError as exc:  # e.g. an NDVI pipeline without band 4 in 'bands:'
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text, data = report(naip, neon, fields, naip_pipeline, field_pipeline)
    data["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.md").write_text(text)
    (args.out / "accuracy.json").write_text(json.dumps(_finite(data), indent=2) + "\n")
    print()
    print(text)
    print(f"written: {args.out / 'accuracy.md'}, {args.out / 'accuracy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
