"""What a run is of and what it records: its identity, object table, ``run.json``, result.

The identity (input, options, pipeline, chunks, tiler's version) is what the
journal and ``run.json`` keep, so that ``--resume`` continues only the same
run (:mod:`tiler.journal`, :mod:`tiler.resumption`); a complete run read
back from ``run.json`` gives the same :class:`RunResult` as when it ran.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tiler import diagnostics, presets, resolution, resumption
from tiler.config import Model, Pipeline
from tiler.errors import OutputError
from tiler.io import objects_table, output, remote
from tiler.io.finished import complete_manifest
from tiler.io.input_identity import fingerprint
from tiler.io.mosaic import MosaicSource
from tiler.io.raster import GeoTiffSource
from tiler.journal import describe_change
from tiler.passes import Segmentation
from tiler.source import RasterSource

if TYPE_CHECKING:
    from tiler.api.job import Job


@dataclass(frozen=True)
class RunResult:
    """What a run wrote and measured."""

    dst: Path
    labels: Path
    objects: Path
    manifest: Path
    n_objects: int
    threshold: float
    shape: tuple[int, int]
    n_tiles: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def megapixels_per_second(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6 / self.seconds if self.seconds else float("inf")


def identity_of(source: RasterSource, pipeline: Pipeline, chunks: tuple[int, int]) -> dict:
    """What a run is of: ``--resume`` continues only the same run (see :mod:`tiler.journal`)."""
    from tiler import __version__

    inputs: dict[str, Any] = {
        "path": str(source.name),
        "height": source.height,
        "width": source.width,
    }
    if isinstance(source, GeoTiffSource):
        if remote.is_url(source.path):  # two range reads: the same rule as a file's
            size, digest = remote.identity(source.path)
        else:
            size, digest = Path(source.path).stat().st_size, fingerprint(Path(source.path))
        inputs.update(size_bytes=size, fingerprint_sha256=digest, options=source.options)
    if isinstance(source, MosaicSource):
        inputs["mosaic"] = source.record
    return {
        "input": inputs,
        "pipeline": pipeline.to_dict(),
        "chunks": list(chunks),
        "tiler_version": __version__,
    }


def finished(dst: Path, identity: dict) -> RunResult | None:
    """The result already in ``dst`` if it holds this very run, complete; else ``None``."""
    if (manifest := complete_manifest(dst)) is None:
        return None
    inputs = manifest.get("input", {})
    if difference := describe_change(resumption.manifest_identity(manifest), identity):
        raise OutputError(
            f"{dst}: holds a complete run, but {difference}; pass --overwrite to replace it"
        )
    threshold = manifest.get("threshold", {}).get("value")
    chunking = manifest["chunking"]
    return RunResult(
        dst=dst,
        labels=dst / output.LABELS,
        objects=dst / output.OBJECTS,
        manifest=dst / output.MANIFEST,
        n_objects=int(manifest["object_count"]),
        threshold=tuple(threshold) if isinstance(threshold, list) else threshold,
        shape=(int(inputs["height"]), int(inputs["width"])),
        n_tiles=int(chunking["tiles"]),
        seconds=float(manifest.get("timings_seconds", {}).get("total", 0.0)),
    )


def write_objects(job: Job, segmentation: Segmentation) -> tuple[Path, np.ndarray]:
    """The object table (GeoParquet) written into DST; its path and the objects' pixel areas.

    Written one row group at a time (:func:`tiler.io.objects_table.write_object_groups`):
    the columns of every object are never all in memory at once.
    """
    source = job.source
    georeferenced = getattr(source, "georeferencing", "file") != "none"
    extra = segmentation.extra_columns  # one row per kept object, in label order

    def groups() -> Iterator[dict[str, np.ndarray | None]]:
        for label, stats in segmentation.kept_groups(objects_table.ROW_GROUP):
            rows = slice(label - 1, label - 1 + len(stats["count"]))
            yield objects_table.object_columns(
                stats,
                source.transform,
                source.crs_wkt,
                georeferenced=georeferenced,
                extra={name: values[rows] for name, values in extra.items()},
                first_label=label,
            )

    path = objects_table.write_object_groups(
        job.dst, groups, source.crs_wkt, georeferenced=georeferenced
    )
    return path, segmentation.stitched.stats["count"][segmentation.keep]


def diagnose(
    job: Job,
    segmentation: Segmentation,
    areas: np.ndarray,
    record: dict[str, Any],
    warn: Callable[[str], None],
) -> None:
    """Warn about results that look wrong (:mod:`tiler.diagnostics`); ``run.json`` keeps them."""
    for message in diagnostics.check(
        areas,
        record,
        candidate_areas=segmentation.stitched.stats["count"],
        split_presets=presets.splitting(resolution.pixel_size(job.source)),
    ):
        job.warned.append(message)  # record["warnings"] is this list
        warn(message)


def manifest(
    job: Job, segmentation: Segmentation, seconds: float, scheduler: str, journal: dict
) -> dict[str, Any]:
    """``run.json``: the input, the pipeline as run, the tiling, the threshold, the counts."""
    from tiler import __version__

    source, pipeline, grid = job.source, job.pipeline, job.grid
    inputs: dict[str, Any] = {
        "path": source.name,
        "height": source.height,
        "width": source.width,
        "count": source.count,
        "crs_wkt": source.crs_wkt,
        "transform": list(source.transform),
    }
    if isinstance(source, GeoTiffSource):
        recorded = job.identity["input"]  # hashed once, as the run began (the journal checks it)
        inputs.update(
            size_bytes=recorded["size_bytes"],
            fingerprint_sha256=recorded["fingerprint_sha256"],
            dtype=source.dtype,
            nodata=source.nodata,
            options=source.options,
        )
        if "mosaic" in recorded:
            inputs["mosaic"] = recorded["mosaic"]
    value = segmentation.threshold
    threshold: dict[str, Any] = {"value": list(value) if isinstance(value, tuple) else value}
    threshold.update((pipeline.model or pipeline.threshold).record())
    if segmentation.value_range is not None:
        vmin, vmax, n_valid = segmentation.value_range
        threshold.update(range=[vmin, vmax], valid_pixels=n_valid)
    return {
        "tiler_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "input": inputs,
        "config": pipeline.to_dict(),  # in pixels; "units": what was written in ground units
        "units": pipeline.units,
        "chunking": {
            "chunk_shape": list(grid.chunks),
            "grid": list(grid.grid),
            "tiles": len(grid),
            "halo": pipeline.preprocess_reach
            + pipeline.threshold_reach
            + pipeline.stages()[0].reach,
        },
        "scheduler": str(scheduler),
        "threshold": threshold,
        "labels": {"path": output.LABELS + "/labels", "dtype": str(segmentation.dtype)},
        "object_count": segmentation.n_objects,
        **_split_summary(pipeline, segmentation),
        "resume": journal,
        "warnings": job.warned,
        "timings_seconds": {
            **{k: round(v, 4) for k, v in segmentation.timings.items()},
            "total": round(seconds, 4),
        },
        "complete": True,
    }


def _split_summary(pipeline: Pipeline, segmentation: Segmentation) -> dict[str, Any]:
    """How instances were made across tiles (watershed split or a model's labels), if so."""
    if pipeline.split is not None:
        method, halo = "watershed", pipeline.split.halo
    elif isinstance(pipeline.model, Model) and pipeline.model.output == "labels":
        method, halo = f"model {pipeline.model.function}", pipeline.model.halo
    else:
        return {}
    return {
        "split": {
            "method": method,
            "approximate": True,
            "halo": halo,
            "objects_decided_by_fallback": segmentation.split_fallbacks,
        }
    }
