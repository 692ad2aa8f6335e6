"""What every pipeline step declares, in one place (DESIGN.md sections 1 and 3).

A step class owns its pipeline name(s) and parameters (``parse``, with one-line
:class:`~tiler.errors.ConfigError` messages naming the key), its class in
section 1 (``kind``) and how far it reaches in pixels (``reach``), its per-tile
kernel call, its whole-image reference meaning and its record (``to_dict``,
and for thresholds ``record`` in run.json). The passes, the tasks and the
reference ask the step; none of them branches on step types.

Step kinds: ``pixel`` (no halo), ``local`` (a halo of ``reach`` pixels),
``global`` (a statistic over every valid pixel first), ``object`` (through
the stitched labels) and ``approximate`` (a halo, objects matched across it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import numpy as np

from tiler.errors import ConfigError
from tiler.kernels.filters import gaussian_reach
from tiler.kernels.label import label, relabel
from tiler.units import Ground, PixelSize, length, number, positive_int

__all__ = ["number", "positive_int"]  # the validators steps use, from tiler.units

S = TypeVar("S", bound="Step")
G = TypeVar("G", bound="SigmaStep")
Threshold = float | tuple[float, ...] | None


def params(value: Any, key: str, allowed: Sequence[str]) -> dict[str, Any]:
    """A step's parameter mapping (``None`` is empty), with no key outside ``allowed``."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{key}: expected a mapping of parameters ({', '.join(allowed) or 'none'})"
        )
    for name in value:
        if name not in allowed:
            raise ConfigError(
                f"{key}.{name}: unknown parameter; allowed: {', '.join(allowed) or 'none'}"
            )
    return dict(value)


def required(found: Mapping[str, Any], name: str, key: str, what: str) -> Any:
    """``found[name]``, or a :class:`ConfigError` saying that ``key.name`` is required."""
    if name not in found:
        raise ConfigError(f"{key}.{name}: required ({what})")
    return found[name]


@dataclass(frozen=True)
class Step:
    """A pipeline step.

    ``names`` are the pipeline names it is written under (``{name: params}``);
    ``position`` is ``"first"`` or ``"last"`` where the step must stand there
    in its list. ``ground`` holds its parameters written in ground units
    (:mod:`tiler.units`) until :meth:`in_pixels` turns them into pixels; the
    fields hold placeholders until then.
    """

    ground: tuple[Ground, ...] = field(default=(), kw_only=True, repr=False)
    names: ClassVar[tuple[str, ...]] = ()
    position: ClassVar[str | None] = None

    def in_pixels(self: S, size: PixelSize) -> S:
        """The step with its ground-unit parameters in pixels for pixels of ``size``."""
        if not self.ground:
            return self
        values = {g.name: g.pixels(size) for g in self.ground}
        return replace(self, ground=(), **values)

    @property
    def kind(self) -> str:
        """Its class in DESIGN.md section 1: pixel, local, global, object or approximate."""
        raise NotImplementedError

    @property
    def reach(self) -> int:
        """How far the step reaches, in pixels of the input (its halo when tiled)."""
        return 0

    @classmethod
    def parse(cls: type[S], name: str, value: Any, at: str, beside: Mapping[str, Any]) -> S:
        """The step written ``{name: value}`` at ``at`` (``beside``: the item's other keys)."""
        if beside:
            raise ConfigError(f"{at}: unexpected key {next(iter(beside))!r} beside {name!r}")
        return cls.from_params(name, value, f"{at}.{name}")

    @classmethod
    def from_params(cls: type[S], name: str, value: Any, key: str) -> S:
        raise NotImplementedError

    def to_dict(self) -> Any:
        """The step as a pipeline file writes it (run.json's resolved config)."""
        raise NotImplementedError


@dataclass(frozen=True)
class SigmaStep(Step):
    """A step of one Gaussian ``sigma`` (``gaussian``, ``smooth``), written as
    ``{name: {sigma}}`` in pixels or a ground length (kept a float): local, reaching
    SciPy's kernel radius ``int(4 * sigma + 0.5)``. Listed before the step's kind."""

    sigma: float

    @property
    def reach(self) -> int:
        return gaussian_reach(self.sigma)

    @classmethod
    def from_params(cls: type[G], name: str, value: Any, key: str) -> G:
        sigma = required(params(value, key, ("sigma",)), "sigma", key, "a number > 0")
        px, ground = length(sigma, f"{key}.sigma", rule="float")
        return cls(px, ground=ground)

    def to_dict(self) -> dict[str, Any]:
        return {self.names[0]: {"sigma": self.sigma}}


