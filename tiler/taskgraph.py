"""A pass's task graph, and the builder that names its tasks so that dask runs tiles in strips.

:mod:`tiler.plan` builds every graph with :class:`Builder`; the executor
(:mod:`tiler.executor`) runs a :class:`Graph`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from typing import Any

from tiler import tasks
from tiler.tiling import TileGrid


@dataclass
class Graph:
    """A hand-built dask task graph and the keys whose values a pass needs.

    Tasks are tuples ``(function, *args)``; arguments that are keys of other
    tasks are replaced by their results (keys are only ever top-level
    arguments: :func:`tiler.executor.run_batches` finds them there). Building them
    directly (as odc-geo does) costs a few microseconds per task, where
    ``dask.delayed`` would walk every argument's fields. A tile's tasks are
    ``(tasks.in_tile, where, function, *args)``, ``where`` naming the tile.
    """

    tasks: dict[str, tuple]
    keys: list[str]
    combine: Callable[[Any, Any], Any] | None = None

    def __len__(self) -> int:
        return len(self.tasks)

    def tile_of(self, key: str) -> str:
        """The tile a task belongs to, for messages (its window), or the key itself."""
        task = self.tasks.get(key)
        return task[1] if task is not None and task[0] is tasks.in_tile else key

    def result(self, values: list[Any]) -> list[Any]:
        """The pass's result from its keys' values: folded in tile order if it is a reduction."""
        return [reduce(self.combine, values)] if self.combine is not None else values


# Tiles run in vertical strips this many pixels wide (TileGrid.in_strips), so
# that a tile's neighbours ran shortly before it and the input blocks they
# share are still decoded (tiler.io.blocks keeps 192 MiB of them). Decodes
# per 512² RGBA block for 2048² tiles grown by 7 px, one thread, simulated:
# 1.09 at 32768² and 1.12 at 65536 x 163840, against 1.47 and 1.48 in
# row-major order and 2.25 with no cache (strips of 4096 px: 1.22 and 1.24;
# of 16384 px: 1.03 and 1.19, as a strip's row of tiles outgrows the cache).
STRIP_PIXELS = 8192


class Builder:
    """A graph's tasks; a tile's tasks are named so that dask runs the tiles in strips.

    dask's schedulers run tasks that nothing orders otherwise by their keys,
    the greatest first: a tile's keys start with its place in
    :meth:`TileGrid.in_strips`, counted down.
    """

    def __init__(self, name: str, grid: TileGrid | None = None):
        self.prefix = f"tiler-{name}-{uuid.uuid4().hex[:12]}"
        self.tasks: dict[str, tuple] = {}
        self.places: dict[int, str] = {}  # the tiles' names, one string for all of a tile's tasks
        self.ranks: dict[int, str] = {}
        if grid is not None:
            order = grid.in_strips(STRIP_PIXELS)
            digits = len(str(len(order)))
            self.ranks = {t: f"{len(order) - r:0{digits}d}" for r, t in enumerate(order)}

    def add(self, label: str, function: Callable, *args: Any, tile: tuple | None = None) -> str:
        """Add a task; ``tile=(t, window)`` names the tile it works on in its errors."""
        if tile is None:
            key = f"{self.prefix}-{label}"
            self.tasks[key] = (function, *args)
        else:
            key = f"{self.prefix}-{self.ranks.get(tile[0], '')}-{label}"
            where = self.places.get(tile[0])
            if where is None:
                where = self.places[tile[0]] = f"tile {tile[0]} ({tile[1]})"
            self.tasks[key] = (tasks.in_tile, where, function, *args)
        return key

    def graph(self, keys: list[str], combine: Callable[[Any, Any], Any] | None = None) -> Graph:
        return Graph(self.tasks, keys, combine)
