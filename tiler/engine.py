"""The passes of a tiled run, in order, with the small reductions between them.

0. Global preprocessing steps (``equalize``, ``clahe``): the passes that find
   their statistics over the steps before them; they then run per tile.
1. The mask the refine steps start from, by threshold kind:
   global (Otsu, multi-Otsu: the value range over valid pixels, then one
   256-bin histogram; percentile: the range, then passes narrowing an
   interval around the order statistics), per pixel or local (fixed, local
   threshold, a model's mask: nothing to find), or object level (region
   growing, Canny's hysteresis: label passes whose kept components are
   stored as the starting mask).
2. For each stage of ``refine`` (local steps, then object steps): one label
   pass per object step, stitched into look-up-table edits; the first pass of
   a stage also stores the stage's mask in a work Zarr, so later passes read
   the mask instead of decoding the raster again. A stage followed by more
   local steps is written out whole, to be read with a halo by the next.
3. Final labels: the foreground labelled with the pipeline's connectivity and
   stitched (a trailing ``remove_small_objects`` becomes a filter of this
   pass); or instances, from a final ``split`` or a model's labels, decided
   per halo window and owned by centroid (:mod:`tiler.split`).
4. Write: each tile relabelled with its slice of the final look-up table.

The driver holds only per-label statistics and seam pairs; tiles stay on the workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tiler import cache as value_cache
from tiler.config import CannyEdges, Clahe, Grow, Pipeline, Split, Stage
from tiler.errors import InputError
from tiler.executor import Executor
from tiler.inference import model_window
from tiler.io.label_store import create_local_label_store, create_mask_store
from tiler.io.seeds import seed_pixels
from tiler.journal import Journal
from tiler.kernels.edges import hysteresis_connectivity
from tiler.kernels.label import label
from tiler.kernels.threshold import (
    binnable,
    codes_possible,
    flood_range,
    narrow,
    percentile_from_ranks,
    percentile_ranks,
    threshold_index,
)
from tiler.masks import (
    CannyMask,
    IntervalMask,
    KeptTile,
    MaskBase,
    RasterMask,
    StoredMask,
    TileMask,
    UnionTile,
)
from tiler.plan import (
    Graph,
    histogram_graph,
    instance_graph,
    interval_graph,
    label_graph,
    mask_graph,
    merge_minmax,
    merge_range,
    range_graph,
    reduce_graph,
    split_graph,
    split_write_graph,
    write_graph,
)
from tiler.progress import Progress
from tiler.source import RasterSource
from tiler.split import renumber_split
from tiler.stitch import Stitched, renumber, stitch
from tiler.tasks import label_hysteresis, label_tile
from tiler.tiling import TileGrid, Window
from tiler.values import clahe_output_range, full_range, index_window

Log = Callable[[str], None]

# A percentile's last pass gathers at most this many values per rank (32 MiB).
COLLECT_LIMIT = 1 << 22


@dataclass
class Segmentation:
    """What the passes found: the threshold, the final objects and how long each pass took."""

    threshold: float | tuple[float, ...] | None
    value_range: tuple[float, float, int] | None
    stitched: Stitched
    keep: np.ndarray
    final_ids: np.ndarray
    dtype: np.dtype
    timings: dict[str, float] = field(default_factory=dict)
    split_fallbacks: int | None = None  # watershed split: windows that disagreed

    @classmethod
    def of(
        cls,
        stitched: Stitched,
        keep: np.ndarray,
        threshold: float | tuple[float, ...] | None,
        value_range: tuple[float, float, int] | None,
        timings: dict[str, float],
    ) -> Segmentation:
        """The kept objects of ``stitched``, numbered 1.. in order, in the smallest label dtype."""
        return cls(
            threshold=threshold,
            value_range=value_range,
            stitched=stitched,
            keep=keep,
            final_ids=renumber(keep),
            dtype=label_dtype(int(keep.sum())),
            timings=timings,
        )

    @property
    def n_objects(self) -> int:
        return int(self.keep.sum())

    def object_stats(self) -> dict[str, np.ndarray]:
        return {name: values[self.keep] for name, values in self.stitched.stats.items()}


def label_dtype(n_objects: int) -> np.dtype:
    """uint32 unless the objects need more ids."""
    return np.dtype(np.uint32) if n_objects <= np.iinfo(np.uint32).max else np.dtype(np.uint64)


@dataclass
class MaskState:
    """A mask base, the local steps still to apply over a halo, and the object edits so far."""

    base: MaskBase
    local: tuple = ()
    edits: list = field(default_factory=list)  # (step, Stitched, per-object values)
    connectivity: int = 2

    def recipe(self, tile_index: int) -> TileMask:
        """The recipe of one tile, carrying only that tile's slices of the edit tables."""
        edits = tuple((step, st.tile_lut(tile_index, v, False)) for step, st, v in self.edits)
        return TileMask(self.base, self.local, edits, self.connectivity)


