"""A tile's preprocessed values: read with its halo, the fused per-tile chain, the value cache.

The global statistics' tasks live here: the value range and histograms of
the Otsu and percentile passes (through the value cache of :mod:`tiler.cache`),
and CLAHE's ranges. Like every task, each takes small picklable values and
opens files by path (see :mod:`tiler.tasks`).
"""

from __future__ import annotations

import numpy as np

from tiler import cache as value_cache
from tiler.config import Clahe, Pipeline
from tiler.kernels.binning import histogram_codes, masked_histogram, masked_range
from tiler.kernels.buffers import scratch
from tiler.kernels.clahe import clahe_tile_range, clahe_unscaled
from tiler.kernels.threshold import interval_histogram, values_within
from tiler.source import RasterSource
from tiler.steps.contrast import unit_range
from tiler.tiling import Window, expand


def image_shape(source: RasterSource) -> tuple[int, int]:
    """``(height, width)`` of the source."""
    return (source.height, source.width)


def preprocess(
    image: np.ndarray,
    pipeline: Pipeline,
    window: Window | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, Window | None]:
    """Index then filters, in float64, on an array of the selected bands over ``window``.

    Returns the values and the window they cover: a ``clahe`` step returns
    only the part of its input that later steps need (its own reach and what
    came before it are used up), so the array may shrink. ``window`` and the
    image ``shape`` are needed only for ``clahe``, whose regions are aligned
    to the image.
    """
    index = pipeline.index
    filters = pipeline.filters
    # An index that a filter consumes lives in a per-thread scratch buffer.
    out = scratch("index", image.shape[1:], np.float64) if filters else None
    values = index.values(image, pipeline.bands, out=out)
    pending = 0  # reach of the steps since the array's window was last exact
    for step in filters:
        if step.aligned:  # regions aligned to the image: keep what later steps need
            core = window.shrink(pending + step.reach, shape)
            values, window, pending = step.tile_aligned(values, window, core, shape), core, 0
            continue
        values = step.tile(values)
        pending += step.reach
    return values, window


def full_range(
    source: RasterSource, pipeline: Pipeline, window: Window
) -> tuple[float, float, int]:
    """``(min, max, n)`` of the preprocessed values over every pixel of ``window`` (nodata too)."""
    values, _ = index_window(source, pipeline, window)
    return masked_range(values, np.ones(values.shape, dtype=bool))


def clahe_output_range(
    source: RasterSource,
    before: Pipeline,
    window: Window,
    step: Clahe,
    vmin: float,
    vmax: float,
) -> tuple[int, int]:
    """The range of a tile's unscaled CLAHE output (``before``: the steps up to ``clahe``)."""
    outer, _ = expand(window, step.reach, image_shape(source))
    values, _ = index_window(source, before, outer)
    scaled, lo, hi = unit_range(values, vmin, vmax)
    unscaled = clahe_unscaled(
        scaled, outer, window, image_shape(source), kernel_size=step.kernel_size,
        clip_limit=step.clip_limit, vmin=lo, vmax=hi,
    )  # fmt: skip
    return clahe_tile_range(unscaled)


def index_window(
    source: RasterSource,
    pipeline: Pipeline,
    window: Window,
    cache: str = value_cache.NONE,
    keep: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed values and the valid mask of ``window`` (read with its halo).

    The input pixels come from ``cache`` if it kept them (else from the
    source); with ``keep``, pixels read from the source are kept there for
    the next pass (:func:`tiler.cache.put_pixels`).
    """
    shape = image_shape(source)
    outer, crop = expand(window, pipeline.preprocess_reach, shape)
    pixels = value_cache.get_pixels(cache, outer)
    if pixels is None:
        pixels = source.read(pipeline.bands, outer)
        if keep:
            value_cache.put_pixels(cache, outer, *pixels)
    image, valid = pixels
    values, at = preprocess(image, pipeline, outer, shape)
    return values[window.within(at)], valid[crop]


def cached_values(
    source: RasterSource, pipeline: Pipeline, window: Window, cache: str, keep: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Values and valid mask of ``window`` from the cache, or computed again if it is not there.

    The cache only saves time: a task that runs where the cache is not (a
    worker on another machine, a cache cleaned away) gets the same values
    by reading the raster again. With ``keep``, values computed again are
    kept for the passes after: a resumed run whose range pass came from the
    journal (its cache died with the run before) computes each tile once, not
    once a pass.
    """
    found = value_cache.get(cache, window)
    if found is not None:
        return found
    values, valid = index_window(source, pipeline, window, cache)
    if keep:
        value_cache.put(cache, window, values, valid)
    return values, valid


def cache_values(
    source: RasterSource, pipeline: Pipeline, window: Window, halo: int, cache: str
) -> tuple[float, float, int]:
    """Preprocess a tile once, keep its values (grown by ``halo``), return its value range.

    The cache holds the tile grown by ``halo`` (the reach of the local steps
    after the threshold), so the mask pass needs nothing else (see
    :mod:`tiler.cache`). Returns ``(min, max, n_valid)`` over the valid pixels
    of the tile itself.
    """
    outer, crop = expand(window, halo, image_shape(source))
    values, valid = index_window(source, pipeline, outer, cache, keep=True)
    value_cache.put(cache, outer, values, valid)
    return masked_range(values, valid, crop)


def cached_histogram(
    source: RasterSource,
    pipeline: Pipeline,
    window: Window,
    halo: int,
    cache: str,
    vmin: float,
    vmax: float,
    codes: bool = False,
) -> np.ndarray:
    """The 256-bin histogram over ``[vmin, vmax]`` of a tile's valid (cached) values.

    With ``codes`` and a cache that keeps them, the bin codes of the tile
    grown by ``halo`` are kept there for the mask pass (see :func:`histogram_codes`).
    """
    outer, crop = expand(window, halo, image_shape(source))
    values, valid = cached_values(source, pipeline, outer, cache, keep=True)
    if not (codes and value_cache.keeps_codes(cache)):
        return masked_histogram(values, valid, vmin, vmax, crop)
    counts, codes = histogram_codes(values, valid, crop, vmin, vmax)
    if codes is not None:
        value_cache.put_codes(cache, outer, codes)
    return counts


def cached_interval_histograms(
    source: RasterSource,
    pipeline: Pipeline,
    window: Window,
    halo: int,
    cache: str,
    intervals: tuple[tuple[float, float], ...],
) -> list[tuple[int, np.ndarray]]:
    """Per interval ``[lo, hi]``: the tile's valid values below ``lo``, and its histogram."""
    values, valid = _cached_tile(source, pipeline, window, halo, cache)
    return [interval_histogram(values, valid, lo, hi) for lo, hi in intervals]


def cached_values_within(
    source: RasterSource,
    pipeline: Pipeline,
    window: Window,
    halo: int,
    cache: str,
    intervals: tuple[tuple[float, float], ...],
) -> list[np.ndarray]:
    """Per interval ``[lo, hi]``: the tile's valid values in it, sorted."""
    values, valid = _cached_tile(source, pipeline, window, halo, cache)
    return [values_within(values, valid, lo, hi) for lo, hi in intervals]


def _cached_tile(
    source: RasterSource, pipeline: Pipeline, window: Window, halo: int, cache: str
) -> tuple[np.ndarray, np.ndarray]:
    """The tile's values and valid mask, from the cache (of the window grown by ``halo``)."""
    outer, crop = expand(window, halo, image_shape(source))
    values, valid = cached_values(source, pipeline, outer, cache, keep=True)
    return values[crop], valid[crop]
