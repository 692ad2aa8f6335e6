"""The pipeline file: parse, validate, and resolve how far each step reaches.

A pipeline is a YAML mapping: ``DEFAULT_PIPELINE_YAML`` below, and the README.

Every step has a whole-image meaning (``tiler.reference``) and a class that
decides how it runs in tiles:

* ``pixel``  – band math and indices: no halo;
* ``local``  – reaches ``reach`` pixels: the tile is read with a halo;
* ``global`` – histogram equalisation, Otsu, multi-Otsu, percentiles: statistics over
  every valid pixel, then per pixel;
* ``object`` – hole filling and small-object removal: through the stitched labels.

The whole file is validated before any work starts; a :class:`ConfigError`
names the key at fault and what is allowed there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from tiler.errors import ConfigError
from tiler.steps import registry
from tiler.steps.base import (
    LocalMaskStep,
    MaskStep,
    ObjectStep,
    Step,
    ThresholdStep,
    ValueStep,
    number,
    positive_int,
)
from tiler.steps.contrast import Clahe, Equalize
from tiler.steps.edges import CannyEdges
from tiler.steps.filters import Gaussian, Median
from tiler.steps.grow import Grow
from tiler.steps.indices import Index
from tiler.steps.model import Model, load_callable
from tiler.steps.morphology import FillHoles, Morphology, RemoveSmallObjects, Smooth
from tiler.steps.onnx_model import OnnxModel
from tiler.steps.split import Split
from tiler.steps.thresholds import FixedThreshold, LocalThreshold, MultiOtsu, Otsu, Percentile
from tiler.units import Serves, as_written, serves


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. ``bands`` is ``None`` until resolved against a file."""

    preprocess: tuple[Step, ...]
    threshold: ThresholdStep = field(default_factory=Otsu)
    polarity: Literal["above", "below"] = "above"
    refine: tuple[MaskStep, ...] = ()
    connectivity: Literal[1, 2] = 2
    bands: tuple[int, ...] | None = None
    model: Model | OnnxModel | None = None
    serves: Serves | None = None  # the pixel sizes it serves (tiler.units.Serves)
    # run.json's record of the sizes converted from ground units (tiler.resolution)
    units: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def index(self) -> Index:
        return self.preprocess[0]  # type: ignore[return-value]

    @property
    def filters(self) -> tuple[ValueStep, ...]:
        return self.preprocess[1:]  # type: ignore[return-value]

    def unresolved_global_step(self) -> int | None:
        """Position in ``preprocess`` of the first global step still without its statistic."""
        for i, step in enumerate(self.preprocess):
            if step.kind == "global":
                return i
        return None

    @property
    def preprocess_reach(self) -> int:
        """Halo that the preprocessing chain needs (sum of its radii)."""
        return sum(step.reach for step in self.filters)

    @property
    def threshold_reach(self) -> int:
        """Halo of preprocessed values that the threshold needs (a local threshold's)."""
        return self.threshold.reach if self.threshold.kind == "local" else 0

    @property
    def split(self) -> Split | None:
        """The final ``split`` step, if any (it turns the mask into instance labels)."""
        last = self.refine[-1] if self.refine else None
        return last if last is not None and last.kind == "approximate" else None  # type: ignore[return-value]

    def stages(self) -> list[Stage]:
        """Split ``refine`` into stages: local steps, then the object steps after them.

        A stage's local steps need a halo over the mask that the stage starts
        from; its object steps need the stitched labels of the whole image.
        """
        stages: list[Stage] = []
        local: list[LocalMaskStep] = []
        objects: list[ObjectStep] = []
        for step in self.refine[:-1] if self.split else self.refine:
            if step.kind == "local":
                if objects:
                    stages.append(Stage(tuple(local), tuple(objects)))
                    local, objects = [], []
                local.append(step)  # type: ignore[arg-type]
            else:
                objects.append(step)  # type: ignore[arg-type]
        stages.append(Stage(tuple(local), tuple(objects)))
        return stages

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.serves is None else {"serves": self.serves.to_dict()}
        if self.bands is not None:
            out["bands"] = list(self.bands)
        if self.model is not None:
            out["model"] = as_written(self.model)
        else:
            out["preprocess"] = [as_written(step) for step in self.preprocess]
            out["threshold"] = as_written(self.threshold)
            out["polarity"] = self.polarity
        out["refine"] = [as_written(step) for step in self.refine]
        out["connectivity"] = self.connectivity
        return out

    def resolve_bands(
        self,
        count: int,
        alpha_bands: Sequence[int] = (),
        *,
        source: str = "input",
        alpha_is_mask: bool = True,
    ) -> Pipeline:
        """Fill in the default bands and check every band number against the file.

        An alpha band never takes a spectral role (NDVI's ``red``/``nir``, a
        colour of ``exg``, ``band: k``) while it is the validity mask; see
        :func:`tiler.steps.index_bands.check_alpha_roles`.

        Parameters
        ----------
        count : int
            Number of bands in the file.
        alpha_bands : sequence of int
            1-based numbers of the bands whose colour interpretation is alpha.
        source : str
            Name of the file, for messages.
        alpha_is_mask : bool
            Whether the alpha band is (part of) the validity mask: ``--mask
            dataset`` or ``alpha``; not with ``nodata`` or ``none``.
        """
        bands = self.bands
        if bands is None:
            bands = tuple(b for b in range(1, count + 1) if b not in set(alpha_bands))
            if not bands:
                raise ConfigError(
                    f"{source}: every band is alpha; list the bands to use in 'bands:'"
                )
        for b in bands:
            if not 1 <= b <= count:
                raise ConfigError(
                    f"{source}: bands: band {b} is out of range; the file has {count} band(s) "
                    f"(1..{count})"
                )
        if self.model is not None:
            bands = self.model.bands_for(tuple(bands), self.bands is not None, source)
            return replace(self, bands=tuple(bands))
        self.index.check_bands(bands, count, tuple(alpha_bands), alpha_is_mask, source)
        return replace(self, bands=tuple(bands))

    def in_pixels(self) -> Pipeline:
        """This pipeline, refused while a size is in ground units (see :mod:`tiler.resolution`)."""
        if any(step.ground for step in (*self.preprocess, self.threshold, *self.refine, self.model)
               if step is not None):  # fmt: skip
            raise ValueError("a pipeline in ground units runs after tiler.resolution.resolve")
        return self


