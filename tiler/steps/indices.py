"""Per-pixel indices of the selected bands (``index: NAME``, ``band: k``): pixel steps.

Each index is one :class:`Formula` here, declaring its pipeline name, the bands
it reads, its per-tile kernel and its whole-image meaning (DESIGN.md section 3:
float64, evaluated in the order written); :data:`INDICES` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from skimage.color import rgb2hsv

from tiler.errors import ConfigError
from tiler.kernels.indices import (
    excess_green_bands,
    excess_green_red,
    gray,
    hsv_channel,
    ndvi,
    ratio,
)
from tiler.steps.base import Step, params, positive_int
from tiler.steps.index_bands import check_bands

HSV_CHANNELS = ("h", "s", "v")


@dataclass(frozen=True)
class Index(Step):
    """A per-pixel index computed from the selected bands (the first preprocess step).

    ``name`` is a key of :data:`INDICES` (``band`` for ``band: k``). ``red``/``nir``
    are band numbers of the file (NDVI only); ``band`` is a 1-based position in
    the selected bands (``band: k``); ``channel`` is ``h``, ``s`` or ``v`` (HSV only).
    """

    name: str
    red: int | None = None
    nir: int | None = None
    band: int | None = None
    channel: str | None = None
    names = ("index", "band")
    position = "first"
    kind = "pixel"

    @property
    def formula(self) -> Formula:
        return INDICES[self.name]

    @property
    def bands_needed(self) -> int:
        """How many selected bands the index reads (the first ones, as R, G, B)."""
        return self.formula.bands

    @classmethod
    def parse(cls, name: str, value: Any, at: str, beside: Mapping[str, Any]) -> Index:
        if name == "band":
            if beside:
                raise ConfigError(f"{at}: unexpected key {next(iter(beside))!r} beside 'band'")
            return cls("band", band=positive_int(value, f"{at}.band"))
        if isinstance(value, Mapping):
            if beside:
                raise ConfigError(f"{at}: unexpected key {next(iter(beside))!r} beside 'index'")
            channel = params(value, f"{at}.index", ("hsv",)).get("hsv")
            if channel not in HSV_CHANNELS:
                raise ConfigError(
                    f"{at}.index.hsv: expected one of {', '.join(HSV_CHANNELS)}, got {channel!r}"
                )
            return cls("hsv", channel=channel)
        if value == "hsv":
            raise ConfigError(f"{at}.index: hsv needs a channel, e.g. {{hsv: v}}")
        if value not in INDICES or not INDICES[value].written:
            raise ConfigError(f"{at}.index: unknown index {value!r}; allowed: {USAGE}")
        roles = INDICES[value].roles
        for k in beside:
            if k not in roles:
                raise ConfigError(
                    f"{at}.{k}: not a parameter of index {value}; "
                    f"allowed: {', '.join(roles) or 'none'}"
                )
        if not roles:
            return cls(value)
        red = positive_int(beside.get("red", roles["red"]), f"{at}.red")
        nir = positive_int(beside.get("nir", roles["nir"]), f"{at}.nir")
        if red == nir:
            raise ConfigError(f"{at}: red and nir must be different bands, both are {red}")
        return cls(value, red=red, nir=nir)

    def values(
        self, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The per-tile kernel on the selected bands as read (any dtype); into ``out`` if it can."""
        return self.formula.tile(self, image, bands, out)

    def reference(
        self, image: np.ndarray, bands: tuple[int, ...], full_scale: float = 1.0
    ) -> np.ndarray:
        """The whole-image meaning on ``image``, the selected bands as float64.

        ``full_scale`` is the maximum of the file's data type (HSV only).
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.formula.reference(self, image, bands, full_scale)

    def check_bands(
        self,
        bands: tuple[int, ...],
        count: int,
        alpha: tuple[int, ...],
        alpha_is_mask: bool,
        source: str,
    ) -> None:
        """Refuse bands the index cannot read: see :func:`tiler.steps.index_bands.check_bands`."""
        check_bands(self, bands, count, alpha, alpha_is_mask, source)

    def to_dict(self) -> dict[str, Any]:
        if self.band is not None:
            return {"band": self.band}
        if self.channel is not None:
            return {"index": {self.name: self.channel}}
        if self.red is not None:
            return {"index": self.name, "red": self.red, "nir": self.nir}
        return {"index": self.name}


class Formula:
    """One index: its name, the bands it reads, its kernel and its whole-image meaning.

    ``bands``: how many of the first selected bands it reads (as R, G, B);
    ``roles``: file bands it takes by role instead, with their defaults;
    ``written``: whether it is written ``index: NAME``.
    """

    name: ClassVar[str]
    bands: ClassVar[int] = 3
    roles: ClassVar[dict[str, int]] = {}
    written: ClassVar[bool] = True

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        raise NotImplementedError


class ExcessGreen(Formula):
    """s = (R+G)+B; r, g, b = R/s, G/s, B/s (each 0 where s = 0); ExG = (2·g − r) − b."""

    name = "exg"

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        return excess_green_bands(image[0], image[1], image[2], out=out)

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        r, g, b = _chromatic(image)
        exg: np.ndarray = (2 * g - r) - b
        return exg


class ExcessGreenRed(Formula):
    """ExGR = ExG − (1.4·r − g), on the chromatic coordinates of ``exg``."""

    name = "exgr"

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        return excess_green_red(image)

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        r, g, b = _chromatic(image)
        exgr: np.ndarray = ((2 * g - r) - b) - (1.4 * r - g)
        return exgr


def _chromatic(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    R, G, B = image[0], image[1], image[2]
    s = (R + G) + B
    r = np.where(s == 0, 0.0, R / s)
    g = np.where(s == 0, 0.0, G / s)
    b = np.where(s == 0, 0.0, B / s)
    return r, g, b


class Ndvi(Formula):
    """(NIR − Red) / (NIR + Red), 0 where the sum is 0; band roles set by ``red:`` and ``nir:``."""

    name = "ndvi"
    bands = 1
    roles = {"red": 1, "nir": 4}

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        values = image.astype(np.float64, copy=False)
        return ndvi(values, bands.index(_role(index.red)), bands.index(_role(index.nir)))

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        red, nir = image[bands.index(_role(index.red))], image[bands.index(_role(index.nir))]
        total = nir + red
        return np.where(total == 0, 0.0, (nir - red) / total)


def _role(band: int | None) -> int:
    assert band is not None, "set by parsing"
    return band


class Gray(Formula):
    """``skimage.color.rgb2gray``'s luminance, element-wise: (0.2125·R + 0.7154·G) + 0.0721·B."""

    name = "gray"

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        return gray(image.astype(np.float64, copy=False))

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        # rgb2gray's coefficients, element-wise: rgb2gray's own matmul is not
        # reproducible across memory layouts (see tiler.kernels.indices.gray).
        R, G, B = image[0], image[1], image[2]
        luma: np.ndarray = (0.2125 * R + 0.7154 * G) + 0.0721 * B
        return luma


