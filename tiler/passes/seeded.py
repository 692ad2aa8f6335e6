"""Object-level starting masks: region growing from seeds, and Canny's edges.

Both are label passes whose kept components (a seed's flood; weak edges
holding a strong one) are stored in a work Zarr as the mask the first
stage starts from.
"""

from __future__ import annotations

import numpy as np

from tiler.config import CannyEdges, Grow, Pipeline
from tiler.errors import InputError
from tiler.io.seeds import seed_pixels
from tiler.kernels.edges import hysteresis_connectivity
from tiler.kernels.label import label
from tiler.kernels.threshold import flood_range
from tiler.masks import CannyMask, IntervalMask, KeptTile, StoredMask, TileMask, UnionTile
from tiler.passes.runner import PassRunner
from tiler.tasks import label_hysteresis
from tiler.tiling import Window
from tiler.values import index_window


def grow(run: PassRunner, pipeline: Pipeline, step: Grow) -> StoredMask:
    """The union of the seeds' floods, stored: one labelling pass per distinct seed range.

    A flood is the connected component holding its seed of the valid
    pixels within the seed's range; the stitched labels find it across
    any number of tiles, and seeds that share a range share the pass.
    """
    source, grid, conn = run.source, run.grid, step.connectivity
    seeds = seed_pixels(step, source)
    ranges: dict[tuple[float, float], list[tuple[int, int]]] = {}
    for r, c in seeds:
        values, valid = index_window(source, pipeline, Window(r, r + 1, c, c + 1))
        if not valid[0, 0]:
            raise InputError(f"{source.name}: seed at pixel ({r}, {c}) is on nodata")
        low, high = flood_range(float(values[0, 0]), step.tolerance)
        ranges.setdefault((low, high), []).append((r, c))
    bases = tuple(IntervalMask(source, pipeline, lo, hi) for lo, hi in ranges)
    keeps = []
    for k, (base, members) in enumerate(zip(bases, ranges.values(), strict=True)):
        stitched = run.label(
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

    path = run.mask_store("grown.zarr")
    run.materialise("grow: store", recipe, path)
    return StoredMask(path, grid.shape)


def edges(run: PassRunner, pipeline: Pipeline, step: CannyEdges) -> StoredMask:
    """Canny's edges, stored: weak edges kept where their stitched component holds a strong one.

    (The filling of closed contours is the ``fill_holes`` step that
    :func:`tiler.passes.labels.segment` puts first in ``refine``.)
    """
    base = CannyMask(run.source, pipeline, step)
    stitched = run.label(
        "edges: hysteresis",
        lambda t: TileMask(base),
        background=False,
        connectivity=hysteresis_connectivity,
        store=None,
        task=label_hysteresis,
    )
    keep = stitched.stats["flag"] > 0
    path = run.mask_store("edges.zarr")

    def recipe(t: int) -> KeptTile:
        return KeptTile(base, stitched.tile_lut(t, keep, False), hysteresis_connectivity)

    run.materialise("edges: store", recipe, path)
    return StoredMask(path, run.grid.shape)
