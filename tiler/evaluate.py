"""Score a pipeline against ground truth: `tiler evaluate`, and how a user calibrates tiler.

:func:`evaluate` runs each image through :func:`tiler.run`, reads the detected
object centroids (the ``x``/``y`` columns of ``objects.parquet``; a points
model's peaks, ``peak_x``/``peak_y``, where the table has them) and the
truth points (:mod:`tiler.io.truth`), matches them one to one within a
distance in metres (:func:`tiler.accuracy.match_points`: the most pairs, then
the least total distance) and scores each image and all of them pooled
(sums of tp/fp/fn, then precision, recall, F1; RMSE over every matched pair).

Distances are in metres: the image CRS's linear unit is converted (a US
survey foot CRS works). A geographic CRS (degrees) and an image without
georeferencing are refused: reproject the image first.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from tiler import api, presets
from tiler.accuracy import Score, combine_scores, match_points
from tiler.config import Pipeline, load_pipeline
from tiler.errors import ConfigError, InputError, NotGeoreferenced, TilerError
from tiler.io.open_raster import open_geotiff
from tiler.io.truth import Frame, read_truth

PathLike = str | os.PathLike


@dataclass(frozen=True)
class ImageScore:
    """One image's score; its distances are in metres.

    ``score.sum_distance`` and ``sum_squared`` are sums over the matched pairs
    of their distance and squared distance, in metres.
    """

    name: str
    image: Path
    truth: Path
    score: Score
    sum_squared: float

    @property
    def rmse_m(self) -> float:
        """Root mean square distance of the matched pairs (m); NaN when none matched."""
        return rmse(self.sum_squared, self.score.tp)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.name, **_measures(self.score, self.rmse_m)}


@dataclass(frozen=True)
class Evaluation:
    """Per-image scores and their pooled score (micro average)."""

    pipeline: str
    within_m: float
    images: list[ImageScore]

    @property
    def pooled(self) -> Score:
        return combine_scores(i.score for i in self.images)

    @property
    def pooled_rmse_m(self) -> float:
        return rmse(sum(i.sum_squared for i in self.images), self.pooled.tp)

    def rows(self) -> list[dict[str, Any]]:
        """One row per image (the CSV table)."""
        return [i.to_dict() for i in self.images]

    def to_dict(self) -> dict[str, Any]:
        """Rows and the pooled row, non-finite numbers as ``None`` (for JSON)."""
        pooled = {"image": "pooled", **_measures(self.pooled, self.pooled_rmse_m)}
        return {
            "pipeline": self.pipeline,
            "within_m": self.within_m,
            "images": [_finite(r) for r in self.rows()],
            "pooled": _finite(pooled),
        }


def rmse(sum_squared: float, n: int) -> float:
    """``sqrt(sum_squared / n)``; NaN when ``n`` is 0."""
    return math.sqrt(sum_squared / n) if n else math.nan


def _measures(score: Score, rmse_m: float) -> dict[str, Any]:
    measures = score.to_dict()
    measures["mean_distance_m"] = measures.pop("mean_distance")
    return {**measures, "rmse_m": rmse_m}


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def resolve_pipeline(pipeline: PathLike | Pipeline) -> tuple[str, Pipeline]:
    """``(how to name it, the Pipeline)`` of a preset name or a pipeline file."""
    if isinstance(pipeline, Pipeline):
        return "pipeline", pipeline
    text = os.fspath(pipeline)
    if text in presets.names():
        return f"preset {text}", presets.load(text)
    if Path(text).suffix.lower() in (".yaml", ".yml") or Path(text).exists():
        return f"config {text}", load_pipeline(text)
    raise ConfigError(
        f"{text}: neither a preset ({', '.join(presets.names())}) nor a pipeline file (.yaml)"
    )


def metres_per_unit(crs_wkt: str, image: PathLike) -> float:
    """Metres per unit of a projected CRS; a geographic CRS is refused."""
    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        raise InputError(
            f"{image}: geographic CRS ({crs.name}); distances in metres need a projected CRS "
            "(reproject the image, e.g. gdalwarp -t_srs EPSG:326xx)"
        )
    factors = {a.unit_conversion_factor for a in crs.axis_info[:2]}
    if len(factors) != 1:
        raise InputError(f"{image}: CRS {crs.name} has axes in different units")
    return float(factors.pop())


def evaluate(
    pipeline: PathLike | Pipeline,
    images: Sequence[PathLike],
    truths: Sequence[PathLike],
    *,
    within_m: float,
    truth_pixels: bool = False,
    missing_empty: bool = False,
    keep: PathLike | None = None,
    **run_options: Any,
) -> Evaluation:
    """Run ``pipeline`` on each image and score its objects against that image's truth.

    Parameters
    ----------
    pipeline : preset name, pipeline file or Pipeline
    images, truths : sequences of paths, paired in order
        GeoTIFFs in a projected CRS, and their truth files (see :mod:`tiler.io.truth`).
    within_m : float
        Largest distance (metres) of a detection from the truth point it matches.
    truth_pixels : bool
        CSV truth gives pixel ``col,row`` instead of map ``x,y``.
    missing_empty : bool
        A truth file that does not exist means no objects in its image
        (else it is an error).
    keep : path, optional
        Keep the runs in ``keep/<image name>`` (default: a temporary folder).
    **run_options
        Passed to :func:`tiler.run` (``chunk_size``, ``scheduler``, ``log``, ...).

    Every truth file is read and checked before the first run.
    """
    described, loaded = resolve_pipeline(pipeline)
    if len(images) != len(truths):
        raise TilerError(
            f"{len(images)} image(s) but {len(truths)} truth file(s): give one truth per image"
        )
    if not images:
        raise TilerError("no images to evaluate")
    if not (math.isfinite(within_m) and within_m >= 0):
        raise TilerError(f"--within: expected a distance >= 0, got {within_m!r}")
    inputs = [
        _prepare(Path(i), Path(t), truth_pixels, missing_empty, run_options)
        for i, t in zip(images, truths, strict=True)
    ]
    names = _names([image for image, *_ in inputs])
    with tempfile.TemporaryDirectory(prefix="tiler-evaluate-") as scratch:
        base = Path(scratch) if keep is None else Path(keep)
        scores = [
            _score(name, *prepared, loaded, base / name, within_m, run_options)
            for name, prepared in zip(names, inputs, strict=True)
        ]
    return Evaluation(described, within_m, scores)


def _prepare(
    image: Path, truth: Path, pixels: bool, missing_empty: bool, run_options: dict[str, Any]
) -> tuple[Path, Path, np.ndarray, float]:
    """The image's truth points in its CRS, and metres per CRS unit."""
    try:
        source = open_geotiff(
            image,
            max_pixels=None,
            driver=run_options.get("driver") or "GTiff",
            assume_crs=run_options.get("assume_crs"),
        )
    except NotGeoreferenced:
        raise InputError(
            f"{image}: no map coordinates (no geotransform or no CRS); evaluating matches "
            "within metres: georeference the image in a projected CRS first"
        ) from None
    factor = metres_per_unit(source.crs_wkt, image)
    frame = Frame(source.crs_wkt, source.transform, source.height, source.width)
    points = read_truth(truth, frame, pixels=pixels, missing_empty=missing_empty)
    return image, truth, points, factor


