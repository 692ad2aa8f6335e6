"""A pipeline resolved against its input: its bands, and its sizes in pixels.

``tiler run`` and the reference resolve a pipeline the same way: the bands
against the file (:meth:`tiler.config.Pipeline.resolve_bands`), then every
parameter written in ground units (``radius: 10 cm``) into pixels for the
input's pixel size (:mod:`tiler.units`, the one place that converts). A
``--pixel-only`` input has no pixel size: ground units are refused there, in
one line naming the key; so is an input whose pixel size is outside the
range the pipeline's ``serves:`` states (a preset's), in one line with its
reason. The resolved pipeline carries ``units``, run.json's
record of what was converted: the pixel size and, per key, the value as
written and the pixels used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tiler.config import Pipeline
from tiler.units import Ground, PixelSize, input_pixel_size, refuse_without_pixel_size


def ground(pipeline: Pipeline) -> tuple[Ground, ...]:
    """The pipeline's parameters written in ground units, in pipeline order."""
    steps = [*pipeline.preprocess, pipeline.threshold, *pipeline.refine]
    steps += [pipeline.model] if pipeline.model is not None else []
    return tuple(g for step in steps for g in step.ground)


def pixel_size(source: Any) -> PixelSize | None:
    """The pixel size of a source (``None`` for a --pixel-only input, which has none)."""
    if getattr(source, "georeferencing", "file") == "none":
        return None
    return input_pixel_size(source.crs_wkt, source.transform, source.height)


def in_pixels(pipeline: Pipeline, size: PixelSize | None, source: str = "input") -> Pipeline:
    """The pipeline with its ground units in pixels for pixels of ``size``, recorded."""
    found = ground(pipeline)
    if size is None:
        refuse_without_pixel_size(found, source)
    if pipeline.serves is not None:
        pipeline.serves.check(size, source)
    if pipeline.model is not None:
        pipeline.model.check_input(size, source)
    record: dict[str, Any] = {
        "pixel_size_m": None if size is None else [size.row_m, size.col_m],
        "parameters": [g.record(size) for g in found] if size is not None else [],
    }
    if not found or size is None:
        return replace(pipeline, units=record)
    return replace(
        pipeline,
        preprocess=tuple(step.in_pixels(size) for step in pipeline.preprocess),
        threshold=pipeline.threshold.in_pixels(size),
        refine=tuple(step.in_pixels(size) for step in pipeline.refine),
        model=None if pipeline.model is None else pipeline.model.in_pixels(size),
        units=record,
    )


def resolve(pipeline: Pipeline, source: Any) -> Pipeline:
    """The pipeline's bands checked against ``source`` and its sizes in its pixels."""
    pipeline = pipeline.resolve_bands(
        source.count,
        source.alpha_bands,
        source=source.name,
        alpha_is_mask=getattr(source, "alpha_is_mask", True),
    )
    return in_pixels(pipeline, pixel_size(source), source.name)
