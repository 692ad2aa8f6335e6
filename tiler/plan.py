"""The one place that builds dask graphs.

Each pass over the image is a graph of a few tasks per tile (never per seam
face or per label), so graphs grow linearly with the number of tiles:

* ``range_graph`` / ``histogram_graph`` – the global Otsu statistics, one result
  per tile, folded in tile order by the driver as they arrive;
* ``label_graph``   – label every tile, then one seam task per tile that
  compares it with its right, lower and lower-right neighbours;
* ``write_graph``   – relabel every tile with its slice of the look-up table.

:class:`tiler.executor.Executor` runs them. A run has at most ``MAX_TILES``
tiles (:func:`check_size`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from tiler import masks, tasks
from tiler.errors import ConfigError
from tiler.source import RasterSource
from tiler.split import split_stride
from tiler.stitch import seam_pairs
from tiler.taskgraph import Builder, Graph
from tiler.tiling import TileGrid, Window, smallest_chunk
from tiler.values import (
    cache_values,
    cached_histogram,
    cached_interval_histograms,
    cached_values_within,
)

# The most tiles a run may have (check_size, called by tiler.api.run
# before anything is written). The driver pays for every tile whatever its
# size. Measured on tiny tiles: a 100 000-tile run (1 x 3 200 000 px in tiles
# of 32, default pipeline, --scheduler sync) peaked at 1.1 GB, 9 KB a tile over
# an idle tiler: each pass's graph (1.2 KB a tile for a label pass) and what
# the passes keep per tile (label statistics, seam pairs, histograms, journal
# records, stitched look-up tables). The default local cluster, whose
# scheduler lives in the same process, adds about 21 KB a tile at the peak of
# a label pass (50 000 tiles of trivial tasks: 1.07 GB) and 1-2 ms a task. A
# tile also costs 10-15 ms of work in all, whatever its size (each task opens
# and writes its chunks). 200 000 tiles are thus about 2 GB on the driver with
# a local scheduler (sync, threads), 6 GB with the default cluster, and an hour
# or so of overhead: a lot, but small next to the pixels of any image that
# needs that many tiles. The largest image a run accepts (--max-pixels, 200
# gigapixels) is 48 000 tiles at the default chunk size of 2048 and 191 000 at
# 1024. More tiles are tiles too small for their image (the fuzzing's
# 16 777 216 x 1 px header at --chunk-size 32 made 524 288, and ran out of
# 2 GiB planning its first pass): a larger chunk size is the fix.
MAX_TILES = 200_000


def check_size(grid: TileGrid, name: str, limit: int | None = None) -> None:
    """Refuse a grid of more than ``limit`` tiles (default ``MAX_TILES``), as a ConfigError.

    The message names the image ``name``, its size, the tiles, and the
    smallest square chunk size that fits.
    """
    limit = MAX_TILES if limit is None else limit
    if len(grid) <= limit:
        return
    (h, w), (ch, cw) = grid.shape, grid.chunks
    raise ConfigError(
        f"{name}: {h} x {w} px in {len(grid)} tiles of {ch} x {cw} px is more than the "
        f"{limit} tiles a run handles; pass a larger --chunk-size "
        f"({smallest_chunk(grid.shape, limit)} or more)"
    )


def merge_range(
    a: tuple[float, float, int], b: tuple[float, float, int]
) -> tuple[float, float, int]:
    return (min(a[0], b[0]), max(a[1], b[1]), a[2] + b[2])


def merge_minmax(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (min(a[0], b[0]), max(a[1], b[1]))


def reduce_graph(
    name: str,
    task: Callable,
    args: tuple,
    grid: TileGrid,
    combine: Callable[[Any, Any], Any],
    options: tuple = (),
) -> Graph:
    """``task(*args, window, *options)`` on every tile, combined (in tile order) by the driver."""
    g = Builder(name, grid)
    parts = [g.add(f"tile-{t}", task, *args, w, *options, tile=(t, w)) for t, _, _, w in grid]
    return g.graph(parts, combine)


def range_graph(source: RasterSource, pipeline, grid: TileGrid, halo: int, cache: str) -> Graph:
    """Preprocess every tile once into ``cache``; ``(min, max, n_valid)`` over valid pixels."""
    g = Builder("range", grid)
    parts = [
        g.add(f"tile-{t}", cache_values, source, pipeline, w, halo, cache, tile=(t, w))
        for t, _, _, w in grid
    ]
    return g.graph(parts, merge_range)


def histogram_graph(
    source: RasterSource,
    pipeline,
    grid: TileGrid,
    halo: int,
    cache: str,
    vmin: float,
    vmax: float,
    codes: bool = False,
) -> Graph:
    """The global 256-bin histogram over ``[vmin, vmax]`` of the cached values, summed.

    With ``codes``, tiles keep their bin codes in ``cache`` if it keeps codes.
    """
    g = Builder("histogram", grid)
    args = (halo, cache, vmin, vmax, codes)
    parts = [
        g.add(f"tile-{t}", cached_histogram, source, pipeline, w, *args, tile=(t, w))
        for t, _, _, w in grid
    ]
    return g.graph(parts, operator.add)


def _add_interval_results(a: list, b: list) -> list:
    return [(x[0] + y[0], x[1] + y[1]) for x, y in zip(a, b, strict=True)]


def _concatenate_lists(a: list, b: list) -> list:
    return [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]


def interval_graph(
    source: RasterSource,
    pipeline,
    grid: TileGrid,
    halo: int,
    cache: str,
    intervals: tuple[tuple[float, float], ...],
    *,
    collect: bool = False,
) -> Graph:
    """Per interval: values below it and its 256-bin histogram, summed over tiles.

    With ``collect``, the values in each interval instead (unsorted across tiles).
    """
    g = Builder("collect" if collect else "intervals", grid)
    task = cached_values_within if collect else cached_interval_histograms
    parts = [
        g.add(f"tile-{t}", task, source, pipeline, w, halo, cache, intervals, tile=(t, w))
        for t, _, _, w in grid
    ]
    return g.graph(parts, _concatenate_lists if collect else _add_interval_results)


def label_graph(
    recipes: Callable[[int], masks.TileMask],
    grid: TileGrid,
    *,
    background: bool,
    connectivity: int,
    store: str | None = None,
    store_final: str | None = None,
    task: Callable = tasks.label_tile,
) -> Graph:
    """Label every tile, then find the label pairs across every seam: two tasks per tile.

    The seam task of tile ``t`` compares it with its right, lower and
    lower-right neighbours and returns ``(TileStats of t, (K, 2) uint64 pairs)``,
    so only statistics and pairs reach the driver; tile edges stay on the workers.
    """
    g = Builder("label", grid)
    rows, cols = grid.grid
    labelled = {
        (i, j): g.add(
            f"tile-{t}",
            task,
            recipes(t),
            window,
            background,
            connectivity,
            store,
            store_final,
            tile=(t, window),
        )
        for t, i, j, window in grid
    }
    keys = []
    for t, i, j, window in grid:
        neighbours = [
            (grid.index(a, b), labelled[a, b]) if a < rows and b < cols else (None, None)
            for a, b in ((i, j + 1), (i + 1, j), (i + 1, j + 1))
        ]
        args = [t, labelled[i, j]] + [x for pair in neighbours for x in pair]
        keys.append(g.add(f"seams-{t}", _seams, grid.stride, connectivity, *args, tile=(t, window)))
    return g.graph(keys)


def _seams(stride: int, connectivity: int, index: int, tile, *neighbours):
    """``(stats, pairs)`` of one tile from its own and its neighbours' label results."""
    stats, edges = tile
    found = [
        None if result is None else (k, result[1])
        for k, result in zip(neighbours[::2], neighbours[1::2], strict=True)
    ]
    pairs = seam_pairs((index, edges), *found, stride=stride, connectivity=connectivity)
    return stats, pairs


