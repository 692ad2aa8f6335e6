"""Otsu's threshold from a histogram that can be summed over tiles.

``skimage.filters.threshold_otsu(x)`` on a float image bins ``x`` into 256
equal bins spanning ``[x.min(), x.max()]`` (``numpy.histogram`` with its
default range). Each pixel's bin depends only on its value and that range, so
per-tile histograms over the global range add up to the whole-image histogram
exactly, and :func:`otsu_from_histogram` returns the same threshold bit for bit.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu

NBINS = 256


def histogram(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Counts of ``values`` in the 256 bins that span ``[vmin, vmax]`` (int64)."""
    lo, hi = (vmin - 0.5, vmax + 0.5) if vmin == vmax else (vmin, vmax)
    counts, _ = np.histogram(values, bins=NBINS, range=(lo, hi))
    return counts.astype(np.int64, copy=False)


def otsu_from_histogram(counts: np.ndarray, vmin: float, vmax: float) -> float:
    """The threshold ``threshold_otsu`` returns for an image with this histogram and range."""
    if vmin == vmax:  # scikit-image returns the single value of a constant image
        return vmin
    edges = np.histogram_bin_edges(np.empty(0, dtype=np.float64), bins=NBINS, range=(vmin, vmax))
    centers = (edges[:-1] + edges[1:]) / 2.0
    return threshold_otsu(hist=(np.asarray(counts), centers))


def foreground(
    values: np.ndarray, valid: np.ndarray, threshold: float, polarity: str
) -> np.ndarray:
    """``x > t`` (above) or ``~(x > t)`` (below), then ``&= valid``."""
    above = values > threshold
    if polarity == "below":
        np.logical_not(above, out=above)
    above &= valid
    return above
