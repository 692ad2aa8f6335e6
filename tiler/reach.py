"""How far a pipeline's neighbourhood steps reach, checked against the image before a run.

A pass reads each tile grown by the sum of the reaches of the consecutive
local steps it runs (its halo, DESIGN.md section 1). Two rules, checked
before DST is touched (README, "What tiler refuses and why"):

* **Refused**: a chain of local steps (filters, a local threshold, Canny's
  gradients, morphology, smoothing) reaching further than the image's
  larger side. Such a neighbourhood covers the whole image from any pixel,
  so the steps no longer describe anything local (``closing`` of radius
  5000 on 2000 x 2000 px fills the image; a Gaussian of sigma 100 000 makes
  it one flat value), and their cost grows with the neighbourhood's area
  (hours of one silent tile). The message gives the reach in pixels and
  metres.
* **Warned**: halos (the approximate steps' too: ``split``, ``model``) that
  make the tiles compute more than :data:`MAX_OVERHEAD` times the image's
  pixels, with the ``--chunk-size`` that brings it under 2x; above 4
  megapixels only (one default tile: below, a run takes seconds). With tiles of
  ``t`` px and a halo of ``h`` px, an interior tile computes
  ``((t + 2h) / t)²`` its own pixels: 4x once ``h`` is half the tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tiler.config import Pipeline
from tiler.errors import ConfigError
from tiler.georef import pixel_area_m2

MAX_OVERHEAD = 4.0
TARGET_OVERHEAD = 2.0
CHUNK_STEP = 256


@dataclass(frozen=True)
class Chain:
    """Consecutive local steps one pass reads a halo for: ``(key, parameters, px)`` each."""

    steps: tuple[tuple[str, str, int], ...]
    exact: bool = True  # False: an approximate step's halo (cost only, never refused)

    @property
    def reach(self) -> int:
        return sum(px for _, _, px in self.steps)

    def describe(self) -> str:
        names = " + ".join(f"{key} ({params})" for key, params, _ in self.steps)
        return f"{names} reach{'es' if len(self.steps) == 1 else ' together'}"


def _entry(key: str, step, px: int) -> tuple[str, str, int]:
    ((name, params),) = step.to_dict().items()
    text = ", ".join(f"{k} {v}" for k, v in params.items()) if isinstance(params, dict) else ""
    return f"{key}.{name}", text, px


def chains(pipeline: Pipeline) -> list[Chain]:
    """The pipeline's halo chains, in the order the passes run them (empty ones left out)."""
    current: list[tuple[str, str, int]] = []
    for i, step in enumerate(pipeline.filters, start=1):
        if step.reach:
            current.append(_entry(f"preprocess[{i}]", step, step.reach))
    threshold = pipeline.threshold
    if pipeline.model is None and threshold.reach:  # a local threshold, Canny's gradients
        current.append(_entry("threshold", threshold, threshold.reach))
    found: list[Chain] = []
    if pipeline.model is not None and pipeline.model.halo:
        found.append(Chain((("model", f"halo {pipeline.model.halo}", pipeline.model.halo),), False))
    split = pipeline.split
    for i, step in enumerate(pipeline.refine):
        if step is split:
            continue  # the last step: its own halo, below
        if step.kind == "local":
            current.append(_entry(f"refine[{i}]", step, step.reach))
        elif current:  # an object step ends the chain: the next local steps read a new halo
            found.append(Chain(tuple(current)))
            current = []
    if current:
        found.append(Chain(tuple(current)))
    if split is not None:
        key = f"refine[{len(pipeline.refine) - 1}]"
        found.append(Chain((_entry(key, split, split.reach),), False))
    return found


def pixel_size_m(crs_wkt: str, transform, height: int) -> float:
    """The side in metres of a pixel at the image's middle row (square pixels' side)."""
    y = transform[4] * (height / 2) + transform[5]
    return float(math.sqrt(pixel_area_m2(crs_wkt, transform, y)))


def _metres(px: float, pixel_m: float) -> str:
    metres = px * pixel_m
    return f"{metres:,.0f}" if metres >= 100 else f"{metres:.3g}"


def _length(px: float, pixel_m: float | None) -> str:
    """``600 px (30 m)``; pixels only without georeferencing."""
    return f"{px:,.0f} px" + ("" if pixel_m is None else f" ({_metres(px, pixel_m)} m)")


def overhead(shape: tuple[int, int], chunks: tuple[int, int], halo: int) -> float:
    """How many times the image's pixels the tiles compute when grown by ``halo``."""
    factor = 1.0
    for length, chunk in zip(shape, chunks, strict=True):
        total = sum(
            min(start + chunk + halo, length) - max(start - halo, 0)
            for start in range(0, length, chunk)
        )
        factor *= total / length
    return factor


def check(
    pipeline: Pipeline,
    shape: tuple[int, int],
    chunks: tuple[int, int],
    source: str,
    pixel_m: float | None,
    warn_above: int = 0,
) -> list[str]:
    """Refuse a chain reaching past the image; return warnings for costly halos.

    ``pixel_m``: the pixel's side in metres (``None`` without georeferencing:
    pixels only). ``warn_above``: images of at most that many pixels are not
    warned about (a run over them takes seconds whatever the halo).
    """
    found = chains(pipeline)
    side = max(shape)
    for chain in found:
        if chain.exact and chain.reach > side:
            extent = (
                "" if pixel_m is None else f", {' x '.join(_metres(n, pixel_m) for n in shape)} m"
            )
            raise ConfigError(
                f"{source}: {chain.describe()} {_length(chain.reach, pixel_m)}, more than "
                f"the image's larger side ({shape[0]} x {shape[1]} px{extent}): "
                "a neighbourhood that wide "
                "covers the whole image from any pixel, so it measures nothing local, and "
                "its cost grows with its area; use smaller sizes"
            )
    if not found or shape[0] * shape[1] <= warn_above:
        return []
    worst = max(found, key=lambda chain: chain.reach)
    factor = overhead(shape, chunks, worst.reach)
    if factor <= MAX_OVERHEAD:
        return []
    better = min(chunks)
    while overhead(shape, (better, better), worst.reach) > TARGET_OVERHEAD and better < side:
        better = min((better // CHUNK_STEP + 1) * CHUNK_STEP, side)
    return [
        f"{source}: {worst.describe()} {_length(worst.reach, pixel_m)} around tiles of "
        f"{chunks[0]} x {chunks[1]} px, so the tiles compute {factor:.1f}x the image's "
        f"pixels (that pass takes about as many times longer); --chunk-size {better} "
        f"or more brings it under {TARGET_OVERHEAD:.0f}x (memory per tile grows with it)"
    ]
