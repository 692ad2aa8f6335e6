"""A run's job: its arguments turned into what the passes need, checked before DST is touched.

The settings (completed from the journal when resuming: :mod:`tiler.resumption`),
the source opened and checked, the pipeline resolved against it (bands,
ground units in pixels), the scheduler checked, the tiling planned, the
warnings said, and the identity that ``--resume`` compares.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tiler import reach, resolution, resumption
from tiler.api.record import identity_of
from tiler.cluster import check_scheduler
from tiler.cnn.blocks import aligned_chunks, wasteful
from tiler.config import OnnxModel, Pipeline, load_pipeline, parse_pipeline
from tiler.defaults import DEFAULT_CHUNK_SIZE
from tiler.errors import ConfigError, InputError
from tiler.io import remote, stores
from tiler.io.layout import plan_chunks
from tiler.io.mosaic import changed_member, open_input
from tiler.io.raster import GeoTiffSource
from tiler.plan import check_size
from tiler.source import RasterSource
from tiler.tiling import TileGrid

# A striped input, or a halo that multiplies the work (tiler.reach), is warned
# about above one default tile's pixels: below, a run takes seconds whatever the
# layout or halo, and the warning would be noise (its tiles follow the strips
# all the same).
WARN_PIXELS = WARN_STRIPED_PIXELS = DEFAULT_CHUNK_SIZE * DEFAULT_CHUNK_SIZE


@dataclass
class Job:
    """One run, prepared: what it reads, how, in which tiles, and what it is of."""

    dst: Any  # a Path, or a UPath in object storage (tiler.io.stores)
    source: RasterSource
    pipeline: Pipeline  # resolved against the source; in pixels
    grid: TileGrid
    target: Any  # a scheduler name or address, or a distributed.Client
    identity: dict[str, Any]  # what --resume compares (tiler.journal)
    warned: list[str]  # said already; run.json records them, and the diagnostics' after

    @property
    def remote_input(self) -> bool:
        """Whether the input is read from object storage or a web server (a URL)."""
        return isinstance(self.source, GeoTiffSource) and remote.is_url(self.source.path)

    @property
    def src_path(self) -> Path | None:
        """The input file, for the destination's checks; ``None`` for an in-memory one or a URL."""
        if not isinstance(self.source, GeoTiffSource) or remote.is_url(self.source.path):
            return None
        return Path(self.source.path)


def prepare(
    src: str | os.PathLike | RasterSource,
    dst: str | os.PathLike,
    given: resumption.Settings,
    target: Any,
    performance_report: str | os.PathLike | None,
    *,
    resume: bool,
    max_pixels: int | None,
    warn: Callable[[str], None],
    device: str | None = None,
    asset: str | None = None,
) -> Job:
    """The job of ``tiler.run``'s arguments; every refusal here leaves ``dst`` untouched."""
    dst = stores.folder(dst)
    before = resumption.recorded(dst) if resume else None
    settings = given.completed(before)  # resuming: what is left out is the run's
    pipeline = _pipeline(settings.config)
    if device is not None:
        pipeline = _on_device(pipeline, device)
    chunk_size = settings.chunk_size
    chunks = _chunks(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size)
    if isinstance(src, (str, os.PathLike)):
        source = open_input(
            src,
            asset=asset,
            max_pixels=max_pixels,
            driver=settings.driver or "GTiff",
            mask=settings.mask or "dataset",
            assume_crs=settings.assume_crs,
            pixel_only=bool(settings.pixel_only),
        )
    else:
        source = src
    pipeline = resolution.resolve(pipeline, source)  # bands, and ground units in pixels
    check_scheduler(target)
    if performance_report is not None and target in ("sync", "threads"):
        raise ConfigError(f"--performance-report needs a distributed scheduler, not {target!r}")
    warned: list[str] = []
    if isinstance(source, GeoTiffSource):
        plan = plan_chunks(
            source.height,
            source.width,
            source.block_shape,
            chunks,
            explicit=chunk_size is not None,
            pixel_bytes=source.count * np.dtype(source.dtype).itemsize,
        )
        chunks = plan.chunks
        if plan.warning is not None and source.height * source.width > WARN_STRIPED_PIXELS:
            warned.append(f"{source.name}: {plan.warning}")
    if isinstance(pipeline.model, OnnxModel):
        if chunk_size is None:  # each tile computes exactly its own blocks
            chunks = aligned_chunks(chunks, pipeline.model.block)
        shape = (source.height, source.width)
        said = wasteful(shape, chunks, pipeline.model.block, pipeline.model.batch)
        if said is not None and source.height * source.width > WARN_PIXELS:
            warned.append(f"{source.name}: {said}")
    grid = TileGrid((source.height, source.width), chunks)
    check_size(grid, source.name)  # before DST is touched
    warned.extend(
        reach.check(pipeline, grid.shape, chunks, source.name, _pixel_m(source), WARN_PIXELS)
    )
    for message in warned:
        warn(message)
    identity = identity_of(source, pipeline, chunks)
    if before is not None:
        if said := changed_member(before.get("input", {}), identity["input"]):
            raise InputError(f"{said}; cannot resume {dst}; pass --overwrite to start again")
        resumption.check(dst, before, given, identity)  # an option given that differs
    return Job(dst, source, pipeline, grid, target, identity, warned)


def _pipeline(config: str | os.PathLike | dict | Pipeline | None) -> Pipeline:
    if isinstance(config, Pipeline):
        return config
    if isinstance(config, dict):
        return parse_pipeline(config)
    return load_pipeline(config)


def _on_device(pipeline: Pipeline, device: str) -> Pipeline:
    """The pipeline with its ONNX model on ``device`` (``tiler run --device``)."""
    if not isinstance(pipeline.model, OnnxModel):
        raise ConfigError("--device: the pipeline has no ONNX model (model: {onnx: ...})")
    return replace(pipeline, model=pipeline.model.on_device(device))


def _chunks(chunk_size: int | tuple[int, int]) -> tuple[int, int]:
    chunks = (chunk_size, chunk_size) if isinstance(chunk_size, int) else tuple(chunk_size)
    if len(chunks) != 2 or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in chunks
    ):
        raise ConfigError(f"chunk size: expected a positive integer, got {chunk_size!r}")
    return chunks  # type: ignore[return-value]


def _pixel_m(source: RasterSource) -> float | None:
    """The pixel's side in metres, for messages; ``None`` for a --pixel-only input."""
    if getattr(source, "georeferencing", "file") == "none":
        return None
    return reach.pixel_size_m(source.crs_wkt, source.transform, source.height)
