"""The passes of a tiled run, each a small unit, run in order by one :class:`PassRunner`.

0. Statistics (:mod:`.statistics`): the global preprocessing steps
   (``equalize``, ``clahe``) find their statistics over the steps before
   them; they then run per tile.
1. The starting mask (:mod:`.threshold`), by threshold kind: global (Otsu,
   multi-Otsu: the value range over valid pixels, then one 256-bin
   histogram; percentile: the range, then passes narrowing an interval
   around the order statistics), per pixel or local (fixed, local threshold,
   a model's mask: nothing to find), or object level (:mod:`.seeded`: region
   growing, Canny's hysteresis: label passes whose kept components are
   stored as the starting mask).
2. Mask and labels (:mod:`.labels`): for each stage of ``refine`` (local
   steps, then object steps), one label pass per object step, stitched into
   look-up-table edits; the first pass of a stage also stores the stage's
   mask in a work Zarr, so later passes read the mask instead of decoding
   the raster again. A stage followed by more local steps is written out
   whole, to be read with a halo by the next.
3. Stitching the final labels (:mod:`.labels`): the foreground labelled with
   the pipeline's connectivity and stitched (a trailing
   ``remove_small_objects`` becomes a filter of this pass); or instances
   (:mod:`.instances`), from a final ``split`` or a model's labels, decided
   per halo window and owned by centroid (:mod:`tiler.split`).
4. Write (:mod:`.write`): each tile relabelled with its slice of the final
   look-up table into ``labels.zarr``.

The per-object table and ``run.json`` follow in :mod:`tiler.api`. The
runner (:mod:`.runner`) owns the executor, the journal, the progress bars
and the timings; the driver holds only per-label statistics and seam pairs,
tiles stay on the workers.
"""

from tiler.passes.labels import segment
from tiler.passes.runner import PassRunner
from tiler.passes.segmentation import Segmentation
from tiler.passes.write import write_labels

__all__ = ["PassRunner", "Segmentation", "segment", "write_labels"]
