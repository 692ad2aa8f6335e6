"""What the passes find: the threshold, the final objects, and how to write them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tiler.masks import MaskBase, TileMask
from tiler.stitch import Stitched, renumber


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


@dataclass
class Segmentation:
    """What the passes found: the threshold, the final objects and how long each pass took.

    The write pass relabels ``mask`` (the final mask, labelled again) or, for
    instances, the tiles' local labels kept in the work Zarr ``local_labels``.
    """

    threshold: float | tuple[float, ...] | None
    value_range: tuple[float, float, int] | None
    stitched: Stitched
    keep: np.ndarray
    final_ids: np.ndarray
    dtype: np.dtype
    timings: dict[str, float] = field(default_factory=dict)
    split_fallbacks: int | None = None  # watershed split: windows that disagreed
    mask: MaskState | None = None
    local_labels: str | None = None
    extra_columns: dict[str, np.ndarray] = field(default_factory=dict)  # points: peak, confidence

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
        dtype = label_dtype(int(keep.sum()))
        return cls(
            threshold=threshold,
            value_range=value_range,
            stitched=stitched,
            keep=keep,
            final_ids=renumber(keep, dtype),
            dtype=dtype,
            timings=timings,
        )

    @property
    def n_objects(self) -> int:
        return int(self.keep.sum())

    def object_stats(self) -> dict[str, np.ndarray]:
        """The statistics of the kept objects, in label order."""
        return {name: values[self.keep] for name, values in self.stitched.stats.items()}

    def kept_groups(self, size: int) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The statistics of the kept objects ``size`` at a time: ``(first label, stats)``.

        The last group is shorter, and no objects give one empty group; only
        one group's indices and statistics are in memory at a time, so the
        object table costs no copy of every object's statistics.
        """
        stats, keep = self.stitched.stats, self.keep
        pending: list[np.ndarray] = []
        label = 1
        for start in range(0, len(keep), size):
            pending.append(np.flatnonzero(keep[start : start + size]) + start)
            rows = np.concatenate(pending)
            while len(rows) >= size:
                yield label, {name: values[rows[:size]] for name, values in stats.items()}
                label, rows = label + size, rows[size:]
            pending = [rows]
        rows = np.concatenate(pending or [np.zeros(0, np.int64)])
        if len(rows) or label == 1:
            yield label, {name: values[rows] for name, values in stats.items()}
