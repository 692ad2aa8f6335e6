"""The work of one tile: label its mask, write it, split it; every task names its tile.

These functions run inside dask tasks. Each takes small picklable values (a
mask recipe from :mod:`tiler.masks`, a window, the tile's own slice of a
look-up table) and opens files by path, so every task can run on any worker,
any number of times, with the same result. A tile's values come from
:mod:`tiler.values`, a model's output from :mod:`tiler.inference`. The
graphs that call them are built in :mod:`tiler.plan`.
"""

from __future__ import annotations

import numpy as np

from tiler.config import Split
from tiler.errors import TileError, TilerError
from tiler.io import stores
from tiler.kernels.edges import component_has_strong
from tiler.kernels.label import Edges, TileStats, label, relabel, tile_stats
from tiler.masks import MaskBase, TileMask, write_chunk
from tiler.points import PointSettings, ReadConfidence, points_core
from tiler.split import SplitTile, assign_core, split_tile
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
    return tile_stats(labels, n, origin, recipe.base.shape).compact(), Edges.of(labels)


def label_hysteresis(
    recipe: TileMask, window: Window, background: bool, connectivity: int, *_
) -> tuple[TileStats, Edges]:
    """Label a tile's weak edges; each label's ``flag`` says whether it holds a strong edge."""
    weak, strong = recipe.base.masks(window)
    labels, n = label(weak, connectivity)
    origin = window.origin
    stats = tile_stats(labels, n, origin, recipe.base.shape)
    stats.flag[:] = component_has_strong(labels, n, strong)
    return stats.compact(), Edges.of(labels)


def write_mask(recipe: TileMask, window: Window, path: str) -> None:
    """Write a tile's mask into its chunk of a boolean Zarr array."""
    write_chunk(path, window, recipe.read(window))


def write_labels(
    recipe: TileMask, window: Window, connectivity: int, lut: np.ndarray, path: str
) -> None:
    """Relabel a tile with its slice of the final look-up table and write its chunk.

    Writes are chunk-aligned, so they need no lock and may run twice.
    """
    labels, _ = label(recipe.read(window), connectivity)
    write_chunk(path, window, relabel(labels, lut))


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
    shape = stores.open_array(path, mode="r").shape
    cropped = [other.crop(tile.extent) for other in others]
    core = assign_core(tile, cropped, stride=stride, image_shape=shape)
    write_chunk(path, tile.core, core.labels)
    return core.ids, core.stats, core.fallback_iou, core.fallback_own


def write_split_labels(local: str, window: Window, lut: np.ndarray, path: str) -> None:
    """Relabel a tile's kept local split labels with its slice of the final look-up table."""
    labels = stores.open_array(local, mode="r")[window.slices]
    write_chunk(path, window, relabel(labels, lut))


def points_tile(
    read: ReadConfidence, settings: PointSettings, path: str, window: Window
) -> tuple[np.ndarray, TileStats, np.ndarray, np.ndarray]:
    """Decide a tile's points (:func:`tiler.points.points_core`); keep its local labels in ``path``.

    Returns the peak ids of the local labels, their partial statistics, and
    the ids and confidences of the peaks in the core.
    """
    shape = stores.open_array(path, mode="r").shape
    core = points_core(read, window, shape, settings)
    write_chunk(path, window, core.labels)
    return core.ids, core.stats, core.owned, core.confidence
