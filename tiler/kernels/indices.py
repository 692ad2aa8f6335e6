"""Per-pixel indices on the selected bands (float64, in the order DESIGN.md section 3 writes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, and 0 where the denominator is 0."""
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape), dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def excess_green(image: np.ndarray) -> np.ndarray:
    """Excess green on chromatic coordinates, ``ExG = (2*g - r) - b``.

    Parameters
    ----------
    image : (3+, M, N) ndarray of float64
        The selected bands; the first three are red, green and blue.

    Returns
    -------
    (M, N) ndarray of float64

    Examples
    --------
    >>> excess_green(np.array([[[10.0]], [[30.0]], [[10.0]]]))[0, 0]
    0.6
    """
    red, green, blue = image[0], image[1], image[2]
    total = (red + green) + blue
    r, g, b = _ratio(red, total), _ratio(green, total), _ratio(blue, total)
    return (2 * g - r) - b


def ndvi(image: np.ndarray, red: int, nir: int) -> np.ndarray:
    """``(NIR - Red) / (NIR + Red)``, 0 where the sum is 0; ``red``/``nir`` index ``image``."""
    r, n = image[red], image[nir]
    return _ratio(n - r, n + r)


# scikit-image's luminance coefficients (``skimage.color.rgb2gray``).
GRAY_COEFFICIENTS = (0.2125, 0.7154, 0.0721)


def gray(image: np.ndarray) -> np.ndarray:
    """Luminance ``(0.2125*R + 0.7154*G) + 0.0721*B`` of the first three bands (unscaled).

    These are ``skimage.color.rgb2gray``'s coefficients, evaluated element by
    element, left to right. ``rgb2gray`` itself computes ``rgb @ coeffs``,
    whose last bit depends on the array's memory layout (which BLAS or SIMD
    path NumPy takes), so even a window of an image can differ from the same
    pixels of the whole; the element-wise form is the same everywhere.
    """
    c0, c1, c2 = GRAY_COEFFICIENTS
    return (c0 * image[0] + c1 * image[1]) + c2 * image[2]


def compute_index(
    image: np.ndarray,
    name: str,
    bands: Sequence[int],
    *,
    red: int | None = None,
    nir: int | None = None,
    band: int | None = None,
) -> np.ndarray:
    """Dispatch on the index name; ``bands`` are the file band numbers of ``image``'s planes."""
    if name == "exg":
        return excess_green(image)
    if name == "ndvi":
        return ndvi(image, list(bands).index(red), list(bands).index(nir))
    if name == "gray":
        return gray(image)
    if name == "band":
        return np.array(image[band - 1], dtype=np.float64)
    raise ValueError(f"unknown index {name!r}")
