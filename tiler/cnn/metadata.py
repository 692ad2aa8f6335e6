"""An ONNX model's tiler metadata (the model file contract), read and checked.

A model for tiler is an ONNX file whose first input is float32 ``(N, C, H, W)``
and whose first output is float32 ``(N, 1, H, W)`` or ``(N, H, W)`` in [0, 1];
its ``metadata_props`` carry the ``tiler:*`` keys of the contract (bands,
normalisation, pixel size, receptive field, shift period, output kind, decode
settings, name and card). :func:`read_info` parses them into a
:class:`ModelInfo`, refusing a missing or malformed key in one line naming
the file and the key. Only ``onnxruntime`` is needed to read them.

:func:`resolve` turns a pipeline's ``onnx:`` value into a file: a path, or
the name of a model shipped in ``tiler/data/models/NAME.onnx``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from tiler.errors import ConfigError, ModelError

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "models"
FORMAT = 1
OUTPUTS = ("mask", "points")
REQUIRED = (
    "tiler:format",
    "tiler:bands",
    "tiler:normalise",
    "tiler:pixel_size_m",
    "tiler:pixel_size_tolerance",
    "tiler:receptive_field_px",
    "tiler:shift_period_px",
    "tiler:output",
    "tiler:threshold",
)


def halo_px(receptive_field_px: int, shift_period_px: int) -> int:
    """The receptive radius rounded up to a multiple of the shift period: what each block
    of output is grown by, on every side, to be computed exactly (:mod:`tiler.cnn.blocks`)."""
    return -(-(receptive_field_px // 2) // shift_period_px) * shift_period_px


@dataclass(frozen=True)
class ModelInfo:
    """What tiler needs to know about one ONNX model file (its ``tiler:*`` metadata).

    ``halo`` is the receptive radius (``receptive_field_px // 2``) rounded up
    to a multiple of ``shift_period_px``: blocks grown by it see every pixel
    their outputs depend on and start on the shift period (:mod:`tiler.cnn.blocks`).
    """

    path: str
    sha256: str
    bands: tuple[str, ...]
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_size_m: float
    pixel_size_tolerance: float
    receptive_field_px: int
    shift_period_px: int
    output: str
    threshold: float
    min_distance_m: float | None = None
    name: str = ""
    description: str = ""
    card: str = ""
    metadata: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def channels(self) -> int:
        return len(self.bands)

    @property
    def halo(self) -> int:
        return halo_px(self.receptive_field_px, self.shift_period_px)

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``(x * scale - mean) / std`` per channel in float32, as the model was trained."""
        x = image.astype(np.float32) * np.float32(self.scale)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        out: np.ndarray = (x - mean) / std
        return out

    def check_pixel_size(self, pixel_m: float | None, source: str) -> None:
        """Refuse, in one line, an input whose pixel size is out of the model's tolerance."""
        if pixel_m is None:
            raise ConfigError(
                f"{source}: model {self.label}: needs the input's pixel size "
                f"(trained at {self.pixel_size_m:g} m); the input has no map coordinates"
            )
        ratio = max(pixel_m / self.pixel_size_m, self.pixel_size_m / pixel_m)
        if ratio > self.pixel_size_tolerance:
            raise ConfigError(
                f"{source}: pixel size {pixel_m:.4g} m is out of model {self.label}'s range "
                f"({self.pixel_size_m:g} m x/÷ {self.pixel_size_tolerance:g}); resample first, "
                f"e.g. gdalwarp -tr {self.pixel_size_m:g} {self.pixel_size_m:g} -r average"
            )

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem

    def record(self) -> dict[str, Any]:
        """run.json's record of the model: its name, file, checksum and metadata."""
        return {
            "name": self.label,
            "path": self.path,
            "sha256": self.sha256,
            "metadata": dict(self.metadata),
        }


def resolve(name_or_path: str) -> Path:
    """A model file: ``name_or_path`` itself, or the shipped model of that name.

    A value with a path separator or a suffix is a path; a bare name is
    looked up in ``tiler/data/models/NAME.onnx``, and an unknown one is
    refused with the list of shipped models.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if "/" in name_or_path or "\\" in name_or_path or path.suffix:
        raise ConfigError(f"model.onnx: no such file {name_or_path!r}")
    shipped = SHIPPED / f"{name_or_path}.onnx"
    if shipped.is_file():
        return shipped
    names = ", ".join(shipped_models()) or "none"
    raise ConfigError(f"model.onnx: no shipped model {name_or_path!r} (shipped: {names})")


def shipped_models() -> list[str]:
    """The names of the models shipped in ``tiler/data/models``."""
    return sorted(p.stem for p in SHIPPED.glob("*.onnx"))


def read_info(path: str | Path) -> ModelInfo:
    """The :class:`ModelInfo` of the ONNX file at ``path``, checked (cached per file state)."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"model.onnx: cannot read {str(path)!r} ({exc.strerror})") from None
    return _read_info(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _read_info(path: str, mtime_ns: int, size: int) -> ModelInfo:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own types, all meaning "not a model we can run"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable ONNX model ({first})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    info = parse_metadata(meta, path, _sha256(path))
    _check_io(session, info, path)
    return info


def parse_metadata(meta: dict[str, str], path: str, sha256: str = "") -> ModelInfo:
    """A :class:`ModelInfo` from ``metadata_props``; one-line errors name ``path`` and the key."""
    reader = _Reader(meta, path)
    for key in REQUIRED:
        reader.raw(key)
    if reader.number("tiler:format") != FORMAT:
        reader.fail("tiler:format", f"unsupported version (tiler reads {FORMAT})")
    bands = reader.json("tiler:bands")
    if not isinstance(bands, list) or not bands or not all(isinstance(b, str) for b in bands):
        reader.fail("tiler:bands", "expected a JSON list of band names")
    norm = reader.json("tiler:normalise")
    if not isinstance(norm, dict) or not {"scale", "mean", "std"} <= norm.keys():
        reader.fail("tiler:normalise", 'expected {"scale": s, "mean": [..], "std": [..]}')
    mean, std = _floats(norm["mean"]), _floats(norm["std"])
    if mean is None or std is None or len(mean) != len(bands) or len(std) != len(bands):
        reader.fail("tiler:normalise", f"mean and std must be lists of {len(bands)} numbers")
    if any(s <= 0 for s in std) or not _finite(norm["scale"]):
        reader.fail("tiler:normalise", "scale must be a number and std > 0")
    output = reader.raw("tiler:output")
    if output not in OUTPUTS:
        reader.fail("tiler:output", f"expected one of {', '.join(OUTPUTS)}, got {output!r}")
    threshold = reader.number("tiler:threshold")
    if not 0 < threshold <= 1:
        reader.fail("tiler:threshold", "expected a number in (0, 1]")
    min_distance = None
    if output == "points" or "tiler:min_distance_m" in meta:
        min_distance = reader.number("tiler:min_distance_m", positive=True)
    return ModelInfo(
        path=path,
        sha256=sha256,
        bands=tuple(bands),
        scale=float(norm["scale"]),
        mean=mean,
        std=std,
        pixel_size_m=reader.number("tiler:pixel_size_m", positive=True),
        pixel_size_tolerance=reader.number("tiler:pixel_size_tolerance", minimum=1.0),
        receptive_field_px=reader.integer("tiler:receptive_field_px"),
        shift_period_px=reader.integer("tiler:shift_period_px"),
        output=output,
        threshold=threshold,
        min_distance_m=min_distance,
        name=meta.get("tiler:name", ""),
        description=meta.get("tiler:description", ""),
        card=meta.get("tiler:card", ""),
        metadata=meta,
    )


class _Reader:
    """Reads keys of one model's metadata; every refusal names the file and the key."""

    def __init__(self, meta: dict[str, str], path: str):
        self.meta, self.path = meta, path

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ModelError(f"{self.path}: metadata {key}: {problem}")

    def raw(self, key: str) -> str:
        if key not in self.meta:
            self.fail(key, "missing (see the model file contract in the README)")
        return self.meta[key]

    def json(self, key: str) -> Any:
        try:
            return json.loads(self.raw(key))
        except json.JSONDecodeError:
            self.fail(key, f"not JSON: {self.meta[key]!r}")

    def number(self, key: str, *, positive: bool = False, minimum: float | None = None) -> float:
        text = self.raw(key)
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (positive and value <= 0):
            self.fail(key, f"expected a {'positive ' if positive else ''}number, got {text!r}")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected a number >= {minimum:g}, got {text!r}")
        return value

    def integer(self, key: str) -> int:
        value = self.number(key, positive=True)
        if value != int(value):
            self.fail(key, f"expected a positive integer, got {self.meta[key]!r}")
        return int(value)


def _floats(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, list) or not all(_finite(v) for v in value):
        return None
    return tuple(float(v) for v in value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_io(session: Any, info: ModelInfo, path: str) -> None:
    """The first input takes ``(N, C, H, W)`` with C the bands named; the output one channel."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4:
        raise ModelError(f"{path}: input {session.get_inputs()[0].name}: expected (N, C, H, W)")
    if isinstance(shape[1], int) and shape[1] != info.channels:
        raise ModelError(
            f"{path}: metadata tiler:bands: names {info.channels} bands "
            f"but the input takes {shape[1]} channels"
        )
    out = session.get_outputs()[0].shape
    if len(out) not in (3, 4) or (len(out) == 4 and isinstance(out[1], int) and out[1] != 1):
        raise ModelError(f"{path}: output {session.get_outputs()[0].name}: expected (N, 1, H, W)")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
