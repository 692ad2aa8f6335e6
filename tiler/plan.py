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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed, delayed
from dask.highlevelgraph import HighLevelGraph

from tiler import tasks
from tiler.io.raster import RasterSource, WindowRC
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
        return (math.ceil(self.shape[0] / self.chunks[0]), math.ceil(self.shape[1] / self.chunks[1]))

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


def tree_reduce(parts: Sequence[Delayed], combine: Callable[[Any, Any], Any], split_every: int = 16) -> Delayed:
    """Combine many delayed values in a tree of tasks of at most ``split_every`` inputs."""
    parts = list(parts)
    fold = delayed(lambda *xs: reduce(combine, xs), pure=False)
    while len(parts) > 1:
        parts = [fold(*parts[k : k + split_every]) for k in range(0, len(parts), split_every)]
    return parts[0]


def _merge_range(a: tuple[float, float, int], b: tuple[float, float, int]) -> tuple[float, float, int]:
    return (min(a[0], b[0]), max(a[1], b[1]), a[2] + b[2])


def range_graph(source: RasterSource, pipeline, grid: TileGrid) -> Delayed:
    """``(min, max, n_valid)`` of the preprocessed values over all valid pixels."""
    task = delayed(tasks.value_range, pure=False)
    return tree_reduce([task(source, pipeline, w) for _, _, _, w in grid], _merge_range)


def histogram_graph(source: RasterSource, pipeline, grid: TileGrid, vmin: float, vmax: float) -> Delayed:
    """The global 256-bin histogram over ``[vmin, vmax]``, summed over the tiles."""
    task = delayed(tasks.value_histogram, pure=False)
    return tree_reduce([task(source, pipeline, w, vmin, vmax) for _, _, _, w in grid], operator.add)


def label_graph(
    recipes: Callable[[int], tasks.TileMask],
    grid: TileGrid,
    *,
    background: bool,
    connectivity: int,
    store: str | None = None,
) -> tuple[list[Delayed], list[Delayed]]:
    """Label every tile and find the label pairs across every seam.

    Returns
    -------
    stats : list of Delayed
        One ``TileStats`` per tile, in tile order.
    pairs : list of Delayed
        One ``(K, 2)`` uint64 array of equivalent provisional ids per tile.
    """
    label = delayed(tasks.label_tile, pure=False, nout=2)
    seams = delayed(seam_pairs, pure=False)
    rows, cols = grid.grid
    stats, edges = [], {}
    for t, i, j, window in grid:
        s, e = label(recipes(t), window, background=background, connectivity=connectivity, store=store)
        stats.append(s)
        edges[i, j] = (t, e)
    # The seam task gets (index, edges) pairs; dask resolves the Delayed inside tuples.
    pairs = [
        seams(
            edges[i, j],
            edges.get((i, j + 1)),
            edges.get((i + 1, j)),
            edges.get((i + 1, j + 1)),
            stride=grid.stride,
            connectivity=connectivity,
        )
        for (i, j) in ((i, j) for i in range(rows) for j in range(cols))
    ]
    return stats, pairs


def mask_graph(recipes: Callable[[int], tasks.TileMask], grid: TileGrid, *, path: str) -> list[Delayed]:
    """Write every tile's mask into the Zarr array at ``path`` (chunk-aligned)."""
    write = delayed(tasks.write_mask, pure=False)
    return [write(recipes(t), window, path=path) for t, _, _, window in grid]


def write_graph(
    recipes: Callable[[int], tasks.TileMask],
    luts: Callable[[int], np.ndarray],
    grid: TileGrid,
    *,
    connectivity: int,
    path: str,
) -> list[Delayed]:
    """Relabel and write every tile; each task carries only its tile's look-up table."""
    write = delayed(tasks.write_labels, pure=False)
    return [
        write(recipes(t), window, connectivity=connectivity, lut=luts(t), path=path)
        for t, _, _, window in grid
    ]


def task_count(collections: Sequence[Delayed]) -> int:
    """Number of tasks in the merged graph of some delayed values."""
    return len(HighLevelGraph.merge(*(c.__dask_graph__() for c in collections)))


class Executor:
    """Runs graphs on a named scheduler (``sync``, ``threads``) or a distributed client."""

    def __init__(self, scheduler: Any = "threads", *, progress: Callable[[str], None] | None = None):
        self.scheduler = scheduler
        self.progress = progress

    def compute(self, *collections: Any) -> tuple[Any, ...]:
        return dask.compute(*collections, scheduler=self.scheduler, optimize_graph=False)
