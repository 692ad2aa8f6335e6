"""``model: {onnx: PATH|NAME}``: a convolutional network run with ONNX Runtime, exactly.

Written ``model: {onnx: trees-d3w16, threshold: 0.4, min_distance: 2.4 m,
device: auto, batch: 4, block: 512, threads: 1}``; everything but ``onnx``
defaults to the model's metadata (:mod:`tiler.cnn.metadata`) or the rules
of :mod:`tiler.cnn.session` and :mod:`tiler.cnn.blocks`.

Class: exact ("local, learned" in DESIGN.md section 1). The network runs on
fixed blocks anchored at the image's origin, each from the same-shaped
window grown by the model's halo, so its confidence is the same bits
whatever the tiling (:mod:`tiler.cnn.blocks`). Whole-image meaning
(``output: mask``): ``confidence(image) >= threshold & valid``, with
``confidence`` the blocks' outputs on the reflect-padded image
(:func:`tiler.reference.onnx_confidence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tiler.cnn.metadata import ModelInfo, read_info, resolve
from tiler.cnn.session import default_threads, provider
from tiler.errors import ConfigError
from tiler.steps.base import Step, params
from tiler.units import Ground, PixelSize, length, number, positive_int

PARAMS = (
    "onnx",
    "threshold",
    "min_distance",
    "grow",
    "mask_threshold",
    "device",
    "batch",
    "block",
    "threads",
)
DEFAULT_BLOCK = 512
DEFAULT_BATCH = 4


@dataclass(frozen=True)
class OnnxModel(Step):
    """An ONNX model (see the module's docstring); ``info`` is its checked metadata.

    ``min_distance`` is in pixels once the pipeline is resolved (points output
    only, else ``None``); ``provider`` is the execution provider ``device``
    resolved to; ``block`` the side of the blocks, a multiple of the model's
    shift period.
    """

    onnx: str
    info: ModelInfo
    threshold: float
    min_distance: float | None
    device: str = "auto"
    provider: str = "CPUExecutionProvider"
    threads: int = 1
    block: int = DEFAULT_BLOCK
    batch: int = DEFAULT_BATCH
    grow: float = 0.0
    mask_threshold: float | None = None
    names = ("model",)
    kind = "exact"
    halo = 0  # the blocks carry their own halo; the mask needs none

    @property
    def output(self) -> str:
        return self.info.output

    @property
    def path(self) -> str:
        return self.info.path

    @classmethod
    def from_params(cls, name: str, value: Any, key: str) -> OnnxModel:
        found = params(value, key, PARAMS)
        spec = found["onnx"]
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"{key}.onnx: expected a model file or a shipped model's name")
        info = read_info(resolve(spec))
        threshold = number(found.get("threshold", info.threshold), f"{key}.threshold")
        if not 0 < threshold <= 1:
            raise ConfigError(f"{key}.threshold: expected a number in (0, 1], got {threshold!r}")
        ground: tuple[Ground, ...] = ()
        min_distance = None
        written = found.get("min_distance")
        if written is None and info.min_distance_m is not None:
            written = f"{info.min_distance_m!r} m"
        if written is not None:
            min_distance, ground = length(written, f"{key}.min_distance", rule="float")
        points = _grow_params(found, key, info.output)
        ground += points.pop("ground")
        device = found.get("device", "auto")
        block = positive_int(found.get("block", DEFAULT_BLOCK), f"{key}.block")
        if block % info.shift_period_px:
            raise ConfigError(
                f"{key}.block: {block} is not a multiple of the model's shift period "
                f"({info.shift_period_px} px)"
            )
        return cls(
            spec,
            info,
            threshold,
            min_distance,
            device=device,
            provider=provider(device),
            threads=positive_int(found.get("threads", default_threads()), f"{key}.threads"),
            block=block,
            batch=positive_int(found.get("batch", DEFAULT_BATCH), f"{key}.batch"),
            ground=ground,
            **points,
        )

    def on_device(self, device: str) -> OnnxModel:
        """This model run on ``device`` (``tiler run --device``)."""
        return replace(self, device=device, provider=provider(device))

    def bands_for(self, bands: tuple[int, ...], explicit: bool, source: str) -> tuple[int, ...]:
        """The model's bands: ``bands:`` if given (one per model band), else the first C."""
        wanted = self.info.channels
        if explicit and len(bands) != wanted:
            raise ConfigError(
                f"{source}: bands: {len(bands)} band(s) given but model {self.info.label} "
                f"takes {wanted} ({', '.join(self.info.bands)})"
            )
        if len(bands) < wanted:
            raise ConfigError(
                f"{source}: model {self.info.label} takes {wanted} bands "
                f"({', '.join(self.info.bands)}); the file has {len(bands)} non-alpha band(s) "
                "(a band tagged alpha is used only when `bands:` lists it)"
            )
        return bands[:wanted]

    def check_input(self, size: PixelSize | None, source: str) -> None:
        """Refuse an input whose pixel size is out of the model's tolerance (no resampling)."""
        self.info.check_pixel_size(None if size is None else size.side_m, source)

    @property
    def points(self) -> dict[str, Any]:
        """``tiler.points.PointSettings`` arguments, in pixels (after :meth:`in_pixels`).

        The peak radius is ``min_distance`` rounded to whole pixels (the model
        file contract); without one, 0 (every pixel a candidate).
        """
        return {
            "threshold": self.threshold,
            "radius": math.floor((self.min_distance or 0) + 0.5),
            "grow": self.grow,
            "mask_threshold": self.mask_threshold,
        }

    def record(self) -> dict[str, Any]:
        """run.json's ``threshold`` record: the model, its file, provider, threads and blocks."""
        return {
            "method": "onnx",
            "value": self.threshold,
            "model": {
                **self.info.record(),
                "device": self.device,
                "provider": self.provider,
                "threads": self.threads,
                "block": self.block,
                "halo": self.info.halo,
                "batch": self.batch,
            },
        }

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"onnx": self.onnx, "threshold": self.threshold}
        if self.min_distance is not None:
            out["min_distance"] = self.min_distance
        if self.grow:
            out["grow"] = self.grow
        if self.mask_threshold is not None:
            out["mask_threshold"] = self.mask_threshold
        out.update(device=self.device, batch=self.batch, block=self.block, threads=self.threads)
        return out


def _grow_params(found: dict[str, Any], key: str, output: str) -> dict[str, Any]:
    """``grow`` (a length) and ``mask_threshold`` (in (0, 1]): points output only.

    ``mask_threshold`` must be above 0: the stored confidence is 0 at invalid
    pixels, which must never join an object.
    """
    out: dict[str, Any] = {"ground": ()}
    given = [k for k in ("grow", "mask_threshold") if k in found]
    if given and output != "points":
        raise ConfigError(
            f"{key}.{given[0]}: only for a points model (this one's output: {output})"
        )
    if "grow" in found:
        out["grow"], out["ground"] = length(found["grow"], f"{key}.grow", rule="float")
    if "mask_threshold" in found:
        value = number(found["mask_threshold"], f"{key}.mask_threshold")
        if not 0 < value <= 1:
            raise ConfigError(f"{key}.mask_threshold: expected a number in (0, 1], got {value!r}")
        out["mask_threshold"] = value
    return out
