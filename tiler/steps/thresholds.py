"""Thresholds of the values: ``otsu``, ``multi_otsu``, ``percentile`` (global statistics), a
number (per pixel) and ``local`` (local)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_local, threshold_multiotsu, threshold_otsu

from tiler.errors import ConfigError
from tiler.kernels.filters import gaussian_reach
from tiler.kernels.threshold import (
    class_foreground,
    foreground,
    local_foreground,
    multiotsu_from_histogram,
    otsu_from_histogram,
)
from tiler.steps.base import (
    Threshold,
    ThresholdStep,
    number,
    params,
    positive_int,
    required,
)
from tiler.units import length


class SingleThreshold(ThresholdStep):
    """A threshold ``t``: foreground = ``x > t`` (``polarity: above``)."""

    def tile_mask(
        self, values: np.ndarray, valid: np.ndarray, threshold: Threshold, polarity: str
    ) -> np.ndarray:
        assert isinstance(threshold, (int, float)), "found by the passes"
        return foreground(values, valid, threshold, polarity)


@dataclass(frozen=True)
class Otsu(SingleThreshold):
    """``skimage.filters.threshold_otsu(x[valid])``: a global statistic (a 256-bin histogram)."""

    names = ("otsu",)
    usage = "'otsu'"
    kind = "global"
    passes = "histogram"
    codes = True

    def from_histogram(self, counts: np.ndarray, vmin: float, vmax: float) -> Threshold:
        return float(otsu_from_histogram(counts, vmin, vmax))

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        t = threshold_otsu(values[valid])
        return t, values > t

    def record(self) -> dict[str, Any]:
        return {"method": "otsu", "bins": 256}

    def to_dict(self) -> str:
        return "otsu"


@dataclass(frozen=True)
class MultiOtsu(ThresholdStep):
    """Multi-class Otsu: a global statistic, then classes kept per pixel.

    ``t = skimage.filters.threshold_multiotsu(x[valid], classes)`` (256 bins);
    foreground = ``numpy.isin(numpy.digitize(x, t), keep)``: class ``i`` holds
    ``t[i-1] <= x < t[i]``, class 0 the darkest.
    """

    classes: int
    keep: tuple[int, ...]
    names = ("multi_otsu",)
    usage = "{multi_otsu: {classes, keep}}"
    kind = "global"
    passes = "histogram"

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> MultiOtsu:
        found = params(value, key, ("classes", "keep"))
        classes = positive_int(found.get("classes", 3), f"{key}.classes", minimum=2)
        if classes > 5:
            raise ConfigError(f"{key}.classes: at most 5 classes, got {classes}")
        keep = found.get("keep")
        if not isinstance(keep, list) or not keep:
            raise ConfigError(f"{key}.keep: required, a list of class numbers 0..{classes - 1}")
        for i, k in enumerate(keep):
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < classes:
                raise ConfigError(f"{key}.keep[{i}]: expected a class number 0..{classes - 1}")
        if len(set(keep)) != len(keep):
            raise ConfigError(f"{key}.keep: class numbers repeat in {keep}")
        return cls(classes, tuple(sorted(keep)))

    def from_histogram(self, counts: np.ndarray, vmin: float, vmax: float) -> Threshold:
        found: tuple[float, ...] = multiotsu_from_histogram(counts, vmin, vmax, self.classes)
        return found

    def tile_mask(
        self, values: np.ndarray, valid: np.ndarray, threshold: Threshold, polarity: str
    ) -> np.ndarray:
        assert isinstance(threshold, tuple), "found by the passes"
        return class_foreground(values, valid, threshold, self.keep, polarity)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        t = tuple(threshold_multiotsu(values[valid], classes=self.classes).tolist())
        return t, np.isin(np.digitize(values, t), self.keep)

    def record(self) -> dict[str, Any]:
        return {"method": "multi_otsu", "bins": 256, "classes": self.classes, "keep": [*self.keep]}

    def to_dict(self) -> dict[str, Any]:
        return {"multi_otsu": {"classes": self.classes, "keep": list(self.keep)}}


@dataclass(frozen=True)
class Percentile(SingleThreshold):
    """``t = numpy.percentile(x[valid], q)`` (linear interpolation): a global statistic."""

    q: float
    names = ("percentile",)
    usage = "{percentile: q}"
    kind = "global"
    passes = "percentile"

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Percentile:
        q = number(value, key)
        if not 0 <= q <= 100:
            raise ConfigError(f"{key}: expected a number from 0 to 100, got {value!r}")
        return cls(q)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        t = float(np.percentile(values[valid], self.q))
        return t, values > t

    def record(self) -> dict[str, Any]:
        return {"method": "percentile", "q": self.q}

    def to_dict(self) -> dict[str, Any]:
        return {"percentile": self.q}


@dataclass(frozen=True)
class FixedThreshold(SingleThreshold):
    """A threshold known in advance (``threshold: 0.1``): per pixel."""

    value: float
    usage = "a number"
    kind = "pixel"

    @property
    def known(self) -> float:
        return self.value

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> FixedThreshold:
        return cls(number(value, key))

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        return self.value, values > self.value

    def record(self) -> dict[str, Any]:
        return {"method": "fixed"}

    def to_dict(self) -> float:
        return self.value


LOCAL_METHODS = ("gaussian", "mean", "median")


@dataclass(frozen=True)
class LocalThreshold(ThresholdStep):
    """``x > skimage.filters.threshold_local(x, block_size, method, offset, mode="reflect")``.

    The threshold of each pixel comes from its own neighbourhood: Gaussian
    (sigma ``(block_size - 1) / 6``, truncated at 4 sigma), mean or median
    over a ``block_size`` square. The mean is a plain sum per window divided
    by ``block_size**2`` (see :func:`tiler.kernels.threshold.local_mean`).
    Local, reaching the Gaussian's radius or ``block_size // 2``.
    """

    block_size: int
    method: Literal["gaussian", "mean", "median"] = "gaussian"
    offset: float = 0.0
    names = ("local",)
    usage = "{local: {block_size, ...}}"
    kind = "local"

    @property
    def reach(self) -> int:
        if self.method == "gaussian":
            return gaussian_reach((self.block_size - 1) / 6.0)
        return self.block_size // 2

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> LocalThreshold:
        found = params(value, key, ("block_size", "method", "offset"))
        block_size = required(found, "block_size", key, "an odd integer >= 3")
        block_size, ground = length(block_size, f"{key}.block_size", rule="odd", minimum=3)
        method = found.get("method", "gaussian")
        if method not in LOCAL_METHODS:
            raise ConfigError(
                f"{key}.method: expected one of {', '.join(LOCAL_METHODS)}, got {method!r}"
            )
        offset = number(found.get("offset", 0.0), f"{key}.offset")
        return cls(block_size, method, offset, ground=ground)

    def tile_mask(
        self, values: np.ndarray, valid: np.ndarray, threshold: Threshold, polarity: str
    ) -> np.ndarray:
        return local_foreground(values, valid, self.block_size, self.method, self.offset, polarity)

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        b = self.block_size
        if self.method == "mean":
            # A sum per window (see tiler.kernels.threshold.local_mean for why
            # not scikit-image's running-sum uniform_filter).
            sums = ndi.correlate1d(values, np.ones(b), axis=1, mode="reflect")
            sums = ndi.correlate1d(sums, np.ones(b), axis=0, mode="reflect")
            local = sums / float(b * b) - self.offset
        else:
            local = threshold_local(values, b, self.method, self.offset, mode="reflect")
        return None, values > local

    def record(self) -> dict[str, Any]:
        b, m, o = self.block_size, self.method, self.offset
        return {"method": "local", "block_size": b, "local_method": m, "offset": o}

    def to_dict(self) -> dict[str, Any]:
        params = {"block_size": self.block_size, "method": self.method, "offset": self.offset}
        return {"local": params}
