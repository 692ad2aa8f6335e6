"""The row pattern of a field's plants: the rows' direction and spacing, and how sure.

Rows are a one-dimensional lattice across themselves: projected on the rows'
normal ``n``, the plants pile up once every row spacing ``s``. For an azimuth
``a`` and a spacing ``s`` the pattern's strength is the mean resultant length

    R(a, s) = |sum_j exp(2 pi i u_j / s)| / N,        u_j = p_j . n(a)

1 for plants exactly on rows, about ``1 / sqrt(N)`` for points with no rows.
The scan evaluates ``R`` for every spacing at once on each azimuth: a fine
histogram of ``u`` and its FFT. This Fourier method was chosen over a Hough
transform and over per-angle projection profiles because it is one vectorised
pass per angle, needs no vote threshold, and weeds between the rows or missing
plants lower ``R`` without moving its peak. Plants on rows every ``s`` also pile
up every ``s / 2``, ``s / 3``, ... (as strongly when they stand exactly on rows;
weeds halfway between rows even strengthen ``s / 2``): the row spacing is the
largest spacing of the best peak's family whose ``R`` reaches :data:`HARMONIC`
of the best and whose lattice still holds :data:`HELD` of the plants the best's
holds (in a plot of two rows ``R`` is ``|cos|``, as strong at three spacings).

Coordinates are metres in a projected CRS (``x`` east, ``y`` north); an azimuth
is in degrees clockwise from north, in ``[0, 180)``: a row along ``(sin a, cos a)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft
from scipy.spatial import cKDTree

COARSE_POINTS = 1000  # the patch (points nearest the centre) of the coarse angle scan
FINE_POINTS = 3000  # and of the fine one
HARMONIC = 0.35  # a longer spacing of the family is the fundamental if its R reaches this share
NEAR = 0.15  # a point within this share of a spacing of its lattice line is on it
HELD = 0.75  # and that longer spacing's lattice holds at least this share of the best's points
MIN_STRENGTH = 0.2  # R below this: no rows
SIGNIFICANCE = 12.0  # and N R^2 must exceed ln(trials) + this (a chance peak's tail, e^-12)
_CHUNK = 128  # angles per vectorised block


@dataclass(frozen=True)
class Pattern:
    """The rows' azimuth (degrees), spacing (m) and strength ``R`` on the patch of ``n`` points
    (``density`` of them per m²); ``found`` when ``R`` reaches ``needed``: :data:`MIN_STRENGTH`,
    or more where few points could show such a pattern by chance (:data:`SIGNIFICANCE`)."""

    azimuth: float
    spacing: float
    strength: float
    n: int
    density: float
    needed: float
    found: bool


def normal(azimuth: float | np.ndarray) -> np.ndarray:
    """Unit normals ``(cos a, -sin a)`` of rows at ``azimuth`` (degrees), shape ``(..., 2)``."""
    a = np.radians(azimuth)
    return np.stack([np.cos(a), -np.sin(a)], axis=-1)


def strength(xy: np.ndarray, azimuth: float, spacing: float) -> float:
    """``R(a, s)`` exactly (no histogram) for the points ``xy`` (N, 2)."""
    u = xy @ normal(azimuth)
    return float(np.abs(np.exp(2j * np.pi * u / spacing).mean())) if len(u) else 0.0


def nearest_neighbour_distance(xy: np.ndarray) -> float:
    """The median distance from a point to its nearest other point."""
    distance, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(distance[:, 1]))


def patch(xy: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` points nearest the points' median, centred on it (a compact patch, in
    which even curved rows are nearly straight)."""
    centred: np.ndarray = xy - np.median(xy, axis=0)
    if len(xy) <= size:
        return centred
    d2 = np.einsum("ij,ij->i", centred, centred)
    nearest: np.ndarray = centred[np.argpartition(d2, size - 1)[:size]]
    return nearest


