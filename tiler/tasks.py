"""The work of one tile: read (with halo), run the fused per-tile chain, label, write.

These functions run inside dask tasks. Each takes small picklable values (a
source description, a window, the tile's own slice of a look-up table) and
opens files by path, so every task can run on any worker, any number of
times, with the same result. The graphs that call them are built in
:mod:`tiler.plan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import zarr

from tiler import cache as value_cache
from tiler.config import CannyEdges, Clahe, Pipeline, Split, load_callable
from tiler.errors import ModelError, TileError, TilerError
from tiler.io.raster import RasterSource
from tiler.kernels.buffers import scratch
from tiler.kernels.clahe import clahe_tile_range, clahe_unscaled
from tiler.kernels.edges import canny_masks, component_has_strong
from tiler.kernels.label import Edges, TileStats, label, relabel, tile_stats
from tiler.kernels.threshold import (
    code_foreground,
    histogram_codes,
    interval_histogram,
    masked_histogram,
    masked_range,
    values_within,
)
from tiler.split import SplitTile, assign_core, measure_window, split_tile
from tiler.steps.base import LocalMaskStep, ObjectStep
from tiler.steps.contrast import unit_range
from tiler.tiling import Window, expand


def in_tile(where: str, function, *args):
    """Run one tile's task; an unexpected error becomes a :class:`TileError` naming the tile.

    Errors tiler reports to users (a bad window of the input, a model's wrong
    output) already name what is at fault and pass through unchanged.
    """
    try:
        return function(*args)
    except TilerError:
        raise
    except Exception as exc:
        raise TileError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _shape(source: RasterSource) -> tuple[int, int]:
    return (source.height, source.width)


# ---------------------------------------------------------------------------
# Preprocessing and the global threshold
# ---------------------------------------------------------------------------


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
    outer, _ = expand(window, step.reach, _shape(source))
    values, _ = index_window(source, before, outer)
    scaled, lo, hi = unit_range(values, vmin, vmax)
    unscaled = clahe_unscaled(
        scaled, outer, window, _shape(source), kernel_size=step.kernel_size,
        clip_limit=step.clip_limit, vmin=lo, vmax=hi,
    )  # fmt: skip
    return clahe_tile_range(unscaled)


def index_window(
    source: RasterSource, pipeline: Pipeline, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed values and the valid mask of ``window`` (read with its halo)."""
    shape = _shape(source)
    outer, crop = expand(window, pipeline.preprocess_reach, shape)
    image, valid = source.read(pipeline.bands, outer)
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
    values, valid = index_window(source, pipeline, window)
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
    outer, crop = expand(window, halo, _shape(source))
    values, valid = index_window(source, pipeline, outer)
    value_cache.put(cache, outer, values, valid)
    return masked_range(values[crop], valid[crop])


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
    outer, crop = expand(window, halo, _shape(source))
    values, valid = cached_values(source, pipeline, outer, cache, keep=True)
    if not (codes and value_cache.keeps_codes(cache)):
        return masked_histogram(values[crop], valid[crop], vmin, vmax)
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
    outer, crop = expand(window, halo, _shape(source))
    values, valid = cached_values(source, pipeline, outer, cache, keep=True)
    values, valid = values[crop], valid[crop]
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
    outer, crop = expand(window, halo, _shape(source))
    values, valid = cached_values(source, pipeline, outer, cache, keep=True)
    values, valid = values[crop], valid[crop]
    return [values_within(values, valid, lo, hi) for lo, hi in intervals]


# ---------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterMask:
    """The thresholded mask from the raster (preprocess, threshold, ``&= valid``).

    ``threshold`` is what the global passes found: a float, multi-Otsu's
    thresholds, or ``None`` for a local threshold (computed per window). With
    a ``cache`` (see :mod:`tiler.cache`), what the Otsu passes kept for the
    same windows is used where present: the values, or the bin codes, which
    give the same mask when ``threshold`` is the centre of bin
    ``threshold_bin`` of the histogram they were made for.
    """

    source: RasterSource
    pipeline: Pipeline
    threshold: float | tuple[float, ...] | None
    cache: str = value_cache.NONE
    threshold_bin: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return _shape(self.source)

    def read(self, window: Window) -> np.ndarray:
        if self.threshold_bin is not None:
            codes = value_cache.get_codes(self.cache, window)
            if codes is not None:
                return code_foreground(codes, self.threshold_bin, self.pipeline.polarity)
        if self.pipeline.model is not None:
            return model_mask(self.source, self.pipeline, window)
        step = self.pipeline.threshold
        # A local threshold reads its window grown by its reach (and no cache).
        outer, crop = expand(window, step.reach, self.shape)
        values, valid = cached_values(self.source, self.pipeline, outer, self.cache)
        return step.tile_mask(values, valid, self.threshold, self.pipeline.polarity)[crop]