def _names(images: list[Path]) -> list[str]:
    """A distinct name per image: its stem, numbered when stems repeat."""
    stems = [p.stem for p in images]
    return [s if stems.count(s) == 1 else f"{n + 1}-{s}" for n, s in enumerate(stems)]


def _score(
    name: str,
    image: Path,
    truth: Path,
    truth_xy: np.ndarray,
    factor: float,
    pipeline: Pipeline,
    dst: Path,
    within_m: float,
    run_options: dict[str, Any],
) -> ImageScore:
    api.run(image, dst, pipeline, **run_options)
    objects = api.read_objects(dst)
    x, y = ("peak_x", "peak_y") if "peak_x" in objects.columns else ("x", "y")
    pred_xy = np.column_stack([objects[x].to_numpy(), objects[y].to_numpy()])
    matches = match_points(pred_xy, truth_xy, within_m / factor)
    metres = matches.distance * factor
    score = Score(
        tp=matches.tp,
        fp=matches.n_pred - matches.tp,
        fn=matches.n_truth - matches.tp,
        sum_distance=float(metres.sum()),
    )
    return ImageScore(name, image, truth, score, float(np.square(metres).sum()))


__all__ = ["Evaluation", "ImageScore", "evaluate", "metres_per_unit", "resolve_pipeline", "rmse"]
