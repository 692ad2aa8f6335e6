"""The write pass: each tile relabelled with its slice of the final look-up table, into Zarr.

Writes are chunk-aligned and idempotent, and the journal records each tile
written, so ``--resume`` writes only the tiles not yet done.
"""

from __future__ import annotations

from tiler.passes.runner import PassRunner
from tiler.passes.segmentation import Segmentation
from tiler.plan import split_write_graph, write_graph


def write_labels(run: PassRunner, segmentation: Segmentation, path: str) -> None:
    """Write the final labels into the (already created) Zarr array at ``path``."""
    ids = segmentation.final_ids.astype(segmentation.dtype, copy=False)
    if segmentation.local_labels is not None:
        luts = lambda t: segmentation.stitched.tile_lut(t, ids)  # noqa: E731
        graph = split_write_graph(segmentation.local_labels, luts, run.grid, path=path)
        run.compute("write", graph)
        return
    mask = segmentation.mask
    assert mask is not None, "a segmentation without instances has its final mask"
    graph = write_graph(
        mask.recipe,
        lambda t: segmentation.stitched.tile_lut(t, ids),
        run.grid,
        connectivity=mask.connectivity,
        path=path,
    )
    run.compute("write", graph)