@dataclass(frozen=True)
class Stage:
    """Local refine steps followed by the object steps that come right after them."""

    local: tuple[LocalMaskStep, ...]
    objects: tuple[ObjectStep, ...]

    @property
    def reach(self) -> int:
        return sum(step.reach for step in self.local)


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------

DEFAULT_PIPELINE_YAML = """\
# tiler's default plant pipeline: green vegetation on soil (RGB or RGBA drone imagery).
preprocess:
  - index: exg              # excess green on chromatic coordinates
  - gaussian: {sigma: 1.0}  # smooth sensor noise
threshold: otsu             # one global Otsu threshold over every valid pixel
polarity: above             # plants are greener than soil
refine:
  - closing: {radius: 1}
  - opening: {radius: 1}
  - fill_holes: {}
  - remove_small_objects: {min_area: 20}
connectivity: 2
"""

TOP_KEYS = tuple("bands preprocess threshold polarity model refine connectivity serves".split())


def _step(item: Any, key: str, allowed: Sequence[str]) -> tuple[str, Any, dict[str, Any]]:
    """A step is ``{name: params}`` (or a bare ``name``); returns (name, value, extra keys)."""
    if isinstance(item, str):
        item = {item: {}}
    if not isinstance(item, Mapping) or not item:
        raise ConfigError(f"{key}: expected a step such as {{{allowed[0]}: ...}}, got {item!r}")
    names = [k for k in item if k in allowed]
    if len(names) != 1:
        unknown = [k for k in item if k not in allowed]
        what = f"unknown step {unknown[0]!r}" if unknown else "one step per list item"
        raise ConfigError(f"{key}: {what}; allowed: {', '.join(allowed)}")
    name = names[0]
    extra = {k: v for k, v in item.items() if k != name}
    return name, item[name], extra


def _parse_steps(items: list[Any], part: str, classes: Mapping[str, type[Step]]) -> list[Any]:
    """The steps of the list ``part`` (preprocess or refine), each parsed by its class."""
    steps = []
    firsts = " or ".join(f"'{n}:'" for n, cls in classes.items() if cls.position == "first")
    for i, item in enumerate(items):
        key = f"{part}[{i}]"
        name, value, extra = _step(item, key, list(classes))
        cls = classes[name]
        if cls.position == "first" and i != 0:
            raise ConfigError(f"{key}.{name}: the index must be the first {part} step")
        if cls.position == "last" and i != len(items) - 1:
            raise ConfigError(f"{key}.{name}: must be the last {part} step")
        if i == 0 and firsts and cls.position != "first":
            raise ConfigError(f"{key}: the first {part} step must be {firsts}")
        steps.append(cls.parse(name, value, key, extra))
    return steps