class Passes:
    """Runs the passes of one pipeline over one source on one executor."""

    def __init__(
        self,
        source: RasterSource,
        pipeline: Pipeline,
        grid: TileGrid,
        executor: Executor,
        workdir: Path,
        log: Log = lambda message: None,
        cache: str | None = None,
        journal: Journal | None = None,
        progress: Progress | None = None,
    ):
        self.source, self.pipeline, self.grid = source, pipeline.in_pixels(), grid
        self.executor, self.workdir, self.log = executor, workdir, log
        self.cache = cache if cache is not None else str(workdir / "values")
        self.journal = journal if journal is not None else Journal(None)
        self.progress = progress if progress is not None else Progress(enabled=False)
        self.timings: dict[str, float] = {}
        self.split_labels: str | None = None
        self.split_fallbacks = 0

    def _compute(self, name: str, graph: Graph) -> list:
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

            self.executor.compute(graph, todo, arrived)
        results = graph.result([log.done[i] for i in range(len(graph.keys))])
        seconds = time.perf_counter() - start
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        reused = f" ({log.reused} from the journal)" if log.reused else ""
        self.log(f"{name}: {len(graph.keys)} tiles{reused} in {seconds:.2f} s")
        return results

    # -- 1. threshold ------------------------------------------------------

    def threshold(
        self,
    ) -> tuple[MaskBase, float | tuple[float, ...] | None, tuple[float, float, int] | None]:
        """The mask the first stage starts from, the threshold(s), and (Otsu) the value range.

        With Otsu, the tiles are preprocessed once into a value cache (grown by
        the first stage's halo); the histogram and the mask are made from it.
        When the values are not kept, the histogram pass keeps bin codes for
        the mask instead (see :mod:`tiler.cache`).
        """
        pipeline, grid = self.pipeline, self.grid
        step = pipeline.threshold
        if pipeline.model is not None:
            return RasterMask(self.source, pipeline, None), None, None
        if step.passes == "none":  # per pixel (a known value) or local: nothing to find
            return RasterMask(self.source, pipeline, step.known), step.known, None
        if step.passes == "grow":
            return self._grow(step), None, None
        if step.passes == "edges":
            return self._edges(step), None, None
        halo = pipeline.stages()[0].reach
        value_cache.prepare(self.cache)
        value_range = self._value_range("preprocess", pipeline, halo, self.cache)
        vmin, vmax, n_valid = value_range
        if step.passes == "percentile":
            t = self._percentile(step.q, value_range, halo)
            return RasterMask(self.source, pipeline, t, self.cache), t, value_range
        (counts,) = self._compute(
            "histogram",
            histogram_graph(self.source, pipeline, grid, halo, self.cache, vmin, vmax, step.codes),
        )
        try:
            t = step.from_histogram(counts, vmin, vmax)
        except ValueError as exc:
            raise InputError(f"{self.source.name}: {step.names[0]}: {exc}") from None
        if not step.codes:
            return RasterMask(self.source, pipeline, t, self.cache), t, value_range
        codes = value_cache.keeps_codes(self.cache) and codes_possible(vmin, vmax)
        index = threshold_index(t, vmin, vmax) if codes else None
        return RasterMask(self.source, pipeline, t, self.cache, index), t, value_range

    def _grow(self, step: Grow) -> StoredMask:
        """The union of the seeds' floods, stored: one labelling pass per distinct seed range.

        A flood is the connected component holding its seed of the valid
        pixels within the seed's range; the stitched labels find it across
        any number of tiles, and seeds that share a range share the pass.
        """
        grid, conn = self.grid, step.connectivity
        seeds = seed_pixels(step, self.source)
        ranges: dict[tuple[float, float], list[tuple[int, int]]] = {}
        for r, c in seeds:
            values, valid = index_window(self.source, self.pipeline, Window(r, r + 1, c, c + 1))
            if not valid[0, 0]:
                raise InputError(f"{self.source.name}: seed at pixel ({r}, {c}) is on nodata")
            low, high = flood_range(float(values[0, 0]), step.tolerance)
            ranges.setdefault((low, high), []).append((r, c))
        bases = tuple(IntervalMask(self.source, self.pipeline, lo, hi) for lo, hi in ranges)
        keeps = []
        for k, (base, members) in enumerate(zip(bases, ranges.values(), strict=True)):
            stitched = self._label(
                f"grow: seed range {k + 1} of {len(bases)}",
                lambda t, base=base: TileMask(base),
                background=False,
                connectivity=conn,
                store=None,
            )
            keep = np.zeros(stitched.n_objects, dtype=bool)
            objects = np.arange(stitched.n_objects)
            by_tile: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for r, c in members:
                by_tile.setdefault((r // grid.chunks[0], c // grid.chunks[1]), []).append((r, c))
            for (i, j), here in by_tile.items():  # label each seed's tile once
                window = grid.window(i, j)
                labels, _ = label(base.read(window), conn)
                lut = stitched.tile_lut(grid.index(i, j), objects, -1)
                for r, c in here:
                    keep[lut[labels[r - window.row_start, c - window.col_start]]] = True
            keeps.append((stitched, keep))

        def recipe(t: int) -> UnionTile:
            parts = zip(bases, keeps, strict=True)
            return UnionTile(
                tuple(KeptTile(b, st.tile_lut(t, keep, False), conn) for b, (st, keep) in parts)
            )

        path = create_mask_store(self.workdir / "grown.zarr", grid.shape, grid.chunks)
        self._materialise("grow: store", recipe, path)
        return StoredMask(path, grid.shape)

    def _edges(self, step: CannyEdges) -> StoredMask:
        """Canny's edges, stored: weak edges kept where their stitched component holds a strong one.

        (The filling of closed contours is the ``fill_holes`` step that
        :meth:`segment` puts first in ``refine``.)
        """
        base = CannyMask(self.source, self.pipeline, step)
        stitched = self._label(
            "edges: hysteresis",
            lambda t: TileMask(base),
            background=False,
            connectivity=hysteresis_connectivity,
            store=None,
            task=label_hysteresis,
        )
        keep = stitched.stats["flag"] > 0
        path = create_mask_store(self.workdir / "edges.zarr", self.grid.shape, self.grid.chunks)

        def recipe(t: int) -> KeptTile:
            return KeptTile(base, stitched.tile_lut(t, keep, False), hysteresis_connectivity)

        self._materialise("edges: store", recipe, path)
        return StoredMask(path, self.grid.shape)

    def _value_range(
        self, name: str, pipeline: Pipeline, halo: int, cache: str
    ) -> tuple[float, float, int]:
        """``(min, max, n)`` of the preprocessed values over the valid pixels, checked."""
        (value_range,) = self._compute(
            name, range_graph(self.source, pipeline, self.grid, halo, cache)
        )
        vmin, vmax, n_valid = value_range
        if n_valid == 0:
            raise InputError(
                f"{self.source.name}: no valid pixels (the dataset mask is empty everywhere)"
            )
        if not (np.isfinite(vmin) and np.isfinite(vmax)):
            raise InputError(
                f"{self.source.name}: the preprocessed values are not finite at valid pixels "
                f"(range [{vmin}, {vmax}]); mark NaN or infinite pixels as nodata"
            )
        return value_range

    def resolve_preprocess(self) -> None:
        """Find the statistic of every global preprocessing step, in order.

        ``equalize`` needs the histogram of the values before it over every
        valid pixel: two passes (range, histogram) over the pipeline cut just
        before it, not cached. The step then carries its cumulative histogram
        and runs per pixel in every later pass.
        """
        while (i := self.pipeline.unresolved_global_step()) is not None:
            before = replace(self.pipeline, preprocess=self.pipeline.preprocess[:i])
            steps = list(self.pipeline.preprocess)
            if steps[i].statistic == "ranges":
                steps[i] = steps[i].resolved(self._clahe_ranges(before, steps[i]))
                self.pipeline = replace(self.pipeline, preprocess=tuple(steps))
                continue
            vmin, vmax, _ = self._value_range("equalize: range", before, 0, value_cache.NONE)
            (counts,) = self._compute(
                "equalize: histogram",
                histogram_graph(self.source, before, self.grid, 0, value_cache.NONE, vmin, vmax),
            )
            steps[i] = steps[i].resolved(counts, vmin, vmax)
            self.pipeline = replace(self.pipeline, preprocess=tuple(steps))

    def _clahe_ranges(self, before: Pipeline, step: Clahe) -> tuple[float, float, int, int]:
        """CLAHE's two global statistics: the input range, then its unscaled output's range."""
        g = self.grid
        (found,) = self._compute(
            "clahe: range",
            reduce_graph("range", full_range, (self.source, before), g, merge_range),
        )
        vmin, vmax, _ = found
        if not (np.isfinite(vmin) and np.isfinite(vmax)):
            raise InputError(f"{self.source.name}: clahe: the values before it are not finite")
        args = (self.source, before)
        options = (step, vmin, vmax)
        (out,) = self._compute(
            "clahe: output range",
            reduce_graph("clahe", clahe_output_range, args, g, merge_minmax, options),
        )
        return (vmin, vmax, *out)

    def _percentile(self, q: float, value_range: tuple[float, float, int], halo: int) -> float:
        """``numpy.percentile(x[valid], q)``, exactly, from passes over the tiles.

        The two order statistics NumPy interpolates are found by narrowing a
        value interval around each: a pass counts the values below the
        interval and bins those inside it in 256 bins; the bin holding the
        rank becomes the next interval. Once an interval holds at most
        ``COLLECT_LIMIT`` values (usually after one or two passes), or is too
        narrow for 256 bins, one last pass gathers them and the rank is read
        off after sorting.
        """
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
            large = [
                r for r in pending if search[r][3] > COLLECT_LIMIT and binnable(*search[r][:2])
            ]
            if not large:
                intervals = tuple(sorted({search[r][:2] for r in pending}))
                (within,) = self._compute(
                    "percentile: collect",
                    interval_graph(
                        self.source, self.pipeline, self.grid, halo, self.cache, intervals,
                        collect=True,
                    ),
                )  # fmt: skip
                for rank in pending:
                    lo, hi, below, _ = search[rank]
                    values = np.sort(within[intervals.index((lo, hi))])
                    found[rank] = float(values[rank - below])
                break
            intervals = tuple(sorted({search[r][:2] for r in large}))
            (results,) = self._compute(
                "percentile: narrow",
                interval_graph(self.source, self.pipeline, self.grid, halo, self.cache, intervals),
            )
            for rank in large:
                lo, hi, _, _ = search[rank]
                below, counts = results[intervals.index((lo, hi))]
                narrowed = narrow(lo, hi, below, counts, rank)
                # An interval that cannot shrink any more is collected next time.
                stuck = narrowed[:2] == (lo, hi)
                search[rank] = (lo, hi, below, 0) if stuck else narrowed
        return percentile_from_ranks(found[lower], found[upper], gamma)

    # -- 2.-3. labelling ----------------------------------------------------

    def _label(
        self,
        name: str,
        recipes,
        *,
        background: bool,
        connectivity: int,
        store,
        store_final=None,
        task=label_tile,
    ) -> Stitched:
        graph = label_graph(
            recipes,
            self.grid,
            background=background,
            connectivity=connectivity,
            store=store,
            store_final=store_final,
            task=task,
        )
        results = self._compute(name, graph)
        return stitch(
            [stats for stats, _ in results], [pairs for _, pairs in results], self.grid.stride
        )

    def segment(self) -> Segmentation:
        self.resolve_preprocess()
        if implied := self.pipeline.threshold.implied_refine:  # edges: contours filled
            self.pipeline = replace(self.pipeline, refine=(*implied, *self.pipeline.refine))
        pipeline, grid = self.pipeline, self.grid
        if pipeline.model is not None and pipeline.model.output == "labels":
            return self._model_instances()
        conn = pipeline.connectivity
        first_base, threshold, value_range = self.threshold()

        stages = pipeline.stages()
        final_min_area = None
        last = stages[-1]
        split = pipeline.split
        if not split and last.objects and last.objects[-1].final_min_area is not None:
            # A trailing small-object removal is a filter on the final labels.
            final_min_area = last.objects[-1].final_min_area
            stages[-1] = Stage(last.local, last.objects[:-1])

        state = MaskState(first_base, connectivity=conn)
        pending: str | None = None
        for k, stage in enumerate(stages):
            state.local = stage.local
            pending = create_mask_store(self.workdir / f"stage{k}.zarr", grid.shape, grid.chunks)
            for step in stage.objects:
                stitched = self._label(
                    f"stage {k}: {step.names[0]}",
                    state.recipe,
                    background=step.background,
                    connectivity=step.connectivity(conn),
                    store=pending,
                )
                if pending is not None:
                    state = MaskState(StoredMask(pending, grid.shape), connectivity=conn)
                    pending = None
                    self._drop_value_cache()
                state.edits.append((step, stitched, step.keep(stitched.stats)))
            if k + 1 < len(stages):
                # The next stage's local steps need a halo over this stage's
                # result: write it out whole.
                out = create_mask_store(
                    self.workdir / f"stage{k}-out.zarr", grid.shape, grid.chunks
                )
                self._materialise(f"stage {k}: store", state.recipe, out)
                state = MaskState(StoredMask(out, grid.shape), connectivity=conn)

        if split is not None:
            return self._split(state, split, threshold, value_range)

        # The final labelling stores the final mask, so the write pass only
        # labels it again (no edits, no halo).
        final = None
        if state.edits:
            final = create_mask_store(self.workdir / "final.zarr", grid.shape, grid.chunks)
        stitched = self._label(
            "labels",
            state.recipe,
            background=False,
            connectivity=conn,
            store=pending,
            store_final=final,
        )
        self._drop_value_cache()
        if final or pending:
            state = MaskState(StoredMask(final or pending, grid.shape), connectivity=conn)
        self.final_state = state
        counts = stitched.stats["count"]
        keep = counts >= final_min_area if final_min_area else np.ones(len(counts), dtype=bool)
        return Segmentation.of(stitched, keep, threshold, value_range, self.timings)

    def _split(
        self,
        state: MaskState,
        step: Split,
        threshold: float | tuple[float, ...] | None,
        value_range: tuple[float, float, int] | None,
    ) -> Segmentation:
        """Store the final mask, split its objects tile by tile, number them (see tiler.split)."""
        grid = self.grid
        final = create_mask_store(self.workdir / "final.zarr", grid.shape, grid.chunks)
        self._materialise("split: store mask", state.recipe, final)
        self._drop_value_cache()
        local = self._local_labels()
        base = StoredMask(final, grid.shape)
        graph = split_graph(base, grid, step, self.pipeline.connectivity, local)
        return self._instances("split", graph, threshold, value_range)

    def _model_instances(self) -> Segmentation:
        """A model's instance labels, owned by centroid and matched across windows."""
        window = (model_window, self.source, self.pipeline)
        graph = instance_graph(self.grid, self.pipeline.model.halo, self._local_labels(), window)
        return self._instances("model", graph, None, None)

    def _local_labels(self) -> str:
        """The work array that keeps each tile's local instance labels until the write."""
        self.split_labels = create_local_label_store(
            self.workdir / "instances.zarr", self.grid.shape, self.grid.chunks
        )
        return self.split_labels

    def _instances(
        self,
        name: str,
        graph: Graph,
        threshold: float | tuple[float, ...] | None,
        value_range: tuple[float, float, int] | None,
    ) -> Segmentation:
        """Number the instances that an instance graph decided, tile by tile (tiler.split)."""
        results = self._compute(name, graph)
        stitched = renumber_split([r[0] for r in results], [r[1] for r in results])
        self.split_fallbacks = sum(r[2] + r[3] for r in results)
        keep = np.ones(stitched.n_objects, dtype=bool)
        segmentation = Segmentation.of(stitched, keep, threshold, value_range, self.timings)
        segmentation.split_fallbacks = self.split_fallbacks
        return segmentation

    def _drop_value_cache(self) -> None:
        """The stored mask replaces the value cache: free the disk early."""
        value_cache.drop(self.cache)

    def _materialise(self, name: str, recipes: Callable[[int], TileMask], path: str) -> None:
        self._compute(name, mask_graph(recipes, self.grid, path=path))

    # -- 4. write -------------------------------------------------------------

    def write(self, segmentation: Segmentation, path: str) -> None:
        """Write the final labels into the (already created) Zarr array at ``path``."""
        ids = segmentation.final_ids.astype(segmentation.dtype)
        if self.split_labels is not None:
            luts = lambda t: segmentation.stitched.tile_lut(t, ids)  # noqa: E731
            self._compute("write", split_write_graph(self.split_labels, luts, self.grid, path=path))
            return
        graph = write_graph(
            self.final_state.recipe,
            lambda t: segmentation.stitched.tile_lut(t, ids),
            self.grid,
            connectivity=self.pipeline.connectivity,
            path=path,
        )
        self._compute("write", graph)