def _spectra(xy: np.ndarray, azimuths: np.ndarray, bin_m: float, nbins: int) -> np.ndarray:
    """``R`` on the FFT frequencies ``m / (nbins bin_m)`` for each azimuth: ``(A, nbins//2+1)``."""
    out = np.empty((len(azimuths), nbins // 2 + 1))
    for start in range(0, len(azimuths), _CHUNK):
        block = azimuths[start : start + _CHUNK]
        u = xy @ normal(block).T  # (N, A)
        index = np.floor((u - u.min(axis=0)) / bin_m).astype(np.int64) % nbins
        index += np.arange(len(block)) * nbins
        hist = np.bincount(index.T.ravel(), minlength=len(block) * nbins)
        out[start : start + len(block)] = np.abs(fft.rfft(hist.reshape(len(block), nbins)))
    return out / len(xy)


def scan(xy: np.ndarray, azimuth: float | None = None, spacing: float | None = None) -> Pattern:
    """The rows' azimuth and spacing in the points ``xy`` (N, 2) metres; either may be given.

    A coarse scan of every azimuth on the :data:`COARSE_POINTS` nearest the centre, a
    fine one near its best on :data:`FINE_POINTS`; the spacing is refined later on the
    whole field (:mod:`tiler.stand.lattice`).
    """
    fine = patch(xy, FINE_POINTS)
    if not np.ptp(fine, axis=0).max() > 0:  # every plant at one place: no direction at all
        return Pattern(0.0, float("nan"), 0.0, len(fine), float("inf"), MIN_STRENGTH, False)
    d_nn = nearest_neighbour_distance(fine)
    if d_nn <= 0:  # more than half the points doubled: spread by their extent instead
        d_nn = float(np.ptp(fine, axis=0).max()) / np.sqrt(len(fine))
    coarse = patch(xy, COARSE_POINTS)
    if spacing is not None:
        lo, hi = spacing / 1.02, spacing * 1.02
    else:
        lo, hi = 0.8 * d_nn, max(0.8 * d_nn, min(50 * d_nn, float(np.ptp(fine, axis=0).max()) / 3))
    trials = 1
    best_a, family, coarse_step = 0.0, [1.0 / lo], None
    for points in (coarse, fine):
        extent = float(np.ptp(points, axis=0).max()) + lo
        step = np.degrees(lo / (4 * extent))
        if azimuth is not None:
            azimuths = np.array([azimuth % 180.0])
        elif coarse_step is None:
            azimuths = np.arange(0.0, 180.0, step)
        else:  # within three coarse steps of the coarse scan's best
            azimuths = (best_a + np.arange(-3 * coarse_step, 3 * coarse_step, step)) % 180.0
        bin_m = lo / 6
        nbins = fft.next_fast_len(int(np.ceil(1.42 * extent / bin_m)) + 1)
        freqs = np.arange(nbins // 2 + 1) / (nbins * bin_m)
        band = (freqs >= 1 / hi) & (freqs <= 1 / lo)
        if not band.any():
            band[np.argmin(np.abs(freqs - 2 / (lo + hi)))] = True
        spectra = np.where(band, _spectra(points, azimuths, bin_m, nbins), 0.0)
        trials += spectra.size
        i, j = np.unravel_index(int(np.argmax(spectra)), spectra.shape)
        best_a = float(azimuths[i])
        family = _family(spectra[i], freqs, int(j), band)
        coarse_step = step
    if spacing is None:
        best_s = _polish(fine, best_a, 1 / _fundamental(fine @ normal(best_a), family))
    else:
        best_s = spacing
    r = strength(fine, best_a, best_s)
    needed = max(MIN_STRENGTH, float(np.sqrt((np.log(trials) + SIGNIFICANCE) / len(fine))))
    radius = float(np.sqrt(np.einsum("ij,ij->i", fine, fine).max()))
    density = len(fine) / (np.pi * radius * radius) if radius > 0 else float("inf")
    return Pattern(best_a, best_s, r, len(fine), density, needed, r >= needed)


def _family(spectrum: np.ndarray, freqs: np.ndarray, best: int, band: np.ndarray) -> list[float]:
    """The candidate row frequencies of the best peak's family, lowest first: ``f / m`` for
    each ``m`` in the band whose ``R`` (the maximum within one bin) reaches
    :data:`HARMONIC` of the best, and ``f`` itself last."""
    found = []
    for m in range(best // max(1, int(np.argmax(band))), 1, -1):
        j = int(round(best / m))
        if j < 1 or not band[j]:
            continue
        lo, hi = max(j - 1, 1), min(j + 2, len(spectrum))
        near = lo + int(np.argmax(spectrum[lo:hi]))
        if spectrum[near] >= HARMONIC * spectrum[best]:
            found.append(float(freqs[near]))
    return [*found, float(freqs[best])]


def _on_lattice(u: np.ndarray, spacing: float) -> float:
    """The share of points within :data:`NEAR` of a spacing of the best-fitting lattice."""
    z = np.exp(2j * np.pi * u / spacing)
    offset = np.angle(z * np.conj(z.mean())) / (2 * np.pi)  # in spacings, in [-0.5, 0.5]
    return float(np.mean(np.abs(offset) <= NEAR))


def _fundamental(u: np.ndarray, family: list[float]) -> float:
    """The lowest frequency of the ``family`` whose lattice holds at least :data:`HELD` of
    the points the best peak's lattice holds: a spacing three times the true one can
    still show a strong ``R`` (two rows: ``|cos|``), but leaves rows off its lattice."""
    best = _on_lattice(u, 1 / family[-1])
    return next(f for f in family if _on_lattice(u, 1 / f) >= HELD * best)


def _polish(xy: np.ndarray, azimuth: float, spacing: float) -> float:
    """The spacing that maximises the exact ``R`` within one FFT bin of ``spacing``."""
    candidates = spacing * (1 + np.linspace(-0.03, 0.03, 61))
    u = xy @ normal(azimuth)
    r = [np.abs(np.exp(2j * np.pi * u / s).mean()) for s in candidates]
    return float(candidates[int(np.argmax(r))])
