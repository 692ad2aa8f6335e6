"""Otsu's threshold from a histogram that can be summed over tiles.

The tiles' histograms over the global range (:mod:`tiler.kernels.binning`)
add up to the whole-image histogram ``skimage.filters.threshold_otsu`` takes,
and :func:`otsu_from_histogram` returns the same threshold bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_local, threshold_multiotsu, threshold_otsu

from tiler.kernels.binning import NBINS, bin_edges


def threshold_index(threshold: float, vmin: float, vmax: float) -> int:
    """The bin whose centre is the Otsu threshold ``threshold``."""
    _, centers = bin_edges(vmin, vmax)
    (found,) = np.nonzero(centers == threshold)
    if len(found) != 1:
        raise ValueError(f"{threshold!r} is not one of the bin centres of [{vmin!r}, {vmax!r}]")
    return int(found[0])


def equalization(
    counts: np.ndarray, vmin: float, vmax: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Bin centres and cumulative distribution, as ``skimage.exposure.equalize_hist`` uses them.

    ``cumulative_distribution``: the histogram's cumulative sum divided by
    its last element, in float64; ``numpy.interp(x, centers, cdf)`` then maps
    each pixel.
    """
    _, centers = bin_edges(vmin, vmax)
    cdf = np.cumsum(np.asarray(counts))
    cdf = cdf / float(cdf[-1])
    return tuple(centers.tolist()), tuple(cdf.tolist())


def otsu_from_histogram(counts: np.ndarray, vmin: float, vmax: float) -> float:
    """The threshold ``threshold_otsu`` returns for an image with this histogram and range."""
    if vmin == vmax:  # scikit-image returns the single value of a constant image
        return vmin
    _, centers = bin_edges(vmin, vmax)
    return float(threshold_otsu(hist=(np.asarray(counts), centers)))


def foreground(
    values: np.ndarray, valid: np.ndarray, threshold: float | np.ndarray, polarity: str
) -> np.ndarray:
    """``x > t`` (above) or ``~(x > t)`` (below), then ``&= valid``."""
    above = values > threshold
    if polarity == "below":
        np.logical_not(above, out=above)
    above &= valid
    return above


def multiotsu_from_histogram(
    counts: np.ndarray, vmin: float, vmax: float, classes: int
) -> tuple[float, ...]:
    """The thresholds ``threshold_multiotsu(x, classes)`` returns for values with this histogram.

    scikit-image normalises the image's histogram (``counts / counts.sum()``)
    before its float32 search, so the same probabilities are passed here.
    Raises ``ValueError`` as scikit-image does when fewer bins than classes
    are occupied.
    """
    _, centers = bin_edges(vmin, vmax)
    probabilities = np.asarray(counts) / np.sum(counts)
    return tuple(threshold_multiotsu(hist=(probabilities, centers), classes=classes).tolist())


def class_foreground(
    values: np.ndarray,
    valid: np.ndarray,
    thresholds: tuple[float, ...],
    keep: tuple[int, ...],
    polarity: str,
) -> np.ndarray:
    """``numpy.isin(numpy.digitize(values, thresholds), keep)``, polarity, then ``&= valid``."""
    kept = np.isin(np.digitize(values, thresholds), keep)
    if polarity == "below":
        np.logical_not(kept, out=kept)
    kept &= valid
    return kept


def local_foreground(
    values: np.ndarray,
    valid: np.ndarray,
    block_size: int,
    method: str,
    offset: float,
    polarity: str,
) -> np.ndarray:
    """``values > T``, T the local threshold of :class:`tiler.config.LocalThreshold`.

    Computed on a window grown by the threshold's reach (clipped at the image
    border, where "reflect" sees what the whole image has): scikit-image's
    ``threshold_local`` for ``gaussian`` and ``median``, and for ``mean`` the
    window sum of :func:`local_mean`.
    """
    if method == "mean":
        local = local_mean(values, block_size) - offset
    else:
        local = threshold_local(values, block_size, method, offset, mode="reflect")
    return foreground(values, valid, local, polarity)


