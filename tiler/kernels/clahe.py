"""CLAHE on one tile, bit-identical to ``skimage.exposure.equalize_adapthist``.

Whole-image meaning: ``equalize_adapthist(x, kernel_size, clip_limit, nbins=256)``
on a 2-D float64 image ``x`` (scikit-image 0.26), which runs these steps:

1. Quantisation, per pixel given two global statistics: ``img_as_uint(x)``
   (``rint(x * 65535)`` clipped to ``[0, 65535]``, so negative values become 0;
   it raises ``ValueError`` unless ``-1 <= x <= 1`` everywhere), then
   ``round(rescale_intensity(u, out_range=(0, 2**14 - 1)))`` with ``u``'s own
   min and max, which are ``img_as_uint`` of the image's min and max
   (``vmin``, ``vmax``), since every step is monotone. Then each level is
   binned: ``level // 65`` (256 bins, of which 0..252 occur).
2. Contextual regions of ``kernel_size`` pixels, aligned to the image origin:
   region ``r`` covers rows ``[r*k, (r+1)*k)``; there are ``ceil(size/k)`` per
   axis and the last one runs past the image into ``np.pad(..., mode="reflect")``
   padding. Each region's histogram is clipped (``clip_histogram``) and
   cumulated into a mapping (``map_histogram``) by scikit-image's own functions.
3. Interpolation: pixel ``i`` lies in block ``b = (i + k//2) // k`` at offset
   ``t = (i + k//2) % k``; it mixes the mappings of regions ``b-1`` and ``b``
   (clamped to the existing regions) per axis with weights ``1 - t/k`` and
   ``t/k``, the four products summed in float32 in scikit-image's order and
   truncated to uint16 (:func:`clahe_unscaled`).
4. A second global step: ``rescale_intensity`` of that uint16 output (as
   float64) with the output's own min and max to ``[0, 1]``
   (:func:`clahe_rescale`); a constant output maps to ``clip(v, 0, 1)``.

So a tiled run needs two global statistics: the input range ``(vmin, vmax)``
(over every pixel: ``equalize_adapthist`` has no mask) and, after a pass of
:func:`clahe_unscaled` and :func:`clahe_tile_range` over all tiles (combined
by min/max), the output range ``(out_min, out_max)``; keeping the uint16
:func:`clahe_unscaled` tiles from that pass avoids computing them twice.
Every pixel depends on the pixels of at most two regions per axis, plus
their reflected padding at the far border; :func:`clahe_window` gives that
window and :func:`clahe_reach` a tight bound on it (tiles whose edges are
multiples of ``k`` need at most ``k`` pixels on each side). Per-region
histograms and mappings and per-pixel arithmetic are the whole image's, so
assembling the cores of any tiling is bit-identical (``tests/test_clahe.py``).
Histograms and the interpolation are our own loops (numba), with the same
integer counts and the same float64-then-float32 operations in the same
order; the clipping and the mappings are scikit-image's functions, and the
per-value rescales are scikit-image's ``rescale_intensity`` on look-up tables.

Fixed or forbidden parameters: ``nbins`` is 256; ``kernel_size`` is required,
because scikit-image's default (1/8 of each image dimension) would make the
step's meaning depend on the image's size. ``x`` must not contain NaN.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from skimage.exposure import rescale_intensity
from skimage.exposure._adapthist import NR_OF_GRAY, clip_histogram, map_histogram
from skimage.util import img_as_uint

from tiler.kernels.jit import kernel
from tiler.tiling import Window

NBINS = 256
BIN_SIZE = 1 + NR_OF_GRAY // NBINS

KernelSize = int | tuple[int, int]


class _AxisPlan(NamedTuple):
    """What one axis of a core needs, in window-local coordinates."""

    region_pixels: np.ndarray  # pixels of the needed regions, region after region
    core: slice  # the core within the window
    lower: np.ndarray  # per core pixel: the lower region, numbered from the first needed
    upper: np.ndarray  # per core pixel: the upper region
    weight: np.ndarray  # per core pixel: t / k, the upper region's weight
    inverse: np.ndarray  # per core pixel: 1 - t / k, the lower region's weight


def kernel_shape(kernel_size: KernelSize) -> tuple[int, int]:
    """``(kr, kc)`` from an int or a pair of ints, each at least 1."""
    if kernel_size is None:
        raise ValueError("clahe: kernel_size is required (no default from the image size)")
    shape = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    if len(shape) != 2 or any(int(k) != k or k < 1 for k in shape):
        raise ValueError(f"clahe: kernel_size must be an int or two ints >= 1, got {kernel_size}")
    return int(shape[0]), int(shape[1])


def clahe_reach(kernel_size: KernelSize) -> int:
    """Pixels beyond a tile that :func:`clahe_window` may need, in any direction.

    The lower region of a tile's first pixel starts at most ``k + ceil(k/2) - 1``
    pixels before it; the upper region of its last pixel ends at most
    ``k + k//2 - 1`` pixels after it (reflections at the far border stay
    within the image and these bounds). A halo of this size, clipped to the
    image, always contains the exact window.
    """
    return max(k + (k + 1) // 2 - 1 for k in kernel_shape(kernel_size))


def _padded_index(size: int, k: int) -> np.ndarray:
    """Image index of every position of scikit-image's padded axis (``np.pad`` "reflect")."""
    pad_end = (k - size % k) % k + math.ceil(k / 2)
    return np.pad(np.arange(size), (k // 2, pad_end), mode="reflect")


def _block_regions(positions: np.ndarray, size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper region of each image position along one axis."""
    block = (positions + k // 2) // k
    last = math.ceil(size / k) - 1
    return np.clip(block - 1, 0, last), np.clip(block, 0, last)


def _needed_regions(core: tuple[int, int], size: int, k: int) -> tuple[int, int]:
    """First and last region (inclusive) that the core's pixels interpolate between."""
    lower, upper = _block_regions(np.array([core[0], core[1] - 1]), size, k)
    return int(lower[0]), int(upper[1])


def _region_pixels(core: tuple[int, int], size: int, k: int) -> np.ndarray:
    """Image indices of the pixels of the needed regions, reflected at the far border."""
    first, last = _needed_regions(core, size, k)
    start = k // 2 + first * k
    return _padded_index(size, k)[start : start + (last - first + 1) * k]


def _axis_window(core: tuple[int, int], size: int, k: int) -> tuple[int, int]:
    pixels = _region_pixels(core, size, k)
    return min(core[0], int(pixels.min())), max(core[1], int(pixels.max()) + 1)


def clahe_window(core: Window, image_shape: tuple[int, int], kernel_size: KernelSize) -> Window:
    """The input window (image coordinates, within the image) that ``core``'s CLAHE needs.

    It spans the core and the contextual regions its pixels interpolate
    between (aligned to the whole image's region grid), including the image
    pixels that the far border's reflected padding repeats.
    """
    shape = kernel_shape(kernel_size)
    axes = zip((core.rows, core.cols), image_shape, shape, strict=True)
    return Window.of(*(_axis_window(c, s, k) for c, s, k in axes))


def _axis_plan(core: tuple[int, int], window: tuple[int, int], size: int, k: int) -> _AxisPlan:
    """Regions, weights and window-local indices of one axis; refuses a too-small window."""
    if not (0 <= window[0] <= core[0] < core[1] <= window[1] <= size):
        raise ValueError(f"clahe: core {core} is not inside window {window} of an axis of {size}")
    pixels = _region_pixels(core, size, k)
    if pixels.min() < window[0] or pixels.max() >= window[1]:
        raise ValueError(f"clahe: window {window} misses pixels that core {core} needs")
    first, _ = _needed_regions(core, size, k)
    positions = np.arange(core[0], core[1])
    lower, upper = _block_regions(positions, size, k)
    coefficients = np.arange(k) / k
    offset = (positions + k // 2) % k
    return _AxisPlan(
        region_pixels=pixels - window[0],
        core=slice(core[0] - window[0], core[1] - window[0]),
        lower=lower - first,
        upper=upper - first,
        weight=coefficients[offset],
        inverse=(1 - coefficients)[offset],
    )


def check_clahe_range(vmin: float, vmax: float) -> None:
    """Raise scikit-image's error unless the image lies in ``[-1, 1]`` (``img_as_uint``)."""
    if vmin < -1.0 or vmax > 1.0:
        raise ValueError(
            f"clahe: the image must lie in [-1, 1] (scikit-image's img_as_uint), "
            f"got [{vmin!r}, {vmax!r}]"
        )


def _bins(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Each pixel's histogram bin (0..252), as ``equalize_adapthist`` quantises the whole image.

    The steps after ``img_as_uint`` are per value with global constants, so
    they are applied once to each of the 65536 uint16 values (a look-up table).
    """
    check_clahe_range(vmin, vmax)
    lo, hi = img_as_uint(np.array([vmin, vmax], dtype=np.float64))
    every = np.arange(65536, dtype=np.uint16)
    levels = rescale_intensity(every, in_range=(lo, hi), out_range=(0, NR_OF_GRAY - 1))
    table = np.round(levels).astype(np.uint16) // BIN_SIZE
    return table[img_as_uint(values)]


def _clip_count(clip_limit: float, n_pixels: int) -> int:
    if clip_limit > 0.0:
        return int(np.clip(clip_limit * n_pixels, 1, None))
    return n_pixels


@kernel
def _histograms(bins, rows, cols, kr, kc):  # pragma: no cover - compiled
    """Bin counts (int64) of each region whose pixels are ``bins[rows[...], cols[...]]``."""
    hist = np.zeros((len(rows) // kr, len(cols) // kc, NBINS), dtype=np.int64)
    for i in range(len(rows)):
        line = bins[rows[i]]
        region_r = i // kr
        for j in range(len(cols)):
            hist[region_r, j // kc, line[cols[j]]] += 1
    return hist


def _region_maps(
    bins: np.ndarray, rows: _AxisPlan, cols: _AxisPlan, shape: tuple[int, int], clip_limit: float
) -> np.ndarray:
    """``(regions_r, regions_c, 256)`` mappings of the needed regions, as scikit-image's."""
    kr, kc = shape
    hist = _histograms(bins, rows.region_pixels, cols.region_pixels, kr, kc)
    n_r, n_c, _ = hist.shape
    hist = hist.reshape(n_r * n_c, NBINS)
    clim = _clip_count(clip_limit, kr * kc)
    for region in hist:
        clip_histogram(region, clim)
    return map_histogram(hist, 0, NR_OF_GRAY - 1, kr * kc).reshape(n_r, n_c, NBINS)


@kernel
def _mix(maps, bins, row_regions, row_factors, col_regions, col_factors):  # pragma: no cover
    """Per pixel, scikit-image's sum over the edges (0,0), (0,1), (1,0), (1,1).

    Each term is ``mapping * (col_factor * row_factor)`` in float64, rounded to
    float32 and added to a float32 sum starting at 0; the sum is truncated to uint16.
    """
    n, m = bins.shape
    out = np.empty((n, m), dtype=np.uint16)
    for i in range(n):
        for j in range(m):
            level = bins[i, j]
            total = np.float32(0.0)
            for er in range(2):
                region_r = row_regions[er, i]
                factor_r = row_factors[er, i]
                for ec in range(2):
                    mapped = np.float64(maps[region_r, col_regions[ec, j], level])
                    total += np.float32(mapped * (col_factors[ec, j] * factor_r))
            out[i, j] = np.uint16(total)
    return out


def _interpolate(
    maps: np.ndarray, bins: np.ndarray, rows: _AxisPlan, cols: _AxisPlan
) -> np.ndarray:
    """The four neighbouring mappings mixed bilinearly, in scikit-image's order and dtypes."""
    return _mix(
        maps,
        np.ascontiguousarray(bins),
        np.stack([rows.lower, rows.upper]),
        np.stack([rows.inverse, rows.weight]),
        np.stack([cols.lower, cols.upper]),
        np.stack([cols.inverse, cols.weight]),
    )


def clahe_unscaled(
    values_window: np.ndarray,
    window: Window,
    core: Window,
    image_shape: tuple[int, int],
    *,
    kernel_size: KernelSize,
    clip_limit: float,
    vmin: float,
    vmax: float,
) -> np.ndarray:
    """CLAHE of the ``core`` pixels before the final rescale: uint16 levels in ``[0, 2**14)``.

    Parameters
    ----------
    values_window : ndarray
        The float64 image over ``window``, which must contain
        ``clahe_window(core, image_shape, kernel_size)`` (a halo of
        :func:`clahe_reach` clipped to the image does).
    window, core : tiler.tiling.Window
        Image coordinates; ``core`` lies inside ``window``.
    image_shape : (int, int)
        Shape of the whole image.
    kernel_size : int or (int, int)
        Contextual region shape.
    clip_limit : float
        As scikit-image's (0 or >= 1: no clipping).
    vmin, vmax : float
        Minimum and maximum of the whole image.

    Returns
    -------
    ndarray
        The core's values of scikit-image's internal ``_clahe`` output.
    """
    shape = kernel_shape(kernel_size)
    axes = zip((core.rows, core.cols), (window.rows, window.cols), image_shape, shape, strict=True)
    rows, cols = (_axis_plan(c, w, s, k) for c, w, s, k in axes)
    bins = _bins(np.asarray(values_window, dtype=np.float64), vmin, vmax)
    maps = _region_maps(bins, rows, cols, shape, clip_limit)
    return _interpolate(maps, bins[rows.core, cols.core], rows, cols)


def clahe_tile_range(unscaled: np.ndarray) -> tuple[int, int]:
    """``(min, max)`` of a core's :func:`clahe_unscaled`; over all tiles, the output range."""
    return int(unscaled.min()), int(unscaled.max())


def clahe_rescale(unscaled: np.ndarray, out_min: int, out_max: int) -> np.ndarray:
    """``equalize_adapthist``'s final ``rescale_intensity`` given the whole output's range.

    Applied to each of the ``2**14`` possible levels once, then looked up.
    """
    every = np.arange(NR_OF_GRAY, dtype=np.float64)
    table = rescale_intensity(every, in_range=(out_min, out_max), out_range=(0.0, 1.0))
    return table[unscaled]


def clahe_tile(
    values_window: np.ndarray,
    window: Window,
    core: Window,
    image_shape: tuple[int, int],
    *,
    kernel_size: KernelSize,
    clip_limit: float,
    vmin: float,
    vmax: float,
    out_min: int,
    out_max: int,
) -> np.ndarray:
    """``equalize_adapthist(x, kernel_size, clip_limit, nbins=256)`` on the ``core`` pixels.

    Parameters are those of :func:`clahe_unscaled`, plus ``out_min`` and
    ``out_max``: the range of :func:`clahe_unscaled` over the whole image
    (:func:`clahe_tile_range` of every tile, combined by min/max).

    Returns
    -------
    ndarray
        float64 values in ``[0, 1]``, bit-identical to the whole image's.
    """
    unscaled = clahe_unscaled(
        values_window,
        window,
        core,
        image_shape,
        kernel_size=kernel_size,
        clip_limit=clip_limit,
        vmin=vmin,
        vmax=vmax,
    )
    return clahe_rescale(unscaled, out_min, out_max)
