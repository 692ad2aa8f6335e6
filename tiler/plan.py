"""The one place that builds dask graphs.

Each pass over the image is a graph of a few tasks per tile (never per seam
face or per label), so graphs grow linearly with the number of tiles:

* ``range_graph`` / ``histogram_graph`` – the global Otsu statistics, tree-reduced;
* ``label_graph``   – label every tile, then one seam task per tile that
  compares it with its right, lower and lower-right neighbours;
* ``write_graph``   – relabel every tile with its slice of the look-up table.

:class:`Executor` runs graphs on the synchronous or threaded scheduler or on a
``dask.distributed`` client.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import reduce
from typing import Any

import dask
import dask.threaded
import numpy as np

from tiler import tasks
from tiler.io.raster import RasterSource, WindowRC
from tiler.split import neighbours, split_stride
from tiler.stitch import seam_pairs


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``chunks`` over an image of ``shape``; the last row/column may be thinner.

    Tiles are numbered in row-major order; they are also the output Zarr chunks.
    """

    shape: tuple[int, int]
    chunks: tuple[int, int]

    def __post_init__(self) -> None:
        if min(self.chunks) < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.chunks}")

    @property
    def grid(self) -> tuple[int, int]:
        return (
            math.ceil(self.shape[0] / self.chunks[0]),
            math.ceil(self.shape[1] / self.chunks[1]),
        )

    def __len__(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def stride(self) -> int:
        """Provisional-id stride: more than the pixels of any tile."""
        return self.chunks[0] * self.chunks[1] + 1

    def index(self, i: int, j: int) -> int:
        return i * self.grid[1] + j

    def window(self, i: int, j: int) -> WindowRC:
        (h, w), (ch, cw) = self.shape, self.chunks
        return ((i * ch, min((i + 1) * ch, h)), (j * cw, min((j + 1) * cw, w)))

    def __iter__(self) -> Iterator[tuple[int, int, int, WindowRC]]:
        """``(tile_index, i, j, window)`` in row-major order."""
        rows, cols = self.grid
        for i in range(rows):
            for j in range(cols):
                yield self.index(i, j), i, j, self.window(i, j)


@dataclass
class Graph:
    """A hand-built dask task graph and the keys whose values a pass needs.

    Tasks are tuples ``(function, *args)``; arguments that are keys of other
    tasks are replaced by their results. Building them directly (as odc-geo
    does) costs a few microseconds per task, where ``dask.delayed`` would walk
    every argument's fields.
    """

    tasks: dict[str, tuple]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.tasks)


class _Builder:
    def __init__(self, name: str):
        self.prefix = f"tiler-{name}-{uuid.uuid4().hex[:12]}"
        self.tasks: dict[str, tuple] = {}

    def add(self, label: str, function: Callable, *args: Any) -> str:
        key = f"{self.prefix}-{label}"
        self.tasks[key] = (function, *args)
        return key

    def tree(
        self, parts: list[str], combine: Callable[[Any, Any], Any], split_every: int = 16
    ) -> str:
        """Combine many task results in a tree of tasks of at most ``split_every`` inputs."""
        level = 0
        while len(parts) > 1:
            parts = [
                self.add(f"reduce-{level}-{k}", _fold, combine, *parts[k : k + split_every])
                for k in range(0, len(parts), split_every)
            ]
            level += 1
        return parts[0]

    def graph(self, keys: list[str]) -> Graph:
        return Graph(self.tasks, keys)


def _fold(combine: Callable[[Any, Any], Any], *values: Any) -> Any:
    return reduce(combine, values)


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
    """``task(*args, window, *options)`` on every tile, combined in a tree."""
    g = _Builder(name)
    parts = [g.add(f"tile-{t}", task, *args, w, *options) for t, _, _, w in grid]
    return g.graph([g.tree(parts, combine)])


