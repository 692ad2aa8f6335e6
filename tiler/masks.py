"""Mask recipes: how a tile's mask is made, from the raster or a stored mask, then refined.

A recipe is a small frozen value that a task carries to any worker: a base
(:class:`RasterMask` from the raster and the threshold, :class:`StoredMask`
from a work Zarr, :class:`IntervalMask` for a seed's flood range,
:class:`CannyMask` for edges), and a :class:`TileMask` that applies the
local steps over a halo and this tile's slices of the object edits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiler import cache as value_cache
from tiler.cnn.blocks import StoredConfidence
from tiler.config import CannyEdges, Pipeline
from tiler.inference import model_mask
from tiler.io import stores
from tiler.kernels.binning import code_foreground
from tiler.kernels.edges import canny_masks
from tiler.kernels.label import label, relabel
from tiler.source import RasterSource
from tiler.steps.base import LocalMaskStep, ObjectStep
from tiler.tiling import Window, expand
from tiler.values import cached_values, image_shape, index_window


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
        return image_shape(self.source)

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


@dataclass(frozen=True)
class StoredMask:
    """A mask materialised in a Zarr array, chunked as the tiles."""

    path: str
    shape: tuple[int, int]

    def read(self, window: Window) -> np.ndarray:
        return np.asarray(stores.open_array(self.path, mode="r")[window.slices], dtype=bool)


@dataclass(frozen=True)
class ConfidenceMask:
    """A model's stored confidence ``>= threshold`` (it is 0 at invalid pixels; threshold > 0)."""

    confidence: StoredConfidence
    threshold: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.confidence.shape

    def read(self, window: Window) -> np.ndarray:
        return self.confidence.read(window) >= np.float32(self.threshold)


@dataclass(frozen=True)
class IntervalMask:
    """Valid pixels whose preprocessed value lies in ``[low, high]`` (a seed's flood range)."""

    source: RasterSource
    pipeline: Pipeline
    low: float
    high: float

    @property
    def shape(self) -> tuple[int, int]:
        return image_shape(self.source)

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
        return image_shape(self.source)

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


MaskBase = RasterMask | StoredMask | ConfidenceMask | IntervalMask | CannyMask


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
            write_chunk(store, window, mask)
        mask = self.apply_edits(mask)
        if store_final is not None:
            write_chunk(store_final, window, mask)
        return mask


def write_chunk(path: str, window: Window, values: np.ndarray) -> None:
    """Write ``values`` into the chunk of the Zarr array at ``path`` that ``window`` is.

    A chunk of zeros is not stored (zarr removes it): a tile with no object
    costs no file. zarr tests every chunk for that with ``np.array_equal(...,
    equal_nan=True)``, which numpy 2.4 takes for a float array on unsigned
    integers: 13 ms for a 2048² uint32 tile, more than its zstd encoding (6 ms)
    and over 40 % of the write of a label tile (22 ms: benchmarks/label_codecs.py).
    ``values.any()`` answers it in 1.4 ms; a tile that has a value skips zarr's test.
    """
    array = stores.open_array(path, mode="r+")
    if values.any():
        array = array.with_config({"write_empty_chunks": True})
    array[window.slices] = values