def split_graph(base: masks.MaskBase, grid: TileGrid, step, connectivity: int, local: str) -> Graph:
    """Split every tile's window, then decide each core with its neighbours: two tasks per tile.

    The second task of tile ``t`` keeps its local labels in the Zarr array
    ``local`` and returns ``(provisional ids, TileStats, fallback counts)``.
    """
    window = (tasks.split_window, base)
    return instance_graph(grid, step.halo, local, window, (step, connectivity))


def instance_graph(
    grid: TileGrid, halo: int, local: str, window: tuple, options: tuple = ()
) -> Graph:
    """Instances per tile window, then each core decided with its neighbours: two tasks per tile.

    ``window`` is ``(function, *args)``; the window task of tile ``t`` calls
    ``function(*args, window, t, *options)`` and returns a
    :class:`tiler.split.SplitTile`. The second task of tile ``t`` keeps its
    local labels in the Zarr array ``local`` and returns ``(provisional ids,
    TileStats, fallback counts)``.
    """
    g = Builder("instances", grid)
    windows = {
        (i, j): g.add(f"window-{t}", *window, w, t, *options, tile=(t, w)) for t, i, j, w in grid
    }
    stride = split_stride(grid.chunks, halo)
    keys = [
        g.add(
            f"core-{t}",
            tasks.assign_split,
            stride,
            local,
            windows[i, j],
            *(windows[n] for n in grid.neighbours(i, j, halo)),
            tile=(t, w),
        )
        for t, i, j, w in grid
    ]
    return g.graph(keys)


