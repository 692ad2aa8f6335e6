"""Sizes in ground units: the one place that turns them into pixels (DESIGN.md section 1).

A length or area in a pipeline file may carry a unit: ``sigma: 2 cm``,
``radius: 0.05 m``, ``min_area: 0.01 m2``, ``radius: 3 px``. A bare number
means pixels, as it always did. Lengths: ``px``, ``mm``, ``cm``, ``m``, ``ft``
(the international foot, 0.3048 m). Areas: ``px`` (a number of pixels),
``mm2``, ``cm2``, ``m2``, ``ha``, ``ft2``.

A step parses such a value with :func:`length` or :func:`area`: a value in
pixels is validated at once (with the same messages as a bare number); a
value in ground units is kept as a :class:`Ground` until the input's
:class:`PixelSize` is known, and then :meth:`Ground.pixels` converts it:

* a length is divided by the pixel's side, the geometric mean of its two
  sides ``sqrt(row_m * col_m)`` (for square pixels, the side; for non-square
  ones, the side of the square of the same ground area, so that a disk of
  that radius covers the ground area it would on square pixels);
* an area is divided by the pixel's ground area ``row_m * col_m``;
* an integer parameter (a radius, an area in pixels, a halo, a block size)
  is rounded to the nearest integer (halves up), and raised to its least
  allowed value (1 for a radius or an area: a ground size smaller than half
  a pixel still means "the smallest there is"); an odd one (a block size, a
  footprint) goes to the nearest odd integer (ties up). A float parameter
  (a Gaussian's ``sigma``) is not rounded.

The pixel size is taken once per input, at the image's middle row
(:func:`input_pixel_size`; feet and geographic CRSs through
:mod:`tiler.georef`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from tiler.errors import ConfigError

LENGTHS = {"mm": 1e-3, "cm": 1e-2, "m": 1.0, "ft": 0.3048}
AREAS = {"mm2": 1e-6, "cm2": 1e-4, "m2": 1.0, "ha": 1e4, "ft2": 0.3048**2}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TEXT = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z][A-Za-z0-9²^]*)\s*$")


def positive_int(value: Any, key: str, *, minimum: int = 1) -> int:
    """``value`` as an integer ``>= minimum``, or a :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def number(value: Any, key: str, *, positive: bool = False) -> float:
    """``value`` as a finite float (``> 0`` with ``positive``), or a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{key}: expected a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PixelSize:
    """A pixel's ground size in metres: ``row_m`` along a column (one row down), ``col_m``
    along a row (one column across)."""

    row_m: float
    col_m: float

    @property
    def side_m(self) -> float:
        """The length one pixel stands for: the geometric mean of the two sides."""
        return math.sqrt(self.row_m * self.col_m)

    @property
    def area_m2(self) -> float:
        return self.row_m * self.col_m


@dataclass(frozen=True)
class Ground:
    """A parameter written in ground units, kept until the input's pixel size is known.

    ``key``: where it is written (``refine[0].opening.radius``); ``written``:
    as written (``"5 cm"``); ``metres``: in m (a length) or m² (an area);
    ``rule``: ``float``, ``int`` or ``odd``; ``minimum``: its least value in pixels.
    """

    key: str
    written: str
    metres: float
    area: bool = False
    rule: str = "int"
    minimum: int = 1

    @property
    def name(self) -> str:
        """The step's parameter (the key's last part)."""
        return self.key.rsplit(".", 1)[-1]

    def pixels(self, size: PixelSize) -> int | float:
        """The value in pixels for pixels of ``size`` (rounded by ``rule``)."""
        px = self.metres / (size.area_m2 if self.area else size.side_m)
        if self.rule == "float":
            if px <= 0:
                raise ConfigError(f"{self.key}: {self.written!r} is less than a pixel's size")
            return px
        if self.rule == "odd":
            return max(self.minimum, 2 * math.floor(px / 2) + 1)
        return max(self.minimum, math.floor(px + 0.5))

    def record(self, size: PixelSize) -> dict[str, Any]:
        """run.json's line for it: the key, the value as written and the pixels used."""
        return {"key": self.key, "written": self.written, "pixels": self.pixels(size)}


Parsed = tuple[Any, tuple[Ground, ...]]


def _split(value: Any, key: str, units: dict[str, float], what: str) -> tuple[Any, str | None]:
    """``(number, unit)`` of a value written ``"2 cm"``; a bare number has no unit."""
    if not isinstance(value, str):
        return value, None
    found = _TEXT.match(value)
    unit = found.group(2).replace("²", "2").replace("^2", "2") if found else None
    pixels = ("px", "px2") if units is AREAS else ("px",)
    if found is None or (unit not in pixels and unit not in units):
        allowed = ", ".join(["px", *units])
        raise ConfigError(f"{key}: {value!r} is not {what}; use {allowed}")
    text = found.group(1)
    return (float(text) if re.search(r"[.eE]", text) else int(text)), unit


def _parse(value: Any, key: str, units: dict[str, float], what: str, **rules: Any) -> Parsed:
    amount, unit = _split(value, key, units, what)
    rule, minimum = rules["rule"], rules["minimum"]
    if unit is None or unit in ("px", "px2"):  # pixels: checked as a bare number is
        if rule == "float":
            return number(amount, key, positive=True), ()
        if isinstance(amount, float) and amount.is_integer() and unit is not None:
            amount = int(amount)
        px = positive_int(amount, key, minimum=minimum)
        if rule == "odd" and px % 2 == 0:
            raise ConfigError(f"{key}: must be odd, got {px}")
        return px, ()
    metres = number(amount, key, positive=True) * units[unit]
    ground = Ground(key, value.strip(), metres, units is AREAS, rule, minimum)
    return (1.0 if rule == "float" else max(minimum, 1)), (ground,)  # a placeholder