def range_graph(source: RasterSource, pipeline, grid: TileGrid, halo: int, cache: str) -> Graph:
    """Preprocess every tile once into ``cache``; ``(min, max, n_valid)`` over valid pixels."""
    g = _Builder("range")
    parts = [
        g.add(f"tile-{t}", tasks.cache_values, source, pipeline, w, halo, cache)
        for t, _, _, w in grid
    ]
    return g.graph([g.tree(parts, merge_range)])


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
    g = _Builder("histogram")
    args = (halo, cache, vmin, vmax, codes)
    parts = [
        g.add(f"tile-{t}", tasks.cached_histogram, source, pipeline, w, *args)
        for t, _, _, w in grid
    ]
    return g.graph([g.tree(parts, operator.add)])


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
    g = _Builder("collect" if collect else "intervals")
    task = tasks.cached_values_within if collect else tasks.cached_interval_histograms
    parts = [
        g.add(f"tile-{t}", task, source, pipeline, w, halo, cache, intervals) for t, _, _, w in grid
    ]
    return g.graph([g.tree(parts, _concatenate_lists if collect else _add_interval_results)])


def label_graph(
    recipes: Callable[[int], tasks.TileMask],
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
    g = _Builder("label")
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
        )
        for t, i, j, window in grid
    }
    keys = []
    for t, i, j, _ in grid:
        neighbours = [
            (grid.index(a, b), labelled[a, b]) if a < rows and b < cols else (None, None)
            for a, b in ((i, j + 1), (i + 1, j), (i + 1, j + 1))
        ]
        args = [t, labelled[i, j]] + [x for pair in neighbours for x in pair]
        keys.append(g.add(f"seams-{t}", _seams, grid.stride, connectivity, *args))
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


def split_graph(base: tasks.MaskBase, grid: TileGrid, step, connectivity: int, local: str) -> Graph:
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
    g = _Builder("instances")
    windows = {(i, j): g.add(f"window-{t}", *window, w, t, *options) for t, i, j, w in grid}
    stride = split_stride(grid.chunks, halo)
    keys = [
        g.add(
            f"core-{t}",
            tasks.assign_split,
            stride,
            local,
            windows[i, j],
            *(windows[n] for n in neighbours(i, j, grid.grid, grid.chunks, halo)),
        )
        for t, i, j, _ in grid
    ]
    return g.graph(keys)


def split_write_graph(
    local: str, luts: Callable[[int], np.ndarray], grid: TileGrid, *, path: str
) -> Graph:
    """Relabel every tile's local split labels and write them (chunk-aligned)."""
    g = _Builder("write")
    keys = [
        g.add(f"tile-{t}", tasks.write_split_labels, local, w, luts(t), path) for t, _, _, w in grid
    ]
    return g.graph(keys)


def mask_graph(recipes: Callable[[int], tasks.TileMask], grid: TileGrid, *, path: str) -> Graph:
    """Write every tile's mask into the Zarr array at ``path`` (chunk-aligned)."""
    g = _Builder("mask")
    return g.graph(
        [g.add(f"tile-{t}", tasks.write_mask, recipes(t), w, path) for t, _, _, w in grid]
    )


def write_graph(
    recipes: Callable[[int], tasks.TileMask],
    luts: Callable[[int], np.ndarray],
    grid: TileGrid,
    *,
    connectivity: int,
    path: str,
) -> Graph:
    """Relabel and write every tile; each task carries only its tile's look-up table."""
    g = _Builder("write")
    keys = [
        g.add(f"tile-{t}", tasks.write_labels, recipes(t), w, connectivity, luts(t), path)
        for t, _, _, w in grid
    ]
    return g.graph(keys)


class Executor:
    """Runs graphs on a named scheduler (``sync``, ``threads``) or a distributed client."""

    def __init__(self, scheduler: Any = "threads"):
        self.scheduler = scheduler

    def compute(self, graph: Graph) -> list[Any]:
        """The values of ``graph.keys``, in order."""
        if self.scheduler == "sync":
            return list(dask.get(graph.tasks, graph.keys))
        if self.scheduler == "threads":
            return list(dask.threaded.get(graph.tasks, graph.keys))
        return list(self.scheduler.get(graph.tasks, graph.keys, sync=True))


def task_count(*graphs: Graph) -> int:
    """Number of tasks in some graphs."""
    return sum(len(g) for g in graphs)
