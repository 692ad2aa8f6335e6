"""The per-tile statistics of the global passes: value range, NumPy's 256 bins, bin codes.

``skimage.filters.threshold_otsu(x)`` on a float image bins ``x`` into 256
equal bins spanning ``[x.min(), x.max()]`` (``numpy.histogram`` with its
default range). Each pixel's bin depends only on its value and that range, so
per-tile histograms over the global range add up to the whole-image histogram
exactly (:mod:`tiler.kernels.threshold` turns them into thresholds).

The kernels here run once per tile and pass over every pixel, so they are
written for LLVM to vectorise: branch-free loops over contiguous rows, edges
computed rather than looked up, NumPy's division replaced where it provably
gives the same bin (:func:`_bin_codes`). Measured on a 2062 x 2062 float64
tile of the synthetic field, old and new interleaved in one run, best of 20
(2 shared cores: the vectorised loops vary 2x with the neighbours' load):
:func:`masked_range` 6.7 -> 3.2 ms, :func:`histogram_codes` 25-29 -> 13-22 ms,
:func:`masked_histogram` 16-20 -> 13-19 ms (``benchmarks/kernels.py``).
"""

from __future__ import annotations

import numpy as np

from tiler.kernels.jit import kernel

NBINS = 256
SUBHISTOGRAMS = 8  # counts of neighbouring pixels (often one bin) go to separate arrays
# How near an integer a scaled index by multiplication may lie before its row is done with
# NumPy's division: the two differ by less than 256 * 3.0001 * 2**-53 < 1e-13 (_bin_codes).
NEAR = 2.0**-40


def outer_edges(vmin: float, vmax: float) -> tuple[float, float]:
    """The first and last bin edges of values in ``[vmin, vmax]``."""
    # numpy.histogram widens an empty range by 0.5 on each side.
    return (vmin - 0.5, vmax + 0.5) if vmin == vmax else (vmin, vmax)


