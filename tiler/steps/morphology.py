"""Refine steps on the mask: morphology and ``smooth`` (local), hole filling and small-object
removal (object level, through the stitched labels)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import disk

from tiler.kernels.morphology import morphology, smooth
from tiler.steps.base import (
    LocalMaskStep,
    ObjectStep,
    SigmaStep,
    params,
    required,
)
from tiler.units import area, length


@dataclass(frozen=True)
class Morphology(LocalMaskStep):
    """Binary erosion, dilation, opening or closing with ``disk(radius)``.

    Whole-image meaning: ``scipy.ndimage.binary_erosion(m, disk(r), border_value=1)``,
    ``binary_dilation(m, disk(r), border_value=0)``; opening and closing compose
    them. Local, reaching ``radius`` (twice that for opening and closing).
    """

    op: Literal["erosion", "dilation", "opening", "closing"]
    radius: int
    names = ("erosion", "dilation", "opening", "closing")

    @property
    def reach(self) -> int:
        return self.radius * (2 if self.op in ("opening", "closing") else 1)

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Morphology:
        radius, ground = length(params(value, key, ("radius",)).get("radius", 1), f"{key}.radius")
        return cls(name, radius, ground=ground)  # type: ignore[arg-type]

    def tile(self, mask: np.ndarray) -> np.ndarray:
        return morphology(mask, self.op, self.radius)

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        fp = disk(self.radius)
        if self.op in ("erosion", "opening"):
            mask = ndi.binary_erosion(mask, fp, border_value=1)
        if self.op in ("dilation", "opening", "closing"):
            mask = ndi.binary_dilation(mask, fp, border_value=0)
        if self.op == "closing":
            mask = ndi.binary_erosion(mask, fp, border_value=1)
        return mask

    def to_dict(self) -> dict[str, Any]:
        return {self.op: {"radius": self.radius}}


@dataclass(frozen=True)
class Smooth(SigmaStep, LocalMaskStep):
    """Boundary smoothing: ``gaussian_filter(m.astype(float64), sigma, mode="nearest") > 0.5``."""

    names = ("smooth",)

    def tile(self, mask: np.ndarray) -> np.ndarray:
        return smooth(mask, self.sigma)

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        smoothed = ndi.gaussian_filter(mask.astype(np.float64), self.sigma, mode="nearest")
        out: np.ndarray = smoothed > 0.5
        return out


@dataclass(frozen=True)
class FillHoles(ObjectStep):
    """Fill background components (4-connected) that touch no image border.

    Whole-image meaning: ``scipy.ndimage.binary_fill_holes(m)``; with
    ``max_area``, only holes of at most that many pixels are filled.
    """

    max_area: int | None = None
    names = ("fill_holes",)
    background = True

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> FillHoles:
        max_area = params(value, key, ("max_area",)).get("max_area")
        if max_area is None:
            return cls(None)
        px, ground = area(max_area, f"{key}.max_area")
        return cls(px, ground=ground)

    def connectivity(self, pipeline_connectivity: int) -> int:
        return 1  # holes are 4-connected background components

    def keep(self, stats: Mapping[str, np.ndarray]) -> np.ndarray:
        values: np.ndarray = stats["border"] == 0
        if self.max_area is not None:
            values &= stats["count"] <= self.max_area
        return values

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        filled: np.ndarray = ndi.binary_fill_holes(mask)
        if self.max_area is not None:
            holes = label(filled & ~mask, connectivity=1)
            small = np.bincount(holes.ravel()) <= self.max_area
            small[0] = False
            filled = mask | small[holes]
        return filled

    def to_dict(self) -> dict[str, Any]:
        return {"fill_holes": {} if self.max_area is None else {"max_area": self.max_area}}


@dataclass(frozen=True)
class RemoveSmallObjects(ObjectStep):
    """Drop objects (under the pipeline's connectivity) with fewer than ``min_area`` pixels."""

    min_area: int
    names = ("remove_small_objects",)

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> RemoveSmallObjects:
        min_area = required(params(value, key, ("min_area",)), "min_area", key, "an integer >= 1")
        px, ground = area(min_area, f"{key}.min_area")
        return cls(px, ground=ground)

    def keep(self, stats: Mapping[str, np.ndarray]) -> np.ndarray:
        kept: np.ndarray = stats["count"] >= self.min_area
        return kept

    @property
    def final_min_area(self) -> int | None:
        return self.min_area

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        objects = label(mask, connectivity=connectivity)
        keep = np.bincount(objects.ravel()) >= self.min_area
        keep[0] = False
        kept: np.ndarray = keep[objects]
        return kept

    def to_dict(self) -> dict[str, Any]:
        return {"remove_small_objects": {"min_area": self.min_area}}
