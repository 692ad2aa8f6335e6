"""Canny edges in tiles: the local masks and the per-component "has a strong pixel" flag.

The step's whole-image meaning is ``skimage.feature.canny(x, sigma, low, high,
mask=valid)`` (scikit-image 0.24-0.26, ``mode="constant"``, ``cval=0``) on
the float64 image ``x``. scikit-image computes it in two parts:

1. Local, up to and including non-maximum suppression: the masked image and
   the mask are both smoothed (``gaussian``, constant mode, truncated at 4
   sigma) and divided (normalised convolution); the mask is eroded with a 3x3
   square and ``border_value=0``; Sobel gradients (reflect mode) give the
   magnitude; a pixel of the eroded mask survives when its magnitude is at
   least the low threshold and no smaller than the magnitude interpolated
   from its two neighbours along the gradient. :func:`canny_masks` returns
   those pixels (``low_mask``) and the ones whose magnitude is at least the
   high threshold (``high_mask``), from a window that holds
   :func:`canny_reach` pixels around the pixels of interest.
2. Object level, hysteresis: the 8-connected components of ``low_mask``
   (``scipy.ndimage.label`` with a 3x3 square, :data:`hysteresis_connectivity`)
   that hold a ``high_mask`` pixel. Tiles report :func:`component_has_strong`
   per local label; across seams these flags merge with logical OR.

The thresholds are absolute values of the gradient magnitude (the image is
float64, whose ``dtype_limits`` maximum is 1, so scikit-image does not rescale
them). Exactly as scikit-image's Cython suppression receives it, ``low`` is
rounded to float32 (a C ``float`` argument) and 0 stands for 1e-14:
``low_mask`` holds magnitudes ``>= float32(low)``. ``high`` is compared in
float64. ``use_quantiles=True`` is not supported: its thresholds are
percentiles of the magnitude over the whole image, a global statistic.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from scipy import ndimage as ndi
from skimage.feature._canny import _preprocess
from skimage.feature._canny_cy import _nonmaximum_suppression_bilinear

from tiler.kernels.filters import gaussian_reach

hysteresis_connectivity: Final[int] = 2
"""Connectivity of the hysteresis: scikit-image labels ``low_mask`` with ``ones((3, 3))``."""


def canny_reach(sigma: float) -> int:
    """Pixels around a pixel that its ``low_mask`` and ``high_mask`` values depend on.

    ``int(4 * sigma + 0.5) + 2``: the Gaussian radius (SciPy's truncation at 4
    sigma; the smoothed mask reaches as far), then one for the Sobel gradients
    and one for the neighbours compared in non-maximum suppression. The mask
    erosion (one pixel) lies within that. The reach is tight
    (``tests/test_edges.py``).

    Parameters
    ----------
    sigma : float
        Standard deviation of the Gaussian smoothing, >= 0.

    Returns
    -------
    int
    """
    if sigma < 0:
        raise ValueError(f"canny sigma must be >= 0, got {sigma}")
    return gaussian_reach(sigma) + 2


def _gradients(smoothed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sobel gradients along axes 0 and 1 and their magnitude, as scikit-image computes them."""
    jsobel = ndi.sobel(smoothed, axis=1)
    isobel = ndi.sobel(smoothed, axis=0)
    magnitude = isobel * isobel
    magnitude += jsobel * jsobel
    np.sqrt(magnitude, out=magnitude)
    return isobel, jsobel, magnitude


def canny_masks(
    values_window: np.ndarray, valid_window: np.ndarray, *, sigma: float, low: float, high: float
) -> tuple[np.ndarray, np.ndarray]:
    """Canny's thinned low- and high-threshold masks of a window.

    For every pixel at least :func:`canny_reach` pixels inside the window, or
    whose window reaches the image border on the sides where it is nearer,
    the result equals scikit-image's internal masks of the whole image bit
    for bit: this calls scikit-image's own smoothing and suppression helpers
    with the arguments ``canny`` gives them.

    Parameters
    ----------
    values_window : (M, N) ndarray
        Image values (converted to float64; values outside ``valid_window``
        are ignored, NaN included).
    valid_window : (M, N) ndarray of bool
        Valid pixels.
    sigma : float
        Standard deviation of the Gaussian smoothing.
    low, high : float
        Absolute thresholds on the gradient magnitude, ``low <= high``
        (``low`` is applied in float32, see the module notes).

    Returns
    -------
    low_mask : (M, N) ndarray of bool
        Local maxima of the magnitude at or above ``low``, inside the eroded mask.
    high_mask : (M, N) ndarray of bool
        The pixels of ``low_mask`` at or above ``high``.
    """
    if high < low:
        raise ValueError(f"canny low threshold {low} is above the high threshold {high}")
    image = np.ascontiguousarray(values_window, dtype=np.float64)
    smoothed, eroded_mask = _preprocess(image, valid_window, sigma, "constant", 0.0)
    isobel, jsobel, magnitude = _gradients(smoothed)
    thinned = _nonmaximum_suppression_bilinear(isobel, jsobel, magnitude, eroded_mask, float(low))
    low_mask = thinned > 0
    return low_mask, low_mask & (thinned >= high)


def component_has_strong(labels: np.ndarray, n: int, high_mask: np.ndarray) -> np.ndarray:
    """Whether each label holds a ``high_mask`` pixel.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Labels 1..n of ``low_mask`` under :data:`hysteresis_connectivity`; 0 is background.
    n : int
        Number of labels.
    high_mask : (M, N) ndarray of bool
        Strong pixels (a subset of the labelled pixels).

    Returns
    -------
    (n,) ndarray of bool
        Entry ``k - 1`` is True when label ``k`` holds a strong pixel; across
        tiles, the flags of the parts of one component merge with logical OR.
    """
    strong = np.zeros(n + 1, dtype=bool)
    strong[labels[high_mask]] = True
    return strong[1:]