def _parse_preprocess(items: Any) -> tuple[Step, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError("preprocess: expected a non-empty list starting with 'index:' or 'band:'")
    return tuple(_parse_steps(items, "preprocess", registry.PREPROCESS))


def _parse_refine(items: Any) -> tuple[MaskStep, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError("refine: expected a list of steps")
    return tuple(_parse_steps(items, "refine", registry.REFINE))


def _parse_threshold(value: Any) -> ThresholdStep:
    if isinstance(value, str) and value in registry.BARE_THRESHOLDS:
        return registry.BARE_THRESHOLDS[value]()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return registry.NUMBER_THRESHOLD(number(value, "threshold"))
    usage = ", ".join(registry.THRESHOLD_USAGE)
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(f"threshold: expected one of {usage}, got {value!r}")
    ((name, params),) = value.items()
    if name not in registry.THRESHOLDS:
        raise ConfigError(f"threshold: unknown method {name!r}; allowed: {usage}")
    return registry.THRESHOLDS[name].parse(name, params, "threshold", {})


def parse_pipeline(data: Any) -> Pipeline:
    """Validate a pipeline mapping (as loaded from YAML) and return a :class:`Pipeline`.

    Examples
    --------
    >>> p = parse_pipeline({"preprocess": [{"index": "exg"}], "threshold": 0.1})
    >>> p.threshold
    FixedThreshold(value=0.1)
    """
    if not isinstance(data, Mapping):
        raise ConfigError("the pipeline must be a mapping with keys: " + ", ".join(TOP_KEYS))
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{key}: unknown key; allowed: {', '.join(TOP_KEYS)}")

    bands = data.get("bands")
    if bands is not None:
        if not isinstance(bands, list) or not bands:
            raise ConfigError("bands: expected a non-empty list of 1-based band numbers")
        bands = tuple(positive_int(b, f"bands[{i}]") for i, b in enumerate(bands))
        if len(set(bands)) != len(bands):
            raise ConfigError(f"bands: band numbers repeat in {list(bands)}")

    threshold = _parse_threshold(data.get("threshold", "otsu"))

    polarity = data.get("polarity", "above")
    if polarity not in ("above", "below"):
        raise ConfigError(f"polarity: expected 'above' or 'below', got {polarity!r}")
    if not threshold.polarity_applies and polarity != "above":
        name = threshold.names[0]
        raise ConfigError(f"polarity: 'below' does not apply to threshold {name}")

    connectivity = data.get("connectivity", 2)
    if type(connectivity) is not int or connectivity not in (1, 2):
        raise ConfigError(
            f"connectivity: expected 1 (4-connected) or 2 (8-connected), got {connectivity!r}"
        )

    refine = _parse_refine(data.get("refine"))
    ranged = serves(data["serves"]) if "serves" in data else None
    if "model" in data:
        for key in ("preprocess", "threshold", "polarity"):
            if key in data:
                raise ConfigError(f"{key}: not allowed beside 'model:', which replaces it")
        model = registry.MODEL.from_params("model", data["model"], "model")
        if model.output in ("labels", "points") and refine:
            raise ConfigError(
                f"refine: not allowed with model output {model.output!r} (objects come as given)"
            )
        return Pipeline(
            (), refine=refine, connectivity=connectivity, bands=bands, model=model, serves=ranged
        )
    return Pipeline(
        preprocess=_parse_preprocess(data.get("preprocess", [{"index": "exg"}])),
        threshold=threshold,
        polarity=polarity,
        refine=refine,
        connectivity=connectivity,
        bands=bands,
        serves=ranged,
    )


def load_pipeline(path: str | Path | None = None) -> Pipeline:
    """Read and validate a pipeline file; ``None`` gives the default plant pipeline."""
    if path is None:
        return parse_pipeline(yaml.safe_load(DEFAULT_PIPELINE_YAML))
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read the pipeline file ({exc.__class__.__name__})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    try:
        return parse_pipeline(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


__all__ = [
    "CannyEdges",
    "Clahe",
    "DEFAULT_PIPELINE_YAML",
    "Equalize",
    "FillHoles",
    "FixedThreshold",
    "Gaussian",
    "Grow",
    "Index",
    "LocalThreshold",
    "Median",
    "Model",
    "OnnxModel",
    "Morphology",
    "MultiOtsu",
    "Otsu",
    "Percentile",
    "Pipeline",
    "RemoveSmallObjects",
    "Smooth",
    "Split",
    "Stage",
    "load_callable",
    "load_pipeline",
    "parse_pipeline",
]
