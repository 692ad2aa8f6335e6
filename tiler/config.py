"""The pipeline file: parse, validate, and resolve how far each step reaches.

A pipeline is a YAML mapping (see ``DEFAULT_PIPELINE_YAML`` and the README)::

    bands: [1, 2, 3]
    preprocess:
      - index: exg
      - gaussian: {sigma: 1.0}
    threshold: otsu
    polarity: above
    refine:
      - closing: {radius: 1}
      - opening: {radius: 1}
      - fill_holes: {}
      - remove_small_objects: {min_area: 20}
    connectivity: 2

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

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from tiler.errors import ConfigError

GAUSSIAN_TRUNCATE = 4.0

# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """A per-pixel index computed from the selected bands.

    ``name`` is ``exg``, ``exgr``, ``ndvi``, ``gray``, ``hsv`` or ``band``.
    ``red``/``nir`` are band numbers of the file (NDVI only); ``band`` is a
    1-based position in the selected bands (``band: k``); ``channel`` is
    ``h``, ``s`` or ``v`` (HSV only).
    """

    name: Literal["exg", "exgr", "ndvi", "gray", "hsv", "band"]
    red: int | None = None
    nir: int | None = None
    band: int | None = None
    channel: Literal["h", "s", "v"] | None = None
    kind = "pixel"
    reach = 0

    @property
    def bands_needed(self) -> int:
        """How many selected bands the index reads (the first ones, as R, G, B)."""
        return 3 if self.name in ("exg", "exgr", "gray", "hsv") else 1

    def to_dict(self) -> dict[str, Any]:
        if self.name == "band":
            return {"band": self.band}
        if self.name == "ndvi":
            return {"index": "ndvi", "red": self.red, "nir": self.nir}
        if self.name == "hsv":
            return {"index": {"hsv": self.channel}}
        return {"index": self.name}


@dataclass(frozen=True)
class Gaussian:
    """``scipy.ndimage.gaussian_filter(x, sigma, mode="nearest", truncate=4.0)``."""

    sigma: float
    kind = "local"

    @property
    def reach(self) -> int:
        # SciPy's kernel radius: int(truncate * sigma + 0.5).
        return int(GAUSSIAN_TRUNCATE * self.sigma + 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {"gaussian": {"sigma": self.sigma}}


@dataclass(frozen=True)
class Median:
    """``scipy.ndimage.median_filter(x, footprint=disk(radius), mode="reflect")``."""

    radius: int
    kind = "local"

    @property
    def reach(self) -> int:
        return self.radius

    def to_dict(self) -> dict[str, Any]:
        return {"median": {"radius": self.radius}}


@dataclass(frozen=True)
class Equalize:
    """``skimage.exposure.equalize_hist(x, nbins=256, mask=valid)``: a global statistic.

    The cumulative histogram of the valid values (256 bins over their range)
    maps every pixel through ``numpy.interp``. Once the passes have found it
    (``centers``, ``cdf``), the step is per pixel.
    """

    centers: tuple[float, ...] | None = field(default=None, repr=False)
    cdf: tuple[float, ...] | None = field(default=None, repr=False)
    reach = 0

    @property
    def kind(self) -> str:
        return "global" if self.cdf is None else "pixel"

    def to_dict(self) -> dict[str, Any]:
        return {"equalize": {}}


@dataclass(frozen=True)
class Clahe:
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

    @property
    def kind(self) -> str:
        return "global" if self.ranges is None else "local"

    @property
    def reach(self) -> int:
        return self.kernel_size + (self.kernel_size + 1) // 2 - 1

    def to_dict(self) -> dict[str, Any]:
        return {"clahe": {"kernel_size": self.kernel_size, "clip_limit": self.clip_limit}}


@dataclass(frozen=True)
class Morphology:
    """Binary erosion, dilation, opening or closing with ``disk(radius)``."""

    op: Literal["erosion", "dilation", "opening", "closing"]
    radius: int
    kind = "local"

    @property
    def reach(self) -> int:
        return self.radius * (2 if self.op in ("opening", "closing") else 1)

    def to_dict(self) -> dict[str, Any]:
        return {self.op: {"radius": self.radius}}


@dataclass(frozen=True)
class Smooth:
    """Boundary smoothing: ``gaussian_filter(m.astype(float64), sigma, mode="nearest") > 0.5``."""

    sigma: float
    kind = "local"

    @property
    def reach(self) -> int:
        return int(GAUSSIAN_TRUNCATE * self.sigma + 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {"smooth": {"sigma": self.sigma}}


@dataclass(frozen=True)
class FillHoles:
    """Fill background components (4-connected) that touch no image border.

    With ``max_area``, only holes of at most that many pixels are filled.
    """

    max_area: int | None = None
    kind = "object"
    reach = 0

    def to_dict(self) -> dict[str, Any]:
        return {"fill_holes": {} if self.max_area is None else {"max_area": self.max_area}}


@dataclass(frozen=True)
class RemoveSmallObjects:
    """Drop objects (under the pipeline's connectivity) with fewer than ``min_area`` pixels."""

    min_area: int
    kind = "object"
    reach = 0

    def to_dict(self) -> dict[str, Any]:
        return {"remove_small_objects": {"min_area": self.min_area}}


@dataclass(frozen=True)
class Otsu:
    """``skimage.filters.threshold_otsu(x[valid])``: a global statistic."""

    kind = "global"

    def to_dict(self) -> str:
        return "otsu"


@dataclass(frozen=True)
class MultiOtsu:
    """Multi-class Otsu: a global statistic, then classes kept per pixel.

    ``t = skimage.filters.threshold_multiotsu(x[valid], classes)`` (256 bins);
    foreground = ``numpy.isin(numpy.digitize(x, t), keep)``: class ``i`` holds
    ``t[i-1] <= x < t[i]``, class 0 the darkest.
    """

    classes: int
    keep: tuple[int, ...]
    kind = "global"

    def to_dict(self) -> dict[str, Any]:
        return {"multi_otsu": {"classes": self.classes, "keep": list(self.keep)}}


@dataclass(frozen=True)
class Percentile:
    """``t = numpy.percentile(x[valid], q)`` (linear interpolation): a global statistic."""

    q: float
    kind = "global"

    def to_dict(self) -> dict[str, Any]:
        return {"percentile": self.q}


@dataclass(frozen=True)
class FixedThreshold:
    """A threshold known in advance."""

    value: float
    kind = "pixel"

    def to_dict(self) -> float:
        return self.value


@dataclass(frozen=True)
class Grow:
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
    kind = "object"

    def to_dict(self) -> dict[str, Any]:
        seeds: Any = self.seeds_file if self.seeds_file else [list(xy) for xy in self.seeds]
        params = {"seeds": seeds, "tolerance": self.tolerance, "connectivity": self.connectivity}
        return {"grow": params}


@dataclass(frozen=True)
class CannyEdges:
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
    kind = "object"

    def to_dict(self) -> dict[str, Any]:
        return {"edges": {"sigma": self.sigma, "low": self.low, "high": self.high}}


LOCAL_METHODS = ("gaussian", "mean", "median")


@dataclass(frozen=True)
class LocalThreshold:
    """``x > skimage.filters.threshold_local(x, block_size, method, offset, mode="reflect")``.

    The threshold of each pixel comes from its own neighbourhood: Gaussian
    (sigma ``(block_size - 1) / 6``, truncated at 4 sigma), mean or median
    over a ``block_size`` square. The mean is a plain sum per window divided
    by ``block_size**2`` (see :func:`tiler.kernels.threshold.local_mean`).
    """

    block_size: int
    method: Literal["gaussian", "mean", "median"] = "gaussian"
    offset: float = 0.0
    kind = "local"

    @property
    def reach(self) -> int:
        if self.method == "gaussian":
            return int(GAUSSIAN_TRUNCATE * (self.block_size - 1) / 6.0 + 0.5)
        return self.block_size // 2

    def to_dict(self) -> dict[str, Any]:
        params = {"block_size": self.block_size, "method": self.method, "offset": self.offset}
        return {"local": params}


@dataclass(frozen=True)
class Split:
    """Split touching objects at the watershed lines of the mask's distance transform.

    Whole-image meaning: :func:`tiler.kernels.split.reference_split` (markers
    from ``skimage.feature.peak_local_max(distance, min_distance, footprint,
    labels=...)``, ``skimage.segmentation.watershed(-distance, markers,
    mask=m)``). It reaches as far as an object is large, so it is approximate
    when tiled: each tile splits its window grown by ``halo``, and objects are
    owned by the tile holding their centroid (:mod:`tiler.split`). ``halo``
    should be at least the largest object's diameter.
    """

    min_distance: int = 7
    footprint: int | None = None
    halo: int = 32
    kind = "approximate"

    @property
    def reach(self) -> int:
        return self.halo

    def to_dict(self) -> dict[str, Any]:
        params = {"min_distance": self.min_distance, "footprint": self.footprint}
        return {"split": {"watershed": {**params, "halo": self.halo}}}


MODEL_OUTPUTS = ("mask", "labels")


@dataclass(frozen=True)
class Model:
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
    """

    function: str
    halo: int = 0
    output: Literal["mask", "labels"] = "mask"
    kind = "approximate"

    @property
    def reach(self) -> int:
        return self.halo

    def to_dict(self) -> dict[str, Any]:
        return {"callable": self.function, "halo": self.halo, "output": self.output}


RefineStep = Morphology | Smooth | FillHoles | RemoveSmallObjects | Split
PreprocessStep = Index | Gaussian | Median | Equalize | Clahe
Threshold = Otsu | MultiOtsu | Percentile | FixedThreshold | LocalThreshold | Grow | CannyEdges


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. ``bands`` is ``None`` until resolved against a file."""

    preprocess: tuple[PreprocessStep, ...]
    threshold: Threshold = field(default_factory=Otsu)
    polarity: Literal["above", "below"] = "above"
    refine: tuple[RefineStep, ...] = ()
    connectivity: Literal[1, 2] = 2
    bands: tuple[int, ...] | None = None
    model: Model | None = None

    @property
    def index(self) -> Index:
        return self.preprocess[0]  # type: ignore[return-value]

    @property
    def filters(self) -> tuple[Gaussian | Median | Equalize | Clahe, ...]:
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
        return self.threshold.reach if isinstance(self.threshold, LocalThreshold) else 0

    @property
    def split(self) -> Split | None:
        """The final ``split`` step, if any (it turns the mask into instance labels)."""
        return self.refine[-1] if self.refine and isinstance(self.refine[-1], Split) else None

    def stages(self) -> list[Stage]:
        """Split ``refine`` into stages: local steps, then the object steps after them.

        A stage's local steps need a halo over the mask that the stage starts
        from; its object steps need the stitched labels of the whole image.
        """
        stages: list[Stage] = []
        local: list[Morphology | Smooth] = []
        objects: list[FillHoles | RemoveSmallObjects] = []
        for step in self.refine[:-1] if self.split else self.refine:
            if step.kind == "local":
                if objects:
                    stages.append(Stage(tuple(local), tuple(objects)))
                    local, objects = [], []
                local.append(step)
            else:
                objects.append(step)
        stages.append(Stage(tuple(local), tuple(objects)))
        return stages

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.bands is not None:
            out["bands"] = list(self.bands)
        if self.model is not None:
            out["model"] = self.model.to_dict()
        else:
            out["preprocess"] = [step.to_dict() for step in self.preprocess]
            out["threshold"] = self.threshold.to_dict()
            out["polarity"] = self.polarity
        out["refine"] = [step.to_dict() for step in self.refine]
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
        :func:`_check_alpha_roles`.

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
            return replace(self, bands=tuple(bands))
        index = self.index
        need = index.bands_needed
        if len(bands) < need:
            raise ConfigError(
                f"{source}: preprocess[0].index: {index.name} needs {need} selected bands, "
                f"but bands: {list(bands)} gives {len(bands)} ({count} band(s) in the file)"
            )
        if index.name == "band" and not 1 <= (index.band or 0) <= len(bands):
            raise ConfigError(
                f"{source}: preprocess[0].band: {index.band} is out of range; "
                f"{len(bands)} band(s) are selected (1..{len(bands)})"
            )
        _check_alpha_roles(index, bands, count, tuple(alpha_bands), alpha_is_mask, source)
        if index.name == "ndvi":
            for role in ("red", "nir"):
                number = getattr(index, role)
                if number not in bands:
                    raise ConfigError(
                        f"{source}: preprocess[0].{role}: band {number} is not among the "
                        f"selected bands {list(bands)} ({count} band(s) in the file); "
                        "list it in 'bands:'"
                    )
        return replace(self, bands=tuple(bands))


ROLE_NAMES = {"red": "red", "nir": "near-infrared"}


def _check_alpha_roles(
    index: Index,
    bands: tuple[int, ...],
    count: int,
    alpha: tuple[int, ...],
    alpha_is_mask: bool,
    source: str,
) -> None:
    """Refuse a band the index would read as a colour that is absent or the alpha band.

    An alpha band is transparency: read as near-infrared or blue it gives a
    number, but a meaningless one, and as the validity mask it also drops
    every pixel where it is 0. So it is never proposed for a role, and is
    refused in one while it is the mask. A spectral band tagged alpha by
    mistake (NIR in some 4-band files) runs once ``--mask nodata`` or
    ``none`` says the tag is not a mask and ``bands:`` lists it.
    """
    others = ", ".join(str(b) for b in range(1, count + 1) if b not in alpha) or "none"
    fix = (
        "list it in 'bands:'"
        if not alpha_is_mask
        else ("run with --mask nodata (or --mask none) and list it in 'bands:'")
    )
    if index.name == "ndvi":
        for role in ("red", "nir"):
            number, name = getattr(index, role), ROLE_NAMES[role]
            where = f"{source}: preprocess[0].{role}: band {number}"
            if number > count:
                raise ConfigError(
                    f"{where} does not exist: the file has {count} band(s) (1..{count}); "
                    f"set {role}: to its {name} band (NDVI needs red and near-infrared; "
                    "an RGB image has no near-infrared: use index: exg)"
                )
            if number in alpha and (alpha_is_mask or number not in bands):
                raise ConfigError(
                    f"{where} is the file's alpha band (transparency), not {name}; set {role}: "
                    f"to its {name} band (bands that are not alpha: {others}); if band {number} "
                    f"is {name} tagged alpha by mistake, {fix}"
                )
        return
    if not alpha_is_mask:
        return
    used = (bands[index.band - 1],) if index.name == "band" else bands[: index.bands_needed]
    for position, number in enumerate(used):
        if number in alpha:
            what = f"band: {index.band}" if index.name == "band" else f"index: {index.name}"
            raise ConfigError(
                f"{source}: bands: band {number} is the file's alpha band (transparency), which "
                f"preprocess[0].{what} would read as {_colour(index, position)}; leave it out "
                f"of 'bands:' (bands that are not alpha: {others}); if it is a spectral band "
                "tagged alpha by mistake, run with --mask nodata (or --mask none)"
            )


def _colour(index: Index, position: int) -> str:
    return "its values" if index.name == "band" else ("red", "green", "blue")[position]


@dataclass(frozen=True)
class Stage:
    """Local refine steps followed by the object steps that come right after them."""

    local: tuple[Morphology | Smooth, ...]
    objects: tuple[FillHoles | RemoveSmallObjects, ...]

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

TOP_KEYS = ("bands", "preprocess", "threshold", "polarity", "model", "refine", "connectivity")
INDEX_NAMES = ("exg", "exgr", "ndvi", "gray", "hsv")
HSV_CHANNELS = ("h", "s", "v")
PREPROCESS_STEPS = ("index", "band", "gaussian", "median", "equalize", "clahe")
REFINE_STEPS = (
    "erosion",
    "dilation",
    "opening",
    "closing",
    "smooth",
    "fill_holes",
    "remove_small_objects",
    "split",
)
THRESHOLDS = (
    "'otsu'",
    "a number",
    "{percentile: q}",
    "{grow: {seeds, tolerance, connectivity}}",
    "{edges: {sigma, low, high}}",
    "{multi_otsu: {classes, keep}}",
    "{local: {block_size, ...}}",
)


def _positive_int(value: Any, key: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _number(value: Any, key: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{key}: expected a number > 0, got {value!r}")
    return float(value)


def _params(value: Any, key: str, allowed: Sequence[str]) -> dict[str, Any]:
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


def _parse_preprocess(items: Any) -> tuple[PreprocessStep, ...]:
    if not isinstance(items, list) or not items:
        raise ConfigError("preprocess: expected a non-empty list starting with 'index:' or 'band:'")
    steps: list[PreprocessStep] = []
    for i, item in enumerate(items):
        key = f"preprocess[{i}]"
        name, value, extra = _step(item, key, PREPROCESS_STEPS)
        if name in ("index", "band") and i != 0:
            raise ConfigError(f"{key}.{name}: the index must be the first preprocess step")
        if i == 0 and name not in ("index", "band"):
            raise ConfigError(f"{key}: the first preprocess step must be 'index:' or 'band:'")
        if name != "index" and extra:
            raise ConfigError(f"{key}: unexpected key {next(iter(extra))!r} beside {name!r}")
        if name == "index" and isinstance(value, Mapping):
            if extra:
                raise ConfigError(f"{key}: unexpected key {next(iter(extra))!r} beside 'index'")
            params = _params(value, f"{key}.index", ("hsv",))
            channel = params.get("hsv")
            if channel not in HSV_CHANNELS:
                raise ConfigError(
                    f"{key}.index.hsv: expected one of {', '.join(HSV_CHANNELS)}, got {channel!r}"
                )
            steps.append(Index("hsv", channel=channel))
        elif name == "index":
            if value == "hsv":
                raise ConfigError(f"{key}.index: hsv needs a channel, e.g. {{hsv: v}}")
            if value not in INDEX_NAMES:
                raise ConfigError(
                    f"{key}.index: unknown index {value!r}; "
                    "allowed: exg, exgr, ndvi, gray, {hsv: h|s|v}"
                )
            allowed_extra = ("red", "nir") if value == "ndvi" else ()
            for k in extra:
                if k not in allowed_extra:
                    raise ConfigError(
                        f"{key}.{k}: not a parameter of index {value}; "
                        f"allowed: {', '.join(allowed_extra) or 'none'}"
                    )
            if value == "ndvi":
                red = _positive_int(extra.get("red", 1), f"{key}.red")
                nir = _positive_int(extra.get("nir", 4), f"{key}.nir")
                if red == nir:
                    raise ConfigError(f"{key}: red and nir must be different bands, both are {red}")
                steps.append(Index("ndvi", red=red, nir=nir))
            else:
                steps.append(Index(value))
        elif name == "band":
            steps.append(Index("band", band=_positive_int(value, f"{key}.band")))
        elif name == "clahe":
            params = _params(value, f"{key}.clahe", ("kernel_size", "clip_limit"))
            if "kernel_size" not in params:
                raise ConfigError(f"{key}.clahe.kernel_size: required (an integer >= 2, pixels)")
            size = _positive_int(params["kernel_size"], f"{key}.clahe.kernel_size", minimum=2)
            clip = _number(params.get("clip_limit", 0.01), f"{key}.clahe.clip_limit")
            if clip < 0:
                raise ConfigError(f"{key}.clahe.clip_limit: expected a number >= 0, got {clip}")
            steps.append(Clahe(size, clip))
        elif name == "equalize":
            _params(value, f"{key}.equalize", ())
            steps.append(Equalize())
        elif name == "median":
            params = _params(value, f"{key}.median", ("radius",))
            steps.append(Median(_positive_int(params.get("radius", 1), f"{key}.median.radius")))
        else:
            params = _params(value, f"{key}.gaussian", ("sigma",))
            if "sigma" not in params:
                raise ConfigError(f"{key}.gaussian.sigma: required (a number > 0)")
            steps.append(Gaussian(_number(params["sigma"], f"{key}.gaussian.sigma", positive=True)))
    return tuple(steps)


def _parse_refine(items: Any) -> tuple[RefineStep, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError("refine: expected a list of steps")
    steps: list[RefineStep] = []
    for i, item in enumerate(items):
        key = f"refine[{i}]"
        name, value, extra = _step(item, key, REFINE_STEPS)
        if extra:
            raise ConfigError(f"{key}: unexpected key {next(iter(extra))!r} beside {name!r}")
        if name == "fill_holes":
            params = _params(value, f"{key}.fill_holes", ("max_area",))
            max_area = params.get("max_area")
            if max_area is not None:
                max_area = _positive_int(max_area, f"{key}.fill_holes.max_area")
            steps.append(FillHoles(max_area))
        elif name == "split":
            if i != len(items) - 1:
                raise ConfigError(f"{key}.split: must be the last refine step")
            steps.append(_parse_split(value, f"{key}.split"))
        elif name == "smooth":
            params = _params(value, f"{key}.smooth", ("sigma",))
            if "sigma" not in params:
                raise ConfigError(f"{key}.smooth.sigma: required (a number > 0)")
            steps.append(Smooth(_number(params["sigma"], f"{key}.smooth.sigma", positive=True)))
        elif name == "remove_small_objects":
            params = _params(value, f"{key}.{name}", ("min_area",))
            if "min_area" not in params:
                raise ConfigError(f"{key}.{name}.min_area: required (an integer >= 1)")
            steps.append(
                RemoveSmallObjects(_positive_int(params["min_area"], f"{key}.{name}.min_area"))
            )
        else:
            params = _params(value, f"{key}.{name}", ("radius",))
            radius = _positive_int(params.get("radius", 1), f"{key}.{name}.radius")
            steps.append(Morphology(name, radius))
    return tuple(steps)


def _parse_threshold(value: Any) -> Threshold:
    if value == "otsu":
        return Otsu()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return FixedThreshold(_number(value, "threshold"))
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(f"threshold: expected one of {', '.join(THRESHOLDS)}, got {value!r}")
    ((name, params),) = value.items()
    key = f"threshold.{name}"
    if name == "percentile":
        q = _number(params, key)
        if not 0 <= q <= 100:
            raise ConfigError(f"{key}: expected a number from 0 to 100, got {params!r}")
        return Percentile(q)
    if name == "multi_otsu":
        params = _params(params, key, ("classes", "keep"))
        classes = _positive_int(params.get("classes", 3), f"{key}.classes", minimum=2)
        if classes > 5:
            raise ConfigError(f"{key}.classes: at most 5 classes, got {classes}")
        keep = params.get("keep")
        if not isinstance(keep, list) or not keep:
            raise ConfigError(f"{key}.keep: required, a list of class numbers 0..{classes - 1}")
        for i, k in enumerate(keep):
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < classes:
                raise ConfigError(f"{key}.keep[{i}]: expected a class number 0..{classes - 1}")
        if len(set(keep)) != len(keep):
            raise ConfigError(f"{key}.keep: class numbers repeat in {keep}")
        return MultiOtsu(classes, tuple(sorted(keep)))
    if name == "grow":
        return _parse_grow(params, key)
    if name == "edges":
        params = _params(params, key, ("sigma", "low", "high"))
        sigma = _number(params.get("sigma", 1.0), f"{key}.sigma", positive=True)
        low = _number(params.get("low", 0.1), f"{key}.low")
        high = _number(params.get("high", 0.2), f"{key}.high")
        if not 0 <= low <= high:
            raise ConfigError(f"{key}: expected 0 <= low <= high, got low {low}, high {high}")
        return CannyEdges(sigma, low, high)
    if name == "local":
        params = _params(params, key, ("block_size", "method", "offset"))
        if "block_size" not in params:
            raise ConfigError(f"{key}.block_size: required (an odd integer >= 3)")
        block_size = _positive_int(params["block_size"], f"{key}.block_size", minimum=3)
        if block_size % 2 == 0:
            raise ConfigError(f"{key}.block_size: must be odd, got {block_size}")
        method = params.get("method", "gaussian")
        if method not in LOCAL_METHODS:
            raise ConfigError(
                f"{key}.method: expected one of {', '.join(LOCAL_METHODS)}, got {method!r}"
            )
        offset = _number(params.get("offset", 0.0), f"{key}.offset")
        return LocalThreshold(block_size, method, offset)
    raise ConfigError(f"threshold: unknown method {name!r}; allowed: {', '.join(THRESHOLDS)}")


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
        bands = tuple(_positive_int(b, f"bands[{i}]") for i, b in enumerate(bands))
        if len(set(bands)) != len(bands):
            raise ConfigError(f"bands: band numbers repeat in {list(bands)}")

    threshold = _parse_threshold(data.get("threshold", "otsu"))

    polarity = data.get("polarity", "above")
    if polarity not in ("above", "below"):
        raise ConfigError(f"polarity: expected 'above' or 'below', got {polarity!r}")
    if isinstance(threshold, (Grow, CannyEdges)) and polarity != "above":
        name = "grow" if isinstance(threshold, Grow) else "edges"
        raise ConfigError(f"polarity: 'below' does not apply to threshold {name}")

    connectivity = data.get("connectivity", 2)
    if type(connectivity) is not int or connectivity not in (1, 2):
        raise ConfigError(
            f"connectivity: expected 1 (4-connected) or 2 (8-connected), got {connectivity!r}"
        )

    refine = _parse_refine(data.get("refine"))
    if "model" in data:
        for key in ("preprocess", "threshold", "polarity"):
            if key in data:
                raise ConfigError(f"{key}: not allowed beside 'model:', which replaces it")
        model = _parse_model(data["model"])
        if model.output == "labels" and refine:
            raise ConfigError(
                "refine: not allowed with model output 'labels' (objects come as given)"
            )
        return Pipeline((), refine=refine, connectivity=connectivity, bands=bands, model=model)
    return Pipeline(
        preprocess=_parse_preprocess(data.get("preprocess", [{"index": "exg"}])),
        threshold=threshold,
        polarity=polarity,
        refine=refine,
        connectivity=connectivity,
        bands=bands,
    )


def _parse_grow(value: Any, key: str) -> Grow:
    params = _params(value, key, ("seeds", "tolerance", "connectivity"))
    if "tolerance" not in params:
        raise ConfigError(f"{key}.tolerance: required (a number >= 0)")
    tolerance = abs(_number(params["tolerance"], f"{key}.tolerance"))
    connectivity = params.get("connectivity", 1)
    if type(connectivity) is not int or connectivity not in (1, 2):
        raise ConfigError(f"{key}.connectivity: expected 1 or 2, got {connectivity!r}")
    seeds = params.get("seeds")
    if isinstance(seeds, str):
        if not Path(seeds).is_file():
            raise ConfigError(f"{key}.seeds: {seeds}: no such file (GeoJSON or GeoPackage points)")
        return Grow(tolerance, connectivity, seeds_file=seeds)
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{key}.seeds: expected a file of points or a list of [x, y] points")
    points = []
    for i, point in enumerate(seeds):
        if not isinstance(point, list) or len(point) != 2:
            raise ConfigError(f"{key}.seeds[{i}]: expected [x, y] in the raster's CRS")
        points.append(tuple(_number(v, f"{key}.seeds[{i}]") for v in point))
    return Grow(tolerance, connectivity, seeds=tuple(points))


def _parse_split(value: Any, key: str) -> Split:
    params = _params(value, key, ("watershed",))
    if "watershed" not in params:
        raise ConfigError(f"{key}: expected {{watershed: {{min_distance, footprint, halo}}}}")
    key = f"{key}.watershed"
    params = _params(params["watershed"], key, ("min_distance", "footprint", "halo"))
    min_distance = _positive_int(params.get("min_distance", 7), f"{key}.min_distance")
    footprint = params.get("footprint")
    if footprint is not None:
        footprint = _positive_int(footprint, f"{key}.footprint", minimum=3)
        if footprint % 2 == 0:
            raise ConfigError(f"{key}.footprint: must be odd, got {footprint}")
    halo = _positive_int(params.get("halo", 32), f"{key}.halo")
    return Split(min_distance, footprint, halo)


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
    return function


def _parse_model(value: Any) -> Model:
    params = _params(value, "model", ("callable", "halo", "output"))
    if "callable" not in params:
        raise ConfigError("model.callable: required ('package.module:function')")
    spec = params["callable"]
    if not isinstance(spec, str):
        raise ConfigError(f"model.callable: expected 'package.module:function', got {spec!r}")
    load_callable(spec)  # fail now, before any work
    halo = _positive_int(params.get("halo", 0), "model.halo", minimum=0)
    output = params.get("output", "mask")
    if output not in MODEL_OUTPUTS:
        raise ConfigError(
            f"model.output: expected one of {', '.join(MODEL_OUTPUTS)}, got {output!r}"
        )
    return Model(spec, halo, output)


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