class ValueStep(Step):
    """A step on the preprocessed values, ``(M, N) ndarray of float64``: a filter.

    ``aligned`` steps (CLAHE) work on regions aligned to the image and run
    through :meth:`tile_aligned`. A ``global`` step names in ``statistic`` the
    passes that find what it needs (``histogram``: the values' 256-bin
    histogram; ``ranges``: CLAHE's two ranges); :meth:`resolved` returns the
    step carrying it, which then runs per tile.
    """

    aligned: ClassVar[bool] = False
    statistic: ClassVar[str | None] = None

    def tile(self, values: np.ndarray) -> np.ndarray:
        """The per-tile kernel (exact inside the tile less ``reach``)."""
        raise NotImplementedError

    def reference(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The whole-image meaning (DESIGN.md section 3)."""
        raise NotImplementedError


class MaskStep(Step):
    """A ``refine`` step on the boolean mask."""

    def reference(self, mask: np.ndarray, connectivity: int) -> np.ndarray:
        """The whole-image meaning on the whole mask (``connectivity``: the pipeline's)."""
        raise NotImplementedError


class LocalMaskStep(MaskStep):
    """A local refine step: a kernel over the mask read with a halo of ``reach``."""

    kind = "local"

    def tile(self, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ObjectStep(MaskStep):
    """An object-level refine step: one label pass, stitched, then a look-up-table edit.

    The pass labels the mask (or with ``background`` its complement) under
    :meth:`connectivity`; :meth:`keep` turns the stitched per-object
    statistics into the table's values; :meth:`edit` applies a tile's slice
    of the table.
    """

    kind = "object"
    background: ClassVar[bool] = False

    def connectivity(self, pipeline_connectivity: int) -> int:
        return pipeline_connectivity

    def keep(self, stats: Mapping[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def edit(self, mask: np.ndarray, lut: np.ndarray, connectivity: int) -> np.ndarray:
        labels, _ = label(~mask if self.background else mask, self.connectivity(connectivity))
        kept = relabel(labels, lut)
        return mask | kept if self.background else kept

    @property
    def final_min_area(self) -> int | None:
        """As the last step: the minimum area of a filter on the final labels instead."""
        return None


class ThresholdStep(Step):
    """The ``threshold:`` step, values to mask.

    ``passes`` says what the passes do before the mask exists: ``none``
    (per pixel or local), ``histogram`` (the value range, then one 256-bin
    histogram: :meth:`from_histogram`), ``percentile`` (order statistics),
    ``grow`` or ``edges`` (label passes that store the mask). ``codes``: the
    histogram pass may keep bin codes for the mask (a single threshold).
    """

    usage: ClassVar[str] = ""
    passes: ClassVar[str] = "none"
    codes: ClassVar[bool] = False
    polarity_applies: ClassVar[bool] = True

    @property
    def known(self) -> float | None:
        """The threshold when it is known before any pass."""
        return None

    @property
    def implied_refine(self) -> tuple[MaskStep, ...]:
        """Refine steps the threshold's meaning puts first (edges: their contours filled)."""
        return ()

    @classmethod
    def parse(cls: type[S], name: str, value: Any, at: str, beside: Mapping[str, Any]) -> S:
        return cls.from_params(name, value, f"{at}.{name}")

    def from_histogram(self, counts: np.ndarray, vmin: float, vmax: float) -> Threshold:
        raise NotImplementedError

    def tile_mask(
        self, values: np.ndarray, valid: np.ndarray, threshold: Threshold, polarity: str
    ) -> np.ndarray:
        """The tile's foreground (``&= valid``) for the threshold(s) the passes found."""
        raise NotImplementedError

    def reference(self, values: np.ndarray, valid: np.ndarray) -> tuple[Threshold, np.ndarray]:
        """The whole-image threshold(s) and foreground, before polarity and ``&= valid``."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """run.json's ``threshold`` record (besides the value and the value range)."""
        raise NotImplementedError
