"""Local filters on one tile; each reaches a known number of pixels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

GAUSSIAN_TRUNCATE = 4.0


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=4.0)``.

    Reaches ``int(4.0 * sigma + 0.5)`` pixels. SciPy filters the rows, then the
    columns, with the same arithmetic for every output pixel, so a tile read
    with that halo gives bit-identical values in its core.
    """
    return ndi.gaussian_filter(image, sigma, mode="nearest", truncate=GAUSSIAN_TRUNCATE)
