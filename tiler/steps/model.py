"""A user's segmenter (``model:``) in place of ``preprocess`` and ``threshold``.

``model: {callable: ...}`` is :class:`Model`; ``model: {onnx: ...}`` is an
ONNX network, :class:`tiler.steps.onnx_model.OnnxModel` (the two exclude
each other).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tiler.errors import ConfigError
from tiler.steps.base import Step, params
from tiler.steps.onnx_model import OnnxModel
from tiler.units import PixelSize, length

MODEL_OUTPUTS = ("mask", "labels", "points")
POINT_KEYS = ("threshold", "min_distance", "grow", "mask_threshold")


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``package.module:function``; a :class:`ConfigError` says what is wrong."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"model.callable: expected 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model.callable: cannot import {module_name!r} ({exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"model.callable: {module_name!r} has no callable {name!r}")
    return function  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Model(Step):
    """A user's segmenter in place of ``preprocess`` and ``threshold``.

    ``function`` names a callable ``package.module:function`` that takes the
    selected bands of a window as read, ``(bands, rows, cols)`` in the file's
    data type, and returns a ``(rows, cols)`` mask (bool, or 0/1), or with
    ``output: labels`` instance labels (integers, 0 for background).
    Whole-image meaning: ``function(image) & valid``, or the instances of
    ``function(image)`` on valid pixels numbered by first pixel in raster
    order. Tiled, each tile is given its window grown by ``halo`` pixels:
    masks keep the tile's own part, exact when the function looks no further
    than ``halo`` pixels (a per-pixel classifier: ``halo: 0``); instances are
    owned by the tile holding their centroid and matched across the overlap
    as watershed splits are (:mod:`tiler.split`): make ``halo`` at least the
    largest object's diameter.

    With ``output: points`` the function returns a confidence map (float, in
    [0, 1]) whose peaks are the objects (:mod:`tiler.points`): ``threshold``
    (required), ``min_distance`` (a length; peaks closer than it, Chebyshev,
    are one object), optional ``grow`` (a length: each pixel with confidence
    ``>= mask_threshold``, default ``threshold``, joins its nearest peak within
    it; absent: each object is its peak pixel). Exact for any tiling when the
    confidence is (``halo`` at least the function's reach).
    """

    function: str
    halo: int = 0
    output: Literal["mask", "labels", "points"] = "mask"
    threshold: float = 0.5
    min_distance: int = 0
    grow: float = 0.0
    mask_threshold: float | None = None
    names = ("model",)
    kind = "approximate"

    @property
    def reach(self) -> int:
        return self.halo

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> Model | OnnxModel:  # type: ignore[override]
        if isinstance(value, dict) and "onnx" in value:
            if "callable" in value:
                raise ConfigError(f"{key}: 'onnx' and 'callable' exclude each other; give one")
            return OnnxModel.from_params(name, value, key)
        found = params(value, key, ("callable", "halo", "output", *POINT_KEYS))
        if "callable" not in found:
            raise ConfigError(f"{key}.callable: required ('package.module:function')")
        spec = found["callable"]
        if not isinstance(spec, str):
            raise ConfigError(f"{key}.callable: expected 'package.module:function', got {spec!r}")
        load_callable(spec)  # fail now, before any work
        halo, ground = length(found.get("halo", 0), f"{key}.halo", minimum=0)
        output = found.get("output", "mask")
        if output not in MODEL_OUTPUTS:
            raise ConfigError(
                f"{key}.output: expected one of {', '.join(MODEL_OUTPUTS)}, got {output!r}"
            )
        if output != "points":
            if extra := [k for k in POINT_KEYS if k in found]:
                raise ConfigError(f"{key}.{extra[0]}: only with output 'points'")
            return cls(spec, halo, output, ground=ground)
        points = _point_params(found, key)
        ground = ground + points.pop("ground")
        return cls(spec, halo, output, ground=ground, **points)

    @property
    def points(self) -> dict[str, Any]:
        """``tiler.points.PointSettings`` arguments, in pixels (after :meth:`in_pixels`)."""
        return {
            "threshold": self.threshold,
            "radius": self.min_distance,
            "grow": self.grow,
            "mask_threshold": self.mask_threshold,
        }

    def bands_for(self, bands: tuple[int, ...], explicit: bool, source: str) -> tuple[int, ...]:
        """The bands the callable is given: all the pipeline's."""
        return bands

    def check_input(self, size: PixelSize | None, source: str) -> None:
        """A callable takes any pixel size."""

    def record(self) -> dict[str, Any]:
        """run.json's ``threshold`` record: the model decides the mask (no threshold)."""
        return {"method": "model"}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"callable": self.function, "halo": self.halo, "output": self.output}
        if self.output == "points":
            out |= {k: getattr(self, k) for k in POINT_KEYS if getattr(self, k) is not None}
        return out


def _point_params(found: dict[str, Any], key: str) -> dict[str, Any]:
    """``threshold``, ``min_distance``, ``grow`` and ``mask_threshold`` of a points model."""
    if "threshold" not in found:
        raise ConfigError(f"{key}.threshold: required with output 'points' (a confidence)")
    out: dict[str, Any] = {"ground": ()}
    for name in ("threshold", "mask_threshold"):
        if name in found:
            value = found[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ConfigError(f"{key}.{name}: expected a confidence in [0, 1], got {value!r}")
            out[name] = float(value)
    for name, rule in (("min_distance", "int"), ("grow", "float")):
        if name in found:
            px, ground = length(found[name], f"{key}.{name}", rule=rule, minimum=0)
            out[name], out["ground"] = px, out["ground"] + ground
    return out