def points_graph(grid: TileGrid, local: str, read: Callable, settings: Any) -> Graph:
    """Each tile's points from its window of the confidence ``read`` gives (one task per tile).

    The task keeps the tile's local labels in ``local`` and returns
    :func:`tiler.tasks.points_tile`'s tuple.
    """
    g = Builder("points", grid)
    keys = [
        g.add(f"tile-{t}", tasks.points_tile, read, settings, local, w, tile=(t, w))
        for t, _, _, w in grid
    ]
    return g.graph(keys)


def split_write_graph(
    local: str, luts: Callable[[int], np.ndarray], grid: TileGrid, *, path: str
) -> Graph:
    """Relabel every tile's local split labels and write them (chunk-aligned)."""
    g = Builder("write", grid)
    keys = [
        g.add(f"tile-{t}", tasks.write_split_labels, local, w, luts(t), path, tile=(t, w))
        for t, _, _, w in grid
    ]
    return g.graph(keys)


def mask_graph(recipes: Callable[[int], masks.TileMask], grid: TileGrid, *, path: str) -> Graph:
    """Write every tile's mask into the Zarr array at ``path`` (chunk-aligned)."""
    g = Builder("mask", grid)
    return g.graph(
        [
            g.add(f"tile-{t}", tasks.write_mask, recipes(t), w, path, tile=(t, w))
            for t, _, _, w in grid
        ]
    )


def write_graph(
    recipes: Callable[[int], masks.TileMask],
    luts: Callable[[int], np.ndarray],
    grid: TileGrid,
    *,
    connectivity: int,
    path: str,
) -> Graph:
    """Relabel and write every tile; each task carries only its tile's look-up table."""
    g = Builder("write", grid)
    keys = [
        g.add(
            f"tile-{t}", tasks.write_labels, recipes(t), w, connectivity, luts(t), path, tile=(t, w)
        )
        for t, _, _, w in grid
    ]
    return g.graph(keys)


def task_count(*graphs: Graph) -> int:
    """Number of tasks in some graphs."""
    return sum(len(g) for g in graphs)


def window_graph(
    name: str, task: Callable, args: tuple, windows: list[Window], extra: list | None = None
) -> Graph:
    """``task(*args, window)`` (or ``task(*args, window, extra[k])``) for every window,
    results in order: the passes over finished runs (reports, exports)."""
    g = Builder(name)
    keys = [
        g.add(f"window-{k}", task, *args, w, *(() if extra is None else (extra[k],)), tile=(k, w))
        for k, w in enumerate(windows)
    ]
    return g.graph(keys)


def field_graph(name: str, task: Callable, args: tuple, items: list) -> Graph:
    """``task(*args, k, items[k])`` for every field ``k``, one task each, results in
    order: the per-field analyses of finished runs (``tiler rows``)."""
    g = Builder(name)
    keys = [g.add(f"field-{k}", task, *args, k, item) for k, item in enumerate(items)]
    return g.graph(keys)