def local_mean(values: np.ndarray, block_size: int) -> np.ndarray:
    """Mean over a ``block_size`` square: row sums, then column sums, then ``/ block_size**2``.

    ``scipy.ndimage.correlate1d`` with a flat kernel and ``mode="reflect"``
    sums each window on its own, so any window of the image gives the whole
    image's values. (scikit-image's ``threshold_local(method="mean")`` uses
    ``uniform_filter``, whose running sum carries rounding along each whole
    line: its last bits depend on where a pixel lies in the image, which no
    tiling can reproduce. This definition differs from it by a few ulps.)
    """
    ones = np.ones(block_size)
    sums: np.ndarray = ndi.correlate1d(values, ones, axis=1, mode="reflect")
    sums = ndi.correlate1d(sums, ones, axis=0, mode="reflect")
    return sums / float(block_size * block_size)


# ---------------------------------------------------------------------------
# Percentiles: exact order statistics from passes over the tiles
# ---------------------------------------------------------------------------


def percentile_ranks(n: int, q: float) -> tuple[int, int, float]:
    """The ranks (0-based, in sorted order) ``numpy.percentile(x, q)`` interpolates, and its weight.

    NumPy's default (``linear``) method: the virtual index ``(n - 1) * (q / 100)``,
    its floor and the next rank (both clipped to ``n - 1``), and the
    fractional part. :func:`percentile_from_ranks` finishes the job.
    """
    virtual = (n - 1) * (q / 100)
    lower = math.floor(virtual)
    gamma = virtual - lower
    lower = min(lower, n - 1)
    return lower, min(lower + 1, n - 1), gamma


def percentile_from_ranks(a: float, b: float, gamma: float) -> float:
    """NumPy's interpolation between the two order statistics, bit for bit.

    ``numpy.quantile([a, b], gamma)`` takes the same virtual index ``gamma``
    (``1 * gamma``) and so runs NumPy's own interpolation on the same inputs.
    """
    return float(np.quantile(np.array([a, b], dtype=np.float64), gamma))


def interval_histogram(
    values: np.ndarray, valid: np.ndarray, lo: float, hi: float
) -> tuple[int, np.ndarray]:
    """How many valid values lie below ``lo``, and their 256-bin histogram over ``[lo, hi]``.

    Bin ``k`` holds ``edges[k] <= x < edges[k + 1]`` (the last bin also ``hi``),
    found by binary search in the edges: exact for any interval, however
    narrow (NumPy's scaled index can miss by more than one bin when the
    interval spans a few ulps), as :func:`narrow` relies on.
    """
    found = values[valid]
    inside = found[(found >= lo) & (found <= hi)]
    edges, _ = bin_edges(lo, hi)
    bins = np.minimum(np.searchsorted(edges, inside, side="right") - 1, NBINS - 1)
    return int(np.count_nonzero(found < lo)), np.bincount(bins, minlength=NBINS)


def values_within(values: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The valid values in ``[lo, hi]``, sorted."""
    found = values[valid]
    return np.sort(found[(found >= lo) & (found <= hi)])


def binnable(lo: float, hi: float) -> bool:
    """Whether NumPy can split ``[lo, hi]`` into 256 bins (not when it spans a few ulps)."""
    try:
        bin_edges(lo, hi)
    except ValueError:
        return False
    return True


def narrow(
    lo: float, hi: float, below: int, counts: np.ndarray, rank: int
) -> tuple[float, float, int, int]:
    """The bin of ``counts`` (a histogram over ``[lo, hi]``) that holds order statistic ``rank``.

    Returns the bin as a closed interval ``[lo', hi']`` of the values it
    holds (``edges[k] <= x < edges[k + 1]``, the last bin closed), the number
    of values below it and the number in it.
    """
    edges, _ = bin_edges(lo, hi)
    cumulative = below + np.cumsum(counts)
    k = int(np.searchsorted(cumulative, rank, side="right"))
    start = below if k == 0 else int(cumulative[k - 1])
    top = hi if k == NBINS - 1 else float(np.nextafter(edges[k + 1], -np.inf))
    return float(edges[k]), top, start, int(counts[k])


def flood_range(seed_value: float, tolerance: float) -> tuple[float, float]:
    """The values ``skimage.segmentation.flood`` accepts around a seed: ``[low, high]``.

    scikit-image's own arithmetic on Python floats, clipped to float64's range.
    """
    tolerance = abs(tolerance)
    info = np.finfo(np.float64)
    return max(float(info.min), seed_value - tolerance), min(
        float(info.max), seed_value + tolerance
    )
