"""Filters of the values: ``gaussian`` and ``median`` (local steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

from tiler.kernels.filters import GAUSSIAN_TRUNCATE, gaussian, median
from tiler.steps.base import SigmaStep, ValueStep, params
from tiler.units import length


@dataclass(frozen=True)
class Gaussian(SigmaStep, ValueStep):
    """``scipy.ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)``."""

    names = ("gaussian",)
    kind = "local"

    def tile(self, values: np.ndarray) -> np.ndarray:
        return gaussian(values, self.sigma)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out: np.ndarray = ndi.gaussian_filter(
            values, self.sigma, mode="nearest", truncate=GAUSSIAN_TRUNCATE
        )
        return out


@dataclass(frozen=True)
class Median(ValueStep):
    """``scipy.ndimage.median_filter(x, footprint=disk(radius), mode="reflect")``: local."""

    radius: int
    names = ("median",)
    kind = "local"

    @property
    def reach(self) -> int:
        return self.radius

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Median:
        found = params(value, key, ("radius",))
        px, ground = length(found.get("radius", 1), f"{key}.radius")
        return cls(px, ground=ground)

    def tile(self, values: np.ndarray) -> np.ndarray:
        return median(values, self.radius)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out: np.ndarray = ndi.median_filter(values, footprint=disk(self.radius), mode="reflect")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"median": {"radius": self.radius}}