def histogram(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Counts of ``values`` in the 256 bins spanning ``[vmin, vmax]`` (int64), as NumPy bins."""
    counts, _ = np.histogram(values, bins=NBINS, range=outer_edges(vmin, vmax))
    return counts.astype(np.int64, copy=False)


def bin_edges(vmin: float, vmax: float) -> tuple[np.ndarray, np.ndarray]:
    """The 257 edges and 256 centres ``threshold_otsu`` uses for values in ``[vmin, vmax]``."""
    edges = np.histogram_bin_edges(
        np.empty(0, dtype=np.float64), bins=NBINS, range=outer_edges(vmin, vmax)
    )
    return edges, (edges[:-1] + edges[1:]) / 2.0


def codes_possible(vmin: float, vmax: float) -> bool:
    """Whether every bin's centre lies strictly inside it (not so for ranges of a few ulps)."""
    edges, centers = bin_edges(vmin, vmax)
    return vmin < vmax and bool(np.all((edges[:-1] < centers) & (centers < edges[1:])))


def edge_step(edges: np.ndarray) -> float | None:
    """The step of ``numpy.linspace`` that made ``edges``, or None where it did not.

    NumPy's uniform edges are ``k * step + lo`` (``step = (hi - lo) / 256``),
    the last one ``hi`` itself. Where that arithmetic gives NumPy's edges bit
    for bit (checked here, so a NumPy computing them otherwise only costs
    speed), the kernels compute each pixel's edges instead of looking them
    up: lookups keep LLVM from vectorising the loop.
    """
    lo, hi = float(edges[0]), float(edges[-1])
    step = (hi - lo) / NBINS
    arithmetic = np.append(np.arange(NBINS, dtype=np.float64) * step + lo, hi)
    exact = np.isfinite(step) and step > 0 and arithmetic.tobytes() == edges.tobytes()
    return step if exact else None


@kernel
def _bin_codes(  # pragma: no cover - compiled
    values: np.ndarray,
    valid: np.ndarray,
    region: tuple[int, int, int, int],
    core: tuple[int, int, int, int],
    lo: float,
    hi: float,
    step: float,
    scale: float,
    edges: np.ndarray,
    centers: np.ndarray,
    counts: np.ndarray,
    codes: np.ndarray,
    coded: bool,
) -> bool:
    """Bin codes of ``region``, counts of ``core`` (in ``counts``); False if a valid value is out.

    Without ``coded``, ``codes`` is one row of scratch and the vectorised
    loop leaves the codes out.

    NumPy's bin of ``x`` is ``k = int(((x - lo) / d) * 256)`` (``d = hi - lo``),
    corrected by one against the edges. A row is first done vectorised, with
    no division and no lookup: ``g = (x - lo) * scale`` (``scale = 256 / d``)
    differs from NumPy's scaled index by at most ``256 * (3u + u**2) < 1e-13``
    (``u = 2**-53``; the same ``x - lo``, then one rounding each for the
    quotient, ``scale`` and the product; subnormal parts add ``2**-1066``),
    so where ``g`` is farther than :data:`NEAR` from an integer both
    truncate to the same ``k``; ``k`` is kept where NumPy would not correct
    it (``edges[k] <= x < edges[k + 1]``, the edges computed as
    :func:`edge_step` says). A row with a pixel near an integer or one that
    NumPy corrects (a value on or near an edge; or all rows, ``step`` < 0,
    where the edges are not arithmetic) is done again with NumPy's
    arithmetic and corrections, pixel by pixel.
    """
    nbins = len(centers)
    last = nbins - 1
    flast = float(last)
    denominator = hi - lo
    q0, q1, p0, p1 = region
    r0, r1, c0, c1 = core
    bins = np.empty(p1 - p0, dtype=np.int32)  # the bin of each pixel, nbins for none
    out_of_range = False
    for i in range(q0, q1):
        row = values[i, p0:p1]
        ok = valid[i, p0:p1]
        out = codes[i - q0 if coded else 0]
        corrected = step < 0.0
        if not corrected:
            for j in range(p1 - p0):
                x = row[j]
                inside = ok[j] & (x >= lo) & (x <= hi)
                y = x if inside else lo  # NaN and inf never reach the arithmetic
                g = (y - lo) * scale
                k = np.floor(g)
                near = (g - k < NEAR) & (g != 0.0) | (g - k > 1.0 - NEAR)
                k = min(k, flast)
                a = k * step + lo
                b = (k + 1.0) * step + lo if k != flast else hi
                corrected |= inside & near | (y < a) | ((k != flast) & (y >= b))
                out_of_range |= ok[j] & ~inside
                n = np.int32(k)
                if coded:
                    out[j] = 1 + n + np.int32(y > (a + b) / 2.0) if inside else 0
                bins[j] = n if inside else nbins
        if corrected:
            for j in range(p1 - p0):
                x = row[j]
                out[j] = 0
                bins[j] = nbins
                if not ok[j]:
                    continue
                if not (x >= lo and x <= hi):
                    out_of_range = True
                    continue
                # numpy.histogram's uniform-bin arithmetic, step by step.
                n = int(((x - lo) / denominator) * nbins)
                if n == nbins:
                    n -= 1
                if x < edges[n]:
                    n -= 1
                if n != last and x >= edges[n + 1]:
                    n += 1
                if x < edges[n] or (n != last and x >= edges[n + 1]):
                    out_of_range = True  # NumPy's single correction step was not enough
                out[j] = 1 + n + (1 if x > centers[n] else 0)
                bins[j] = n
        if r0 <= i < r1:
            for j in range(max(c0, p0) - p0, min(c1, p1) - p0):
                counts[j % SUBHISTOGRAMS, bins[j]] += 1
    return not out_of_range


def _binned(
    values: np.ndarray,
    valid: np.ndarray,
    region: tuple[int, int, int, int],
    core: tuple[int, int, int, int],
    vmin: float,
    vmax: float,
    codes: np.ndarray | None,
) -> tuple[np.ndarray, bool]:
    edges, centers = bin_edges(vmin, vmax)
    lo, hi = outer_edges(vmin, vmax)
    step = edge_step(edges)
    scale = NBINS / (float(hi) - float(lo))
    if step is None or not np.isfinite(scale):
        step = -1.0  # every row with NumPy's arithmetic and the edges' table
    counts = np.zeros((SUBHISTOGRAMS, NBINS + 1), dtype=np.int64)
    scratch_row = np.empty((1, values.shape[1]), dtype=np.uint16)
    sound = _bin_codes(
        values, valid, region, core, float(lo), float(hi), step, scale, edges, centers,
        counts, scratch_row if codes is None else codes, codes is not None,
    )  # fmt: skip
    return counts[:, :NBINS].sum(axis=0), bool(sound)


def masked_histogram(
    values: np.ndarray,
    valid: np.ndarray,
    vmin: float,
    vmax: float,
    core: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """``histogram(values[core][valid[core]], vmin, vmax)`` without the copy (``core``: all).

    Counts identical to NumPy's: the same arithmetic (scaled index, then the
    corrections against the bin edges). Pass the whole array and ``core``
    rather than a view: rows of a C-contiguous array vectorise.
    """
    bounds = _bounds(values.shape, core)
    counts, _ = _binned(values, valid, bounds, bounds, vmin, vmax, None)
    return counts


def histogram_codes(
    values: np.ndarray,
    valid: np.ndarray,
    core: tuple[slice, slice],
    vmin: float,
    vmax: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The 256-bin histogram of ``values[core]`` (as :func:`masked_histogram`) and bin codes.

    The code of a valid pixel ``x`` in bin ``b`` (``edges[b] <= x < edges[b+1]``)
    is ``1 + b + (x > centers[b])``; invalid pixels get 0. As every Otsu
    threshold is a bin centre and the centres increase with the bins,
    ``x > centers[k]`` is exactly ``code >= k + 2`` (:func:`code_foreground`),
    so a mask pass can threshold 2-byte codes instead of recomputing the
    float64 values. The codes cover all of ``values`` (halo included); they
    are ``None`` when that equivalence cannot be guaranteed for this tile.
    """
    codes = np.empty(values.shape, dtype=np.uint16)
    everything = _bounds(values.shape, None)
    counts, sound = _binned(
        values, valid, everything, _bounds(values.shape, core), vmin, vmax, codes
    )
    return counts, codes if sound and codes_possible(vmin, vmax) else None


def _bounds(shape: tuple[int, ...], core: tuple[slice, slice] | None) -> tuple[int, int, int, int]:
    if core is None:
        return 0, shape[0], 0, shape[1]
    (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(core, shape, strict=True))
    return r0, r1, c0, c1


@kernel
def _masked_range(  # pragma: no cover - compiled
    values: np.ndarray, valid: np.ndarray, bounds: tuple[int, int, int, int]
) -> tuple[float, float, int]:
    """Per column, then over the columns (a reduction along a row would not vectorise).

    The minimum NumPy-style loop keeps is the first of the equal smallest
    values in raster order: only ``-0.0`` and ``0.0`` are equal yet differ,
    so a zero bound is taken again from the first zero in raster order.
    """
    r0, r1, c0, c1 = bounds
    low = np.full(c1 - c0, np.inf)
    high = np.full(c1 - c0, -np.inf)
    count = 0
    nan = False
    for i in range(r0, r1):
        row = values[i, c0:c1]
        ok = valid[i, c0:c1]
        for j in range(c1 - c0):
            x = row[j]
            a = x if ok[j] else np.inf
            b = x if ok[j] else -np.inf
            low[j] = a if a < low[j] else low[j]
            high[j] = b if b > high[j] else high[j]
            nan |= a != a
            count += ok[j]
    if nan:
        return np.nan, np.nan, count
    lo, hi = np.inf, -np.inf
    for j in range(c1 - c0):
        lo = low[j] if low[j] < lo else lo
        hi = high[j] if high[j] > hi else hi
    if lo == 0.0 or hi == 0.0:
        zero = _first_zero(values, valid, bounds)
        lo = zero if lo == 0.0 else lo
        hi = zero if hi == 0.0 else hi
    return lo, hi, count


@kernel
def _first_zero(  # pragma: no cover - compiled
    values: np.ndarray, valid: np.ndarray, bounds: tuple[int, int, int, int]
) -> float:
    r0, r1, c0, c1 = bounds
    for i in range(r0, r1):
        for j in range(c0, c1):
            if valid[i, j] and values[i, j] == 0.0:
                return float(values[i, j])
    return np.nan


def masked_range(
    values: np.ndarray, valid: np.ndarray, core: tuple[slice, slice] | None = None
) -> tuple[float, float, int]:
    """``(v.min(), v.max(), len(v))`` of ``v = values[core][valid[core]]``, without the copy.

    ``(inf, -inf, 0)`` when nothing is valid; NaN bounds when a valid value is
    NaN, as NumPy's ``min``/``max`` would give; of equal extremes (``-0.0``
    and ``0.0``) the first in raster order. Pass the whole array and ``core``
    rather than a view: rows of a C-contiguous array vectorise.
    """
    lo, hi, n = _masked_range(values, valid, _bounds(values.shape, core))
    return float(lo), float(hi), int(n)


def code_foreground(codes: np.ndarray, index: int, polarity: str) -> np.ndarray:
    """``threshold.foreground`` at the threshold ``centers[index]``, from bin codes."""
    above = codes >= index + 2
    if polarity == "below":
        np.logical_not(above, out=above)
        above &= codes != 0
    return above
