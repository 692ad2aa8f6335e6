"""Region growing from seeds (``threshold: {grow: ...}``): an object-level threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from skimage.segmentation import flood

from tiler.errors import ConfigError
from tiler.steps.base import Threshold, ThresholdStep, number, params, required


@dataclass(frozen=True)
class Grow(ThresholdStep):
    """Region growing from seeds: an object-level threshold.

    Whole-image meaning: the union over the seeds of
    ``skimage.segmentation.flood(where(valid, x, nan), seed, tolerance=tolerance,
    connectivity=connectivity)``: every valid pixel within ``tolerance`` of its
    seed's value (inclusive) that is connected to the seed through such
    pixels. Seeds are map ``(x, y)`` points in the raster's CRS (``seeds``)
    and/or the points of a GeoJSON or GeoPackage file (``seeds_file``, in any
    CRS); ``pixels`` holds them as ``(row, col)`` once resolved against a
    raster. A flood crosses any number of tiles: it is exact through the
    stitched labels, one labelling pass per distinct seed value.
    """

    tolerance: float
    connectivity: Literal[1, 2] = 1
    seeds: tuple[tuple[float, float], ...] = ()
    seeds_file: str | None = None
    pixels: tuple[tuple[int, int], ...] | None = None
    names = ("grow",)
    usage = "{grow: {seeds, tolerance, connectivity}}"
    kind = "object"
    passes = "grow"
    polarity_applies = False

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Grow:
        found = params(value, key, ("seeds", "tolerance", "connectivity"))
        tolerance = required(found, "tolerance", key, "a number >= 0")
        tolerance = abs(number(tolerance, f"{key}.tolerance"))
        connectivity = found.get("connectivity", 1)
        if type(connectivity) is not int or connectivity not in (1, 2):
            raise ConfigError(f"{key}.connectivity: expected 1 or 2, got {connectivity!r}")
        seeds = found.get("seeds")
        if isinstance(seeds, str):
            if not Path(seeds).is_file():
                raise ConfigError(
                    f"{key}.seeds: {seeds}: no such file (GeoJSON or GeoPackage points)"
                )
            return cls(tolerance, connectivity, seeds_file=seeds)  # type: ignore[arg-type]
        if not isinstance(seeds, list) or not seeds:
            raise ConfigError(f"{key}.seeds: expected a file of points or a list of [x, y] points")
        points: list[tuple[float, float]] = []
        for i, point in enumerate(seeds):
            if not isinstance(point, list) or len(point) != 2:
                raise ConfigError(f"{key}.seeds[{i}]: expected [x, y] in the raster's CRS")
            x, y = (number(v, f"{key}.seeds[{i}]") for v in point)
            points.append((x, y))
        return cls(tolerance, connectivity, seeds=tuple(points))  # type: ignore[arg-type]

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        assert self.pixels is not None, "seeds resolved against the raster"
        masked = np.where(valid, values, np.nan)
        fg = np.zeros(values.shape, dtype=bool)
        for seed in self.pixels:
            fg |= flood(masked, seed, tolerance=self.tolerance, connectivity=self.connectivity)
        return None, fg

    def record(self) -> dict[str, Any]:
        return {"method": "grow", **self.to_dict()["grow"]}

    def to_dict(self) -> dict[str, Any]:
        seeds: Any = self.seeds_file if self.seeds_file else [list(xy) for xy in self.seeds]
        found = {"seeds": seeds, "tolerance": self.tolerance, "connectivity": self.connectivity}
        return {"grow": found}
