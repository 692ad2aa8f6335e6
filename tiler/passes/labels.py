"""The mask and labels passes: the stages of ``refine``, then the final labels, stitched.

For each stage (local steps, then object steps), one label pass per object
step, stitched into look-up-table edits; the first pass of a stage also
stores the stage's mask in a work Zarr, so later passes read the mask
instead of decoding the raster again. A stage followed by more local steps
is written out whole, to be read with a halo by the next. Then the
foreground is labelled with the pipeline's connectivity and stitched (a
trailing ``remove_small_objects`` becomes a filter of this pass), or split
into instances (:mod:`.instances`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tiler.config import Pipeline, Stage
from tiler.masks import StoredMask
from tiler.passes.confidence import point_objects
from tiler.passes.instances import model_instances, split_instances
from tiler.passes.runner import PassRunner
from tiler.passes.segmentation import MaskState, Segmentation
from tiler.passes.statistics import resolve_preprocess
from tiler.passes.threshold import starting_mask


def segment(run: PassRunner, pipeline: Pipeline) -> Segmentation:
    """Every pass before the write, in order: statistics, starting mask, stages, final labels."""
    pipeline = resolve_preprocess(run, pipeline.in_pixels())
    if implied := pipeline.threshold.implied_refine:  # edges: contours filled
        pipeline = replace(pipeline, refine=(*implied, *pipeline.refine))
    if pipeline.model is not None and pipeline.model.output == "labels":
        return model_instances(run, pipeline)
    if pipeline.model is not None and pipeline.model.output == "points":
        return point_objects(run, pipeline)
    conn, grid = pipeline.connectivity, run.grid
    first_base, threshold, value_range = starting_mask(run, pipeline)

    stages = pipeline.stages()
    final_min_area = None
    last = stages[-1]
    split = pipeline.split
    if not split and last.objects and last.objects[-1].final_min_area is not None:
        # A trailing small-object removal is a filter on the final labels.
        final_min_area = last.objects[-1].final_min_area
        stages[-1] = Stage(last.local, last.objects[:-1])

    state, pending = _stages(run, stages, MaskState(first_base, connectivity=conn))
    if split is not None:
        return split_instances(run, pipeline, state, split, threshold, value_range)

    # The final labelling stores the final mask, so the write pass only
    # labels it again (no edits, no halo).
    final = run.mask_store("final.zarr") if state.edits else None
    stitched = run.label(
        "labels",
        state.recipe,
        background=False,
        connectivity=conn,
        store=pending,
        store_final=final,
    )
    run.drop_value_cache()
    if final or pending:
        state = MaskState(StoredMask(final or pending, grid.shape), connectivity=conn)
    counts = stitched.stats["count"]
    keep = counts >= final_min_area if final_min_area else np.ones(len(counts), dtype=bool)
    segmentation = Segmentation.of(stitched, keep, threshold, value_range, run.timings)
    segmentation.mask = state
    return segmentation


def _stages(run: PassRunner, stages: list[Stage], state: MaskState) -> tuple[MaskState, str | None]:
    """Run the label passes of every stage; the mask state after them, and its unused store.

    The store is the last stage's work Zarr when no object step of that
    stage has used it yet: the final labelling stores the mask there.
    """
    grid, conn = run.grid, state.connectivity
    pending: str | None = None
    for k, stage in enumerate(stages):
        state.local = stage.local
        pending = run.mask_store(f"stage{k}.zarr")
        for step in stage.objects:
            stitched = run.label(
                f"stage {k}: {step.names[0]}",
                state.recipe,
                background=step.background,
                connectivity=step.connectivity(conn),
                store=pending,
            )
            if pending is not None:
                state = MaskState(StoredMask(pending, grid.shape), connectivity=conn)
                pending = None
                run.drop_value_cache()
            state.edits.append((step, stitched, step.keep(stitched.stats)))
        if k + 1 < len(stages):
            # The next stage's local steps need a halo over this stage's
            # result: write it out whole.
            out = run.mask_store(f"stage{k}-out.zarr")
            run.materialise(f"stage {k}: store", state.recipe, out)
            state = MaskState(StoredMask(out, grid.shape), connectivity=conn)
    return state, pending