class Hsv(Formula):
    """One channel of ``skimage.color.rgb2hsv`` of the first three bands over the full scale."""

    name = "hsv"
    written = False  # written {hsv: h|s|v}

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        assert index.channel is not None, "set by parsing"
        return hsv_channel(image, index.channel)

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        assert index.channel is not None, "set by parsing"
        hsv = rgb2hsv(np.moveaxis(image[:3], 0, -1) / full_scale)
        return np.ascontiguousarray(hsv[..., "hsv".index(index.channel)])


class Band(Formula):
    """``band: k``: the k-th selected band."""

    name = "band"
    bands = 1
    written = False  # written band: k

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        return np.array(image[_role(index.band) - 1], dtype=np.float64)

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        plane: np.ndarray = image[_role(index.band) - 1]
        return plane


class ColourRatio(Formula):
    """``numerator / denominator`` of the first bands as R, G, B in float64, 0 where it is 0.

    A subclass writes its formula once, in :meth:`parts`, left to right.
    """

    def parts(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(numerator, denominator)`` of ``rgb``, the first ``bands`` bands in float64."""
        raise NotImplementedError

    def tile(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], out: np.ndarray | None
    ) -> np.ndarray:
        return ratio(*self.parts(image[: self.bands].astype(np.float64)))

    def reference(
        self, index: Index, image: np.ndarray, bands: tuple[int, ...], full_scale: float
    ) -> np.ndarray:
        numerator, denominator = self.parts(image[: self.bands])
        return np.where(denominator == 0, 0.0, numerator / denominator)


class Vari(ColourRatio):
    """VARI, the visible atmospherically resistant index (Gitelson et al. 2002).

    (G − R) / (G + R − B), 0 where the denominator is 0: in float64, left to
    right, ``(G - R) / ((G + R) - B)``. It can exceed [-1, 1] where the
    denominator is small.
    """

    name = "vari"

    def parts(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R, G, B = rgb
        return G - R, (G + R) - B


class Gli(ColourRatio):
    """GLI, the green leaf index (Louhaichi et al. 2001).

    (2G − R − B) / (2G + R + B), 0 where the denominator is 0: in float64,
    left to right, ``((2*G - R) - B) / ((2*G + R) + B)``; in [-1, 1] for
    non-negative bands.
    """

    name = "gli"

    def parts(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R, G, B = rgb
        return (2 * G - R) - B, (2 * G + R) + B


class Ngrdi(ColourRatio):
    """NGRDI, the normalised green-red difference index (Tucker 1979).

    (G − R) / (G + R), 0 where the sum is 0: in float64 ``(G - R) / (G + R)``,
    from the first two selected bands (red, green).
    """

    name = "ngrdi"
    bands = 2

    def parts(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R, G = rgb
        return G - R, G + R


INDICES: dict[str, Formula] = {
    formula.name: formula
    for formula in (
        *(ExcessGreen(), ExcessGreenRed(), Ndvi(), Gray(), Hsv(), Band()),
        *(Vari(), Gli(), Ngrdi()),
    )
}
USAGE = ", ".join(name for name, f in INDICES.items() if f.written) + ", {hsv: h|s|v}"
