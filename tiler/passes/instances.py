"""Instance passes: the final mask split by watershed, or a model's instance labels.

Instances are decided per tile window grown by a halo, owned by centroid
and matched across windows (:mod:`tiler.split`); each tile's local labels
wait in a work Zarr for the write pass, which relabels them.
"""

from __future__ import annotations

import numpy as np

from tiler.config import Pipeline, Split
from tiler.inference import model_window
from tiler.masks import StoredMask
from tiler.passes.runner import PassRunner
from tiler.passes.segmentation import MaskState, Segmentation
from tiler.plan import instance_graph, points_graph, split_graph
from tiler.points import PointSettings, ReadConfidence, object_peak_ids, peak_columns
from tiler.split import renumber_split
from tiler.taskgraph import Graph

# The work array that keeps each tile's local instance labels until the write.
LOCAL_LABELS = "instances.zarr"


def split_instances(
    run: PassRunner,
    pipeline: Pipeline,
    state: MaskState,
    step: Split,
    threshold: float | tuple[float, ...] | None,
    value_range: tuple[float, float, int] | None,
) -> Segmentation:
    """Store the final mask, split its objects tile by tile, number them (see tiler.split)."""
    final = run.mask_store("final.zarr")
    run.materialise("split: store mask", state.recipe, final)
    run.drop_value_cache()
    local = run.local_label_store(LOCAL_LABELS)
    base = StoredMask(final, run.grid.shape)
    graph = split_graph(base, run.grid, step, pipeline.connectivity, local)
    return _instances(run, "split", graph, local, threshold, value_range)


def model_instances(run: PassRunner, pipeline: Pipeline) -> Segmentation:
    """A model's instance labels, owned by centroid and matched across windows."""
    window = (model_window, run.source, pipeline)
    local = run.local_label_store(LOCAL_LABELS)
    graph = instance_graph(run.grid, pipeline.model.halo, local, window)
    return _instances(run, "model", graph, local, None, None)


def model_points(run: PassRunner, pipeline: Pipeline, read: ReadConfidence) -> Segmentation:
    """A points model's peaks as objects, exact for any tiling (:mod:`tiler.points`).

    ``read(window)`` gives the confidence on a window. The objects table gets
    each object's peak (``peak_row``, ``peak_col``) and the confidence there
    (``confidence``).
    """
    settings = PointSettings(**pipeline.model.points)
    local = run.local_label_store(LOCAL_LABELS)
    results = run.compute("points", points_graph(run.grid, local, read, settings))
    stitched = renumber_split([r[0] for r in results], [r[1] for r in results])
    keep = np.ones(stitched.n_objects, dtype=bool)
    segmentation = Segmentation.of(stitched, keep, settings.threshold, None, run.timings)
    ids = object_peak_ids([r[0] for r in results], stitched.object_of, stitched.n_objects)
    segmentation.extra_columns = peak_columns(
        [r[2] for r in results], [r[3] for r in results], ids, run.grid.shape[1]
    )
    segmentation.local_labels = local
    return segmentation


def _instances(
    run: PassRunner,
    name: str,
    graph: Graph,
    local: str,
    threshold: float | tuple[float, ...] | None,
    value_range: tuple[float, float, int] | None,
) -> Segmentation:
    """Number the instances that an instance graph decided, tile by tile (tiler.split)."""
    results = run.compute(name, graph)
    stitched = renumber_split([r[0] for r in results], [r[1] for r in results])
    keep = np.ones(stitched.n_objects, dtype=bool)
    segmentation = Segmentation.of(stitched, keep, threshold, value_range, run.timings)
    segmentation.split_fallbacks = sum(r[2] + r[3] for r in results)
    segmentation.local_labels = local
    return segmentation