def length(value: Any, key: str, *, rule: str = "int", minimum: int = 1) -> Parsed:
    """A length parameter: ``(pixels, ())``, or ``(placeholder, (Ground,))`` in ground units.

    ``rule``: ``float`` (kept as a float > 0), ``int`` (an integer ``>= minimum``)
    or ``odd`` (an odd integer ``>= minimum``).
    """
    return _parse(value, key, LENGTHS, "a length", rule=rule, minimum=minimum)


def area(value: Any, key: str, *, minimum: int = 1) -> Parsed:
    """An area parameter (an integer number of pixels), as :func:`length`."""
    return _parse(value, key, AREAS, "an area", rule="int", minimum=minimum)


def as_written(step: Any) -> Any:
    """``step.to_dict()`` with its sizes in ground units as written (not their placeholders).

    A size's place in the dict is its key's path from the step's name on
    (``refine[4].split.watershed.halo``: ``["split"]["watershed"]["halo"]``).
    """
    out = step.to_dict()
    for g in step.ground:
        parts = g.key.split(".")
        place = out
        path = parts[next(i for i, part in enumerate(parts) if part in out) :]
        for part in path[:-1]:
            place = place[part]
        place[path[-1]] = g.written
    return out


def input_pixel_size(crs_wkt: str, transform: Any, height: int) -> PixelSize:
    """The pixel size of an input, at its middle row (where a geographic CRS is measured)."""
    from tiler.georef import pixel_sides_m

    y = transform[4] * (height / 2) + transform[5]
    row_m, col_m = pixel_sides_m(crs_wkt, tuple(transform)[:6], y)
    return PixelSize(row_m, col_m)


def refuse_without_pixel_size(grounds: tuple[Ground, ...], source: str) -> None:
    """A one-line refusal when ground units meet an input that has no pixel size."""
    if grounds:
        g = grounds[0]
        raise ConfigError(
            f"{source}: {g.key}: {g.written!r} is in ground units, but this input is "
            f"--pixel-only (no pixel size); write it in px"
        )


def _cm(metres: float) -> str:
    return f"{100 * metres:.3g} cm"


@dataclass(frozen=True)
class Serves:
    """The pixel sizes a pipeline serves (its ``serves:`` key), and why no others.

    ``serves: {min: 5 mm, max: 8 cm, why: "plants 20-55 cm across ..."}``: a
    pipeline whose sizes are on the ground (a preset) still assumes objects of
    some size in pixels, so outside this range :func:`tiler.resolution.resolve`
    refuses the input, in one line with the reason. ``min`` or ``max`` may be
    left out; ``why`` may not.
    """

    min_m: float | None
    max_m: float | None
    why: str
    written: tuple[str | None, str | None] = (None, None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min": self.written[0], "max": self.written[1], "why": self.why}
        return {key: value for key, value in out.items() if value is not None}

    def includes(self, size: PixelSize) -> bool:
        """Whether pixels of ``size`` (their side, as lengths are converted) are in range."""
        side, slack = size.side_m, 1e-6  # a file's 0.6000000000000106 m is 60 cm
        low = self.min_m is not None and side < self.min_m * (1 - slack)
        return not (low or (self.max_m is not None and side > self.max_m * (1 + slack)))

    def check(self, size: PixelSize | None, source: str) -> None:
        """Refuse an input whose pixels are outside (:meth:`includes`), in one line."""
        bounds = f"{self.written[0] or 'any'} to {self.written[1] or 'any'}"
        if size is None:
            raise ConfigError(
                f"{source}: this pipeline serves pixel sizes {bounds}, but the input is "
                f"--pixel-only (no pixel size)"
            )
        side = size.side_m
        if not self.includes(size):
            raise ConfigError(
                f"{source}: pixel size {_cm(side)} is outside the {bounds} this pipeline "
                f"serves: {self.why}"
            )


def _bound(value: Any, key: str) -> float | None:
    """One end of ``serves:``, in metres (``None`` where it is left out)."""
    if value is None:
        return None
    amount, unit = _split(value, key, LENGTHS, "a length")
    if unit is None or unit not in LENGTHS:
        raise ConfigError(f"{key}: {value!r} must be a length on the ground (mm, cm, m, ft)")
    return number(amount, key, positive=True) * LENGTHS[unit]


def serves(value: Any, key: str = "serves") -> Serves:
    """Parse a ``serves:`` mapping: ``min`` and/or ``max`` lengths on the ground, and ``why``."""
    allowed = ("min", "max", "why")
    if not isinstance(value, dict) or not set(value) <= set(allowed):
        raise ConfigError(f"{key}: expected a mapping of {', '.join(allowed)}, got {value!r}")
    why = value.get("why")
    if not isinstance(why, str) or not why.strip():
        raise ConfigError(f"{key}.why: say why the pipeline serves only these pixel sizes")
    low, high = (_bound(value.get(end), f"{key}.{end}") for end in ("min", "max"))
    if (low is None and high is None) or (low is not None and high is not None and low > high):
        raise ConfigError(f"{key}: expected min <= max, or one of them, got {value!r}")
    lo, hi = (None if value.get(e) is None else str(value[e]).strip() for e in ("min", "max"))
    return Serves(low, high, why.strip(), (lo, hi))
