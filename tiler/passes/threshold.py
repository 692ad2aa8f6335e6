"""The starting mask: what the first stage of ``refine`` starts from, by threshold kind.

Global (Otsu, multi-Otsu: the value range over valid pixels, then one
256-bin histogram; percentile: the range, then passes narrowing an interval
around the order statistics), per pixel or local (a fixed value, a local
threshold, a model's mask: nothing to find), or object level (region
growing, Canny's hysteresis: :mod:`.seeded`).
"""

from __future__ import annotations

import numpy as np

from tiler import cache as value_cache
from tiler.config import OnnxModel, Pipeline
from tiler.errors import InputError
from tiler.kernels.binning import codes_possible
from tiler.kernels.threshold import (
    binnable,
    narrow,
    percentile_from_ranks,
    percentile_ranks,
    threshold_index,
)
from tiler.masks import MaskBase, RasterMask
from tiler.passes.confidence import confidence_mask
from tiler.passes.runner import PassRunner
from tiler.passes.seeded import edges, grow
from tiler.passes.statistics import value_range as find_value_range
from tiler.plan import histogram_graph, interval_graph

# A percentile's last pass gathers at most this many values per rank (32 MiB).
COLLECT_LIMIT = 1 << 22

Threshold = float | tuple[float, ...] | None


def starting_mask(
    run: PassRunner, pipeline: Pipeline
) -> tuple[MaskBase, Threshold, tuple[float, float, int] | None]:
    """The mask the first stage starts from, the threshold(s), and (Otsu) the value range.

    With Otsu, the tiles are preprocessed once into a value cache (grown by
    the first stage's halo); the histogram and the mask are made from it.
    When the values are not kept, the histogram pass keeps bin codes for
    the mask instead (see :mod:`tiler.cache`).
    """
    source, step = run.source, pipeline.threshold
    if isinstance(pipeline.model, OnnxModel):
        return confidence_mask(run, pipeline), pipeline.model.threshold, None
    if pipeline.model is not None:
        return RasterMask(source, pipeline, None), None, None
    if step.passes == "none":  # per pixel (a known value) or local: nothing to find
        return RasterMask(source, pipeline, step.known), step.known, None
    if step.passes == "grow":
        return grow(run, pipeline, step), None, None
    if step.passes == "edges":
        return edges(run, pipeline, step), None, None
    halo = pipeline.stages()[0].reach
    value_cache.prepare(run.cache)
    found = find_value_range(run, "preprocess", pipeline, halo, run.cache)
    vmin, vmax, n_valid = found
    if step.passes == "percentile":
        t = percentile(run, pipeline, step.q, found, halo)
        value_cache.drop_pixels(run.cache)
        return RasterMask(source, pipeline, t, run.cache), t, found
    (counts,) = run.compute(
        "histogram",
        histogram_graph(source, pipeline, run.grid, halo, run.cache, vmin, vmax, step.codes),
    )
    value_cache.drop_pixels(run.cache)  # the mask pass reads the codes
    try:
        t = step.from_histogram(counts, vmin, vmax)
    except ValueError as exc:
        raise InputError(f"{source.name}: {step.names[0]}: {exc}") from None
    if not step.codes:
        return RasterMask(source, pipeline, t, run.cache), t, found
    codes = value_cache.keeps_codes(run.cache) and codes_possible(vmin, vmax)
    index = threshold_index(t, vmin, vmax) if codes else None
    return RasterMask(source, pipeline, t, run.cache, index), t, found


def percentile(
    run: PassRunner,
    pipeline: Pipeline,
    q: float,
    value_range: tuple[float, float, int],
    halo: int,
) -> float:
    """``numpy.percentile(x[valid], q)``, exactly, from passes over the tiles.

    The two order statistics NumPy interpolates are found by narrowing a
    value interval around each: a pass counts the values below the
    interval and bins those inside it in 256 bins; the bin holding the
    rank becomes the next interval. Once an interval holds at most
    ``COLLECT_LIMIT`` values (usually after one or two passes), or is too
    narrow for 256 bins, one last pass gathers them and the rank is read
    off after sorting.
    """
    args = (run.source, pipeline, run.grid, halo, run.cache)
    vmin, vmax, n = value_range
    lower, upper, gamma = percentile_ranks(n, q)
    # rank -> (lo, hi, values below lo, values in [lo, hi])
    search = {rank: (vmin, vmax, 0, n) for rank in (lower, upper)}
    found: dict[int, float] = {}
    while pending := [r for r in search if r not in found]:
        for rank in pending:
            lo, hi, _, _ = search[rank]
            if lo == hi:
                found[rank] = lo
        pending = [r for r in pending if r not in found]
        if not pending:
            break
        large = [r for r in pending if search[r][3] > COLLECT_LIMIT and binnable(*search[r][:2])]
        if not large:
            intervals = tuple(sorted({search[r][:2] for r in pending}))
            (within,) = run.compute(
                "percentile: collect", interval_graph(*args, intervals, collect=True)
            )
            for rank in pending:
                lo, hi, below, _ = search[rank]
                values = np.sort(within[intervals.index((lo, hi))])
                found[rank] = float(values[rank - below])
            break
        intervals = tuple(sorted({search[r][:2] for r in large}))
        (results,) = run.compute("percentile: narrow", interval_graph(*args, intervals))
        for rank in large:
            lo, hi, _, _ = search[rank]
            below, counts = results[intervals.index((lo, hi))]
            narrowed = narrow(lo, hi, below, counts, rank)
            # An interval that cannot shrink any more is collected next time.
            stuck = narrowed[:2] == (lo, hi)
            search[rank] = (lo, hi, below, 0) if stuck else narrowed
    return percentile_from_ranks(found[lower], found[upper], gamma)