def model_mask(source: RasterSource, pipeline: Pipeline, window: Window) -> np.ndarray:
    """The pipeline's model on ``window`` grown by its halo, cropped back, ``&= valid``."""
    model = pipeline.model
    outer, crop = expand(window, model.halo, _shape(source))
    image, valid = source.read(pipeline.bands, outer)
    return run_model(model.function, image)[crop] & valid[crop]


def run_model(function: str, image: np.ndarray) -> np.ndarray:
    """``function(image)`` as a bool mask, checked: one clear error if it returns anything else."""
    out = np.asarray(_model(function)(image))
    if out.shape != image.shape[1:]:
        raise ModelError(
            f"model {function}: returned shape {out.shape} for a window of {image.shape[1:]}"
        )
    if out.dtype != bool and not (
        np.issubdtype(out.dtype, np.integer) and np.isin(out, (0, 1)).all()
    ):
        raise ModelError(f"model {function}: returned {out.dtype} values; expected a mask")
    return out.astype(bool, copy=False)


def model_window(source: RasterSource, pipeline: Pipeline, window: Window, index: int) -> SplitTile:
    """The model's instances on a tile's window grown by its halo, measured for ownership."""
    outer, _ = expand(window, pipeline.model.halo, _shape(source))
    image, valid = source.read(pipeline.bands, outer)
    labels, n = model_labels(pipeline.model.function, image, valid)
    return measure_window(labels, n, outer, window, index, _shape(source))


