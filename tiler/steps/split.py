"""Splitting touching objects (``refine: - split: {watershed: ...}``): approximate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiler.errors import ConfigError
from tiler.kernels.split import reference_split
from tiler.steps.base import MaskStep, params
from tiler.units import length


@dataclass(frozen=True)
class Split(MaskStep):
    """Split touching objects at the watershed lines of the mask's distance transform.

    Whole-image meaning: :func:`tiler.kernels.split.reference_split` (markers
    from ``skimage.feature.peak_local_max(distance, min_distance, footprint,
    labels=...)``, ``skimage.segmentation.watershed(-distance, markers,
    mask=m)``). It reaches as far as an object is large, so it is approximate
    when tiled: each tile splits its window grown by ``halo``, and objects are
    owned by the tile holding their centroid (:mod:`tiler.split`). ``halo``
    should be at least the largest object's diameter.
    """

    min_distance: int = 7
    footprint: int | None = None
    halo: int = 32
    names = ("split",)
    position = "last"
    kind = "approximate"

    @property
    def reach(self) -> int:
        return self.halo

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Split:
        found = params(value, key, ("watershed",))
        if "watershed" not in found:
            raise ConfigError(f"{key}: expected {{watershed: {{min_distance, footprint, halo}}}}")
        key = f"{key}.watershed"
        found = params(found["watershed"], key, ("min_distance", "footprint", "halo"))
        min_distance, ground = length(found.get("min_distance", 7), f"{key}.min_distance")
        footprint = found.get("footprint")
        if footprint is not None:
            footprint, more = length(footprint, f"{key}.footprint", rule="odd", minimum=3)
            ground += more
        halo, more = length(found.get("halo", 32), f"{key}.halo")
        return cls(min_distance, footprint, halo, ground=ground + more)

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        return mask  # not a mask step: its meaning is the labels (:meth:`labels`)

    def labels(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        """The whole-image instance labels of the final mask."""
        labels, _ = reference_split(mask, self.min_distance, self.footprint, connectivity)
        return labels

    def to_dict(self) -> dict[str, Any]:
        found = {"min_distance": self.min_distance, "footprint": self.footprint}
        return {"split": {"watershed": {**found, "halo": self.halo}}}
