"""The pass runner: runs each pass's graph and keeps its books, for every pass alike.

A pass is one graph of a task or two per tile (:mod:`tiler.plan`). The
runner gives it to the executor (:mod:`tiler.executor`: batches of keys on a
local scheduler, futures on a client) without the tiles that the journal
already holds (a resumed run), records each tile's result in the journal as
it arrives, moves the pass's progress bar, adds up the pass's time and logs
one line when it ends. A tile that fails raises (:class:`tiler.errors.TileError`
names it) and the journal keeps the tiles done, so ``--resume`` computes only
the rest; a distributed scheduler retries a task whose worker died as dask
configures it, before that.

The runner also holds what every pass reads or writes besides its pipeline:
the source, the grid, the work folder (its Zarr work stores) and the value
cache of the Otsu passes (:mod:`tiler.cache`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tiler import cache as value_cache
from tiler.executor import Executor
from tiler.io.label_store import (
    create_confidence_store,
    create_local_label_store,
    create_mask_store,
)
from tiler.journal import Journal
from tiler.masks import TileMask
from tiler.plan import label_graph, mask_graph
from tiler.progress import Progress
from tiler.source import RasterSource
from tiler.stitch import Stitched, stitch
from tiler.taskgraph import Graph
from tiler.tasks import label_tile
from tiler.tiling import TileGrid

Log = Callable[[str], None]


class PassRunner:
    """Runs the passes of one run over one source on one executor, journaled and timed."""

    def __init__(
        self,
        source: RasterSource,
        grid: TileGrid,
        executor: Executor,
        workdir: Any,
        log: Log = lambda message: None,
        cache: str | None = None,
        journal: Journal | None = None,
        progress: Progress | None = None,
    ):
        self.source, self.grid, self.executor = source, grid, executor
        self.workdir, self.log = workdir, log
        self.cache = cache if cache is not None else str(workdir / "values")
        self.journal = journal if journal is not None else Journal(None)
        self.progress = progress if progress is not None else Progress(enabled=False)
        self.timings: dict[str, float] = {}

    def compute(self, name: str, graph: Graph) -> list:
        """Run one pass: its tiles not yet in the journal, each result logged as it arrives."""
        start = time.perf_counter()
        log = self.journal.open_pass(name, len(graph.keys))
        index = {key: i for i, key in enumerate(graph.keys)}
        todo = [key for key in graph.keys if index[key] not in log.done]
        megapixels = self.grid.shape[0] * self.grid.shape[1] / 1e6
        with self.progress.bar(name, len(graph.keys), log.reused, megapixels) as bar:

            def arrived(key: str, value) -> None:
                log.record(index[key], value)
                bar.update()

            try:
                self.executor.compute(graph, todo, arrived)
            finally:  # in object storage, the records not yet written (tiler.journal)
                log.flush()
        results = graph.result([log.done[i] for i in range(len(graph.keys))])
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        reused = f" ({log.reused} from the journal)" if log.reused else ""
        self.log(f"{name}: {len(graph.keys)} tiles{reused} in {seconds:.2f} s")
        return results

    def label(
        self,
        name: str,
        recipes: Callable[[int], TileMask],
        *,
        background: bool,
        connectivity: int,
        store: str | None,
        store_final: str | None = None,
        task: Callable = label_tile,
    ) -> Stitched:
        """A label pass: every tile's mask labelled, its seams paired, all stitched."""
        graph = label_graph(
            recipes,
            self.grid,
            background=background,
            connectivity=connectivity,
            store=store,
            store_final=store_final,
            task=task,
        )
        results = self.compute(name, graph)
        pairs = [pairs for _, pairs in results]
        tiles = [stats for stats, _ in results]
        del results  # stitch drops each tile's statistics once gathered: none other holds them
        return stitch(tiles, pairs, self.grid.stride, release=True)

    def materialise(self, name: str, recipes: Callable[[int], TileMask], path: str) -> None:
        """A mask pass: every tile's mask written into the work Zarr at ``path``."""
        self.compute(name, mask_graph(recipes, self.grid, path=path))

    def mask_store(self, name: str) -> str:
        """A boolean work Zarr ``name`` in the work folder, chunked as the tiles."""
        return create_mask_store(self.workdir / name, self.grid.shape, self.grid.chunks)

    def confidence_store(self, name: str) -> str:
        """A float32 work Zarr ``name`` for a model's confidence, chunked as the tiles."""
        return create_confidence_store(self.workdir / name, self.grid.shape, self.grid.chunks)

    def local_label_store(self, name: str) -> str:
        """A work Zarr ``name`` for each tile's local instance labels, until the write."""
        return create_local_label_store(self.workdir / name, self.grid.shape, self.grid.chunks)

    def drop_value_cache(self) -> None:
        """A stored mask replaces the value cache: free the disk (or memory) early."""
        value_cache.drop(self.cache)
