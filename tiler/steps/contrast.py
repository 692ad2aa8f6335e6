"""Contrast of the values: ``equalize`` (global) and ``clahe`` (global, then local)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage.exposure import equalize_adapthist, equalize_hist, rescale_intensity

from tiler.errors import ConfigError
from tiler.kernels.clahe import clahe_tile
from tiler.kernels.threshold import equalization
from tiler.steps.base import ValueStep, number, params, required
from tiler.tiling import Window
from tiler.units import length


@dataclass(frozen=True)
class Equalize(ValueStep):
    """``skimage.exposure.equalize_hist(x, nbins=256, mask=valid)``: a global statistic.

    The cumulative histogram of the valid values (256 bins over their range)
    maps every pixel through ``numpy.interp``. Once the passes have found it
    (``centers``, ``cdf``), the step is per pixel.
    """

    centers: tuple[float, ...] | None = field(default=None, repr=False)
    cdf: tuple[float, ...] | None = field(default=None, repr=False)
    names = ("equalize",)
    statistic = "histogram"

    @property
    def kind(self) -> str:
        return "global" if self.cdf is None else "pixel"

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Equalize:
        params(value, key, ())
        return cls()

    def resolved(self, counts: np.ndarray, vmin: float, vmax: float) -> Equalize:
        """The step with its statistic, from the histogram of the values before it."""
        centers, cdf = equalization(counts, vmin, vmax)
        return Equalize(centers, cdf)

    def tile(self, values: np.ndarray) -> np.ndarray:
        assert self.centers is not None and self.cdf is not None, "resolved by the passes"
        out: np.ndarray = np.interp(values, self.centers, self.cdf)
        return out

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out: np.ndarray = equalize_hist(values, nbins=256, mask=valid)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"equalize": {}}


@dataclass(frozen=True)
class Clahe(ValueStep):
    """Contrast-limited adaptive histogram equalisation of the values rescaled to ``[0, 1]``.

    Whole-image meaning: ``skimage.exposure.equalize_adapthist(
    rescale_intensity(x, in_range=(x.min(), x.max()), out_range=(0, 1)),
    kernel_size, clip_limit, nbins=256)``, the range over every pixel (as
    scikit-image sees the array; the rescale lets any index in). Its
    contextual regions are aligned to the image, and it needs two global
    statistics (the input range, then the range of its unscaled output):
    two passes find them (``ranges``); then it is local, reaching
    ``kernel_size + ceil(kernel_size / 2) - 1`` pixels (:mod:`tiler.kernels.clahe`).
    """

    kernel_size: int
    clip_limit: float = 0.01
    ranges: tuple[float, float, int, int] | None = field(default=None, repr=False)
    names = ("clahe",)
    aligned = True
    statistic = "ranges"

    @property
    def kind(self) -> str:
        return "global" if self.ranges is None else "local"

    @property
    def reach(self) -> int:
        return self.kernel_size + (self.kernel_size + 1) // 2 - 1

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Clahe:
        found = params(value, key, ("kernel_size", "clip_limit"))
        size = required(found, "kernel_size", key, "an integer >= 2, pixels")
        size, ground = length(size, f"{key}.kernel_size", minimum=2)
        clip = number(found.get("clip_limit", 0.01), f"{key}.clip_limit")
        if clip < 0:
            raise ConfigError(f"{key}.clip_limit: expected a number >= 0, got {clip}")
        return cls(size, clip, ground=ground)

    def resolved(self, ranges: tuple[float, float, int, int]) -> Clahe:
        """The step with its two ranges (input, unscaled output) found by the passes."""
        return Clahe(self.kernel_size, self.clip_limit, ranges)

    def tile_aligned(
        self, values: np.ndarray, window: Window, core: Window, shape: tuple[int, int]
    ) -> np.ndarray:
        """The resolved step on ``core``, from the values over ``window`` (image ``shape``)."""
        assert self.ranges is not None, "resolved by the passes"
        vmin, vmax, out_min, out_max = self.ranges
        scaled, lo, hi = unit_range(values, vmin, vmax)
        out: np.ndarray = clahe_tile(
            scaled, window, core, shape, kernel_size=self.kernel_size,
            clip_limit=self.clip_limit, vmin=lo, vmax=hi, out_min=out_min, out_max=out_max,
        )  # fmt: skip
        return out

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        unit = rescale_intensity(
            values, in_range=(values.min(), values.max()), out_range=(0.0, 1.0)
        )
        out: np.ndarray = equalize_adapthist(
            unit, kernel_size=self.kernel_size, clip_limit=self.clip_limit, nbins=256
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"clahe": {"kernel_size": self.kernel_size, "clip_limit": self.clip_limit}}


def unit_range(values: np.ndarray, vmin: float, vmax: float) -> tuple[np.ndarray, float, float]:
    """``values`` and the image's ``(vmin, vmax)`` rescaled to ``[0, 1]`` (per pixel)."""
    scaled = rescale_intensity(values, in_range=(vmin, vmax), out_range=(0.0, 1.0))
    lo, hi = rescale_intensity(np.array([vmin, vmax]), in_range=(vmin, vmax), out_range=(0.0, 1.0))
    return scaled, float(lo), float(hi)
