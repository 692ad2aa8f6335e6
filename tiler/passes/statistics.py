"""Statistics passes: the global preprocessing steps' statistics, and the value range.

``equalize`` needs the histogram of the values before it over every valid
pixel, ``clahe`` two ranges (its input's, then its unscaled output's); each
is found by passes over the pipeline cut just before the step, which then
carries its statistic and runs per tile in every later pass. The value
range is also the first pass of a global threshold (:mod:`.threshold`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tiler import cache as value_cache
from tiler.config import Clahe, Pipeline
from tiler.errors import InputError
from tiler.passes.runner import PassRunner
from tiler.plan import histogram_graph, merge_minmax, merge_range, range_graph, reduce_graph
from tiler.values import clahe_output_range, full_range


def resolve_preprocess(run: PassRunner, pipeline: Pipeline) -> Pipeline:
    """The pipeline with the statistic of every global preprocessing step found, in order.

    ``equalize`` needs the histogram of the values before it over every
    valid pixel: two passes (range, histogram) over the pipeline cut just
    before it, not cached. The step then carries its cumulative histogram
    and runs per pixel in every later pass.
    """
    while (i := pipeline.unresolved_global_step()) is not None:
        before = replace(pipeline, preprocess=pipeline.preprocess[:i])
        steps = list(pipeline.preprocess)
        if steps[i].statistic == "ranges":
            steps[i] = steps[i].resolved(_clahe_ranges(run, before, steps[i]))
            pipeline = replace(pipeline, preprocess=tuple(steps))
            continue
        vmin, vmax, _ = value_range(run, "equalize: range", before, 0, value_cache.NONE)
        (counts,) = run.compute(
            "equalize: histogram",
            histogram_graph(run.source, before, run.grid, 0, value_cache.NONE, vmin, vmax),
        )
        steps[i] = steps[i].resolved(counts, vmin, vmax)
        pipeline = replace(pipeline, preprocess=tuple(steps))
    return pipeline


def value_range(
    run: PassRunner, name: str, pipeline: Pipeline, halo: int, cache: str
) -> tuple[float, float, int]:
    """``(min, max, n)`` of the preprocessed values over the valid pixels, checked.

    Each tile's values (grown by ``halo``) are kept in ``cache`` for the passes after.
    """
    (found,) = run.compute(name, range_graph(run.source, pipeline, run.grid, halo, cache))
    vmin, vmax, n_valid = found
    if n_valid == 0:
        raise InputError(
            f"{run.source.name}: no valid pixels (the dataset mask is empty everywhere)"
        )
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise InputError(
            f"{run.source.name}: the preprocessed values are not finite at valid pixels "
            f"(range [{vmin}, {vmax}]); mark NaN or infinite pixels as nodata"
        )
    return found


def _clahe_ranges(run: PassRunner, before: Pipeline, step: Clahe) -> tuple[float, float, int, int]:
    """CLAHE's two global statistics: the input range, then its unscaled output's range."""
    g = run.grid
    (found,) = run.compute(
        "clahe: range",
        reduce_graph("range", full_range, (run.source, before), g, merge_range),
    )
    vmin, vmax, _ = found
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise InputError(f"{run.source.name}: clahe: the values before it are not finite")
    args = (run.source, before)
    options = (step, vmin, vmax)
    (out,) = run.compute(
        "clahe: output range",
        reduce_graph("clahe", clahe_output_range, args, g, merge_minmax, options),
    )
    return (vmin, vmax, *out)
