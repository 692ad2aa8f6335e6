"""Edge-based masks (``threshold: {edges: ...}``): closed Canny contours, filled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from skimage.feature import canny

from tiler.errors import ConfigError
from tiler.kernels.edges import canny_reach
from tiler.steps.base import MaskStep, Threshold, ThresholdStep, number, params
from tiler.steps.morphology import FillHoles
from tiler.units import length


@dataclass(frozen=True)
class CannyEdges(ThresholdStep):
    """Edge-based masks: closed Canny contours, filled.

    Whole-image meaning: ``scipy.ndimage.binary_fill_holes(skimage.feature.canny(x,
    sigma, low_threshold=low, high_threshold=high, mask=valid))``; ``low`` and
    ``high`` are absolute gradient magnitudes. Tiled: the gradients and the
    non-maximum suppression are local (reach ``int(4 * sigma + 0.5) + 2``),
    the hysteresis keeps stitched 8-connected components of weak edges that
    hold a strong one, and the filling is the ``fill_holes`` object step.
    """

    sigma: float = 1.0
    low: float = 0.1
    high: float = 0.2
    names = ("edges",)
    usage = "{edges: {sigma, low, high}}"
    kind = "object"
    passes = "edges"
    polarity_applies = False

    @property
    def reach(self) -> int:
        return canny_reach(self.sigma)

    @property
    def implied_refine(self) -> tuple[MaskStep, ...]:
        return (FillHoles(),)  # closed contours are filled

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> CannyEdges:
        found = params(value, key, ("sigma", "low", "high"))
        sigma, ground = length(found.get("sigma", 1.0), f"{key}.sigma", rule="float")
        low = number(found.get("low", 0.1), f"{key}.low")
        high = number(found.get("high", 0.2), f"{key}.high")
        if not 0 <= low <= high:
            raise ConfigError(f"{key}: expected 0 <= low <= high, got low {low}, high {high}")
        return cls(sigma, low, high, ground=ground)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        edges = canny(values, self.sigma, self.low, self.high, mask=valid, mode="constant")
        return None, edges

    def record(self) -> dict[str, Any]:
        return {"method": "edges", **self.to_dict()["edges"]}

    def to_dict(self) -> dict[str, Any]:
        return {"edges": {"sigma": self.sigma, "low": self.low, "high": self.high}}
