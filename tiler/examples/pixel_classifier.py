"""An example learned segmenter for ``model:``: tree canopy, pixel by pixel, in 4-band NAIP.

A logistic-regression pixel classifier (scikit-learn) trained by
:mod:`tiler.examples.train` on four of the NAIP tiles in ``tests/data``;
its standardisation and coefficients ship as JSON in ``tiler/data/models``,
so running it needs only NumPy (no pickles, no downloads)::

    bands: [1, 2, 3, 4]
    model: {callable: "tiler.examples.pixel_classifier:trees", halo: 0}

It looks at one pixel at a time, so ``halo: 0`` is exact at any tiling.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np

FEATURES = ("red", "green", "blue", "nir", "exg", "ndvi", "brightness")


def features(tile: np.ndarray) -> list[np.ndarray]:
    """Per-pixel features of a ``(4, rows, cols)`` R, G, B, NIR tile, in ``FEATURES`` order.

    Bands are scaled by their data type's maximum; ExG and NDVI are 0 where
    their denominators are.
    """
    full_scale = np.iinfo(tile.dtype).max if np.issubdtype(tile.dtype, np.integer) else 1.0
    red, green, blue, nir = (band.astype(np.float64) / full_scale for band in tile[:4])
    total = (red + green) + blue
    with np.errstate(divide="ignore", invalid="ignore"):
        exg = np.where(total > 0, (2 * green - red - blue) / total, 0.0)
        ndvi = np.where(nir + red > 0, (nir - red) / (nir + red), 0.0)
    brightness = (red + green + blue + nir) / 4
    return [red, green, blue, nir, exg, ndvi, brightness]


@lru_cache(maxsize=4)
def load(name: str = "naip-trees") -> dict:
    """The trained model ``name`` (``tiler/data/models/<name>.json``)."""
    path = resources.files("tiler") / "data" / "models" / f"{name}.json"
    return json.loads(path.read_text())


def probability(tile: np.ndarray, name: str = "naip-trees") -> np.ndarray:
    """The classifier's probability of "tree" for every pixel.

    The linear score is summed feature by feature, element-wise, so a window
    gives the whole image's values bit for bit (a matrix product would not).
    """
    model = load(name)
    score = np.full(tile.shape[1:], model["intercept"], dtype=np.float64)
    for value, mean, scale, coef in zip(
        features(tile), model["mean"], model["scale"], model["coef"], strict=True
    ):
        score += coef * ((value - mean) / scale)
    return 1.0 / (1.0 + np.exp(-score))


def trees(tile: np.ndarray) -> np.ndarray:
    """Tree-canopy mask: probability above one half."""
    return probability(tile) > 0.5