def model_labels(function: str, image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """``function(image)`` as instance labels 1..n on valid pixels (in order of their ids)."""
    out = np.asarray(_model(function)(image))
    if out.shape != image.shape[1:]:
        raise ModelError(
            f"model {function}: returned shape {out.shape} for a window of {image.shape[1:]}"
        )
    if not np.issubdtype(out.dtype, np.integer) or out.min(initial=0) < 0:
        raise ModelError(f"model {function}: returned {out.dtype} values; expected labels >= 0")
    ids, compact = np.unique(np.where(valid, out, 0), return_inverse=True)
    compact = compact.reshape(out.shape).astype(np.int32)
    if ids[0] != 0:
        compact += 1
    return compact, int(np.count_nonzero(ids))


@lru_cache(maxsize=8)
def _model(function: str):
    return load_callable(function)


@dataclass(frozen=True)
class StoredMask:
    """A mask materialised in a Zarr array, chunked as the tiles."""

    path: str
    shape: tuple[int, int]

    def read(self, window: Window) -> np.ndarray:
        return np.asarray(zarr.open_array(self.path, mode="r")[window.slices], dtype=bool)


@dataclass(frozen=True)
class IntervalMask:
    """Valid pixels whose preprocessed value lies in ``[low, high]`` (a seed's flood range)."""

    source: RasterSource
    pipeline: Pipeline
    low: float
    high: float

    @property
    def shape(self) -> tuple[int, int]:
        return _shape(self.source)

    def read(self, window: Window) -> np.ndarray:
        values, valid = index_window(self.source, self.pipeline, window)
        return (values >= self.low) & (values <= self.high) & valid


@dataclass(frozen=True)
class CannyMask:
    """Canny's weak edges (after non-maximum suppression) of the preprocessed values."""

    source: RasterSource
    pipeline: Pipeline
    step: CannyEdges

    @property
    def shape(self) -> tuple[int, int]:
        return _shape(self.source)

    def masks(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(weak, strong)`` edge pixels of ``window``, from it grown by Canny's reach."""
        outer, crop = expand(window, self.step.reach, self.shape)
        values, valid = index_window(self.source, self.pipeline, outer)
        low, high = canny_masks(
            values, valid, sigma=self.step.sigma, low=self.step.low, high=self.step.high
        )
        return low[crop], high[crop]

    def read(self, window: Window) -> np.ndarray:
        return self.masks(window)[0]


def label_hysteresis(
    recipe: TileMask, window: Window, background: bool, connectivity: int, *_
) -> tuple[TileStats, Edges]:
    """Label a tile's weak edges; each label's ``flag`` says whether it holds a strong edge."""
    weak, strong = recipe.base.masks(window)
    labels, n = label(weak, connectivity)
    origin = window.origin
    stats = tile_stats(labels, n, origin, recipe.base.shape)
    stats.flag[:] = component_has_strong(labels, n, strong)
    return stats, Edges.of(labels)


@dataclass(frozen=True)
class KeptTile:
    """One tile's components (under ``connectivity``) of ``base`` whose ``lut`` entry is true.

    ``lut`` maps the tile's local labels to "kept" (from the stitched labels),
    so this reads only the tile's own window.
    """

    base: MaskBase
    lut: np.ndarray
    connectivity: int

    def read(self, window: Window) -> np.ndarray:
        labels, _ = label(self.base.read(window), self.connectivity)
        return relabel(labels, self.lut)


@dataclass(frozen=True)
class UnionTile:
    """The union of some masks of one tile (the grown regions of several seed ranges)."""

    parts: tuple[KeptTile, ...]

    def read(self, window: Window) -> np.ndarray:
        return np.logical_or.reduce([part.read(window) for part in self.parts])


MaskBase = RasterMask | StoredMask | IntervalMask | CannyMask


@dataclass(frozen=True)
class TileMask:
    """How to compute one tile's mask: a base, local steps over a halo, object edits.

    ``edits`` pairs each object step with this tile's slice of its look-up
    table (from tile-local labels to "fill" for holes or "keep" for objects).
    """

    base: MaskBase
    local: tuple[LocalMaskStep, ...] = ()
    edits: tuple[tuple[ObjectStep, np.ndarray], ...] = ()
    connectivity: int = 2

    def local_mask(self, window: Window) -> np.ndarray:
        """The base mask after the local steps, exact in ``window``."""
        halo = sum(step.reach for step in self.local)
        outer, crop = expand(window, halo, self.base.shape)
        mask = self.base.read(outer)
        for step in self.local:
            mask = step.tile(mask)
        return mask[crop]

    def apply_edits(self, mask: np.ndarray) -> np.ndarray:
        for step, lut in self.edits:
            mask = step.edit(mask, lut, self.connectivity)
        return mask

    def read(
        self, window: Window, store: str | None = None, store_final: str | None = None
    ) -> np.ndarray:
        """The tile's mask; ``store`` keeps the mask before the edits, ``store_final`` after."""
        mask = self.local_mask(window)
        if store is not None:
            _write_chunk(store, window, mask)
        mask = self.apply_edits(mask)
        if store_final is not None:
            _write_chunk(store_final, window, mask)
        return mask


def _write_chunk(path: str, window: Window, values: np.ndarray) -> None:
    """Write ``values`` into the chunk of the Zarr array at ``path`` that ``window`` is."""
    zarr.open_array(path, mode="r+")[window.slices] = values


# ---------------------------------------------------------------------------
# Labelling and writing
# ---------------------------------------------------------------------------


def label_tile(
    recipe: TileMask,
    window: Window,
    background: bool,
    connectivity: int,
    store: str | None = None,
    store_final: str | None = None,
) -> tuple[TileStats, Edges]:
    """Label a tile's foreground (or background) and summarise it for stitching."""
    mask = recipe.read(window, store, store_final)
    labels, n = label(~mask if background else mask, connectivity)
    origin = window.origin
    return tile_stats(labels, n, origin, recipe.base.shape), Edges.of(labels)


def write_mask(recipe: TileMask, window: Window, path: str) -> None:
    """Write a tile's mask into its chunk of a boolean Zarr array."""
    _write_chunk(path, window, recipe.read(window))


def write_labels(
    recipe: TileMask, window: Window, connectivity: int, lut: np.ndarray, path: str
) -> None:
    """Relabel a tile with its slice of the final look-up table and write its chunk.

    Writes are chunk-aligned, so they need no lock and may run twice.
    """
    labels, _ = label(recipe.read(window), connectivity)
    _write_chunk(path, window, relabel(labels, lut))


# ---------------------------------------------------------------------------
# Watershed splitting (approximate: see tiler.split)
# ---------------------------------------------------------------------------


def split_window(
    base: MaskBase, window: Window, index: int, step: Split, connectivity: int
) -> SplitTile:
    """Split the objects of a tile's window (grown by the step's halo) of the final mask."""
    outer, _ = expand(window, step.halo, base.shape)
    return split_tile(
        base.read(outer),
        outer,
        window,
        index,
        base.shape,
        min_distance=step.min_distance,
        footprint=step.footprint,
        connectivity=connectivity,
    )


def assign_split(
    stride: int, path: str, tile: SplitTile, *others: SplitTile
) -> tuple[np.ndarray, TileStats, int, int]:
    """Decide every core pixel's object; keep the core's local labels in ``path``.

    Returns the provisional ids of the local labels, their partial statistics
    and the two fallback counts (see :func:`tiler.split.assign_core`).
    """
    shape = zarr.open_array(path, mode="r").shape
    cropped = [other.crop(tile.extent) for other in others]
    core = assign_core(tile, cropped, stride=stride, image_shape=shape)
    _write_chunk(path, tile.core, core.labels)
    return core.ids, core.stats, core.fallback_iou, core.fallback_own


def write_split_labels(local: str, window: Window, lut: np.ndarray, path: str) -> None:
    """Relabel a tile's kept local split labels with its slice of the final look-up table."""
    labels = zarr.open_array(local, mode="r")[window.slices]
    _write_chunk(path, window, relabel(labels, lut))
