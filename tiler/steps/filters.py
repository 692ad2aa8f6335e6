"""Filters of the values: ``gaussian`` and ``median`` (local steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk

from tiler.kernels.filters import GAUSSIAN_TRUNCATE, gaussian, gaussian_reach, median
from tiler.steps.base import ValueStep, params, required
from tiler.units import length


@dataclass(frozen=True)
class Gaussian(ValueStep):
    """``scipy.ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)``.

    Local, reaching SciPy's kernel radius ``int(4 * sigma + 0.5)``.
    """

    sigma: float
    names = ("gaussian",)
    kind = "local"

    @property
    def reach(self) -> int:
        return gaussian_reach(self.sigma)

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Gaussian:
        sigma = required(params(value, key, ("sigma",)), "sigma", key, "a number > 0")
        px, ground = length(sigma, f"{key}.sigma", rule="float")
        return cls(px, ground=ground)

    def tile(self, values: np.ndarray) -> np.ndarray:
        return gaussian(values, self.sigma)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out: np.ndarray = ndi.gaussian_filter(
            values, self.sigma, mode="nearest", truncate=GAUSSIAN_TRUNCATE
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"gaussian": {"sigma": self.sigma}}


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
