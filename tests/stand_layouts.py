"""Plant layouts with known rows, for the stand tests: every plant's row and order are known.

A layout is ``rows`` straight (or gently curved) rows at an azimuth, plants every
``plant`` metres with a random phase per row and jitter, independent misses, runs
of missing plants (skips), doubles, and weeds between the rows. The truth is
computed from the planted positions, not by tiler's code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    xy: np.ndarray  # (N, 2) map metres: crop plants first, then weeds
    row: np.ndarray  # each point's true row (0..rows-1), -1 for a weed, -2 in a headland
    order: np.ndarray  # each crop plant's rank along its row (slot), -1 for a weed
    azimuth: float
    spacing: float
    plant: float

    def truth_spacings(self) -> tuple[np.ndarray, np.ndarray]:
        """Per crop plant pair consecutive along a row: (row, distance), rows in order."""
        crop = np.flatnonzero(self.row >= 0)
        crop = crop[np.lexsort((self.order[crop], self.row[crop]))]
        same = self.row[crop][1:] == self.row[crop][:-1]
        step = np.diff(self.xy[crop], axis=0)[same]
        return self.row[crop][1:][same], np.hypot(step[:, 0], step[:, 1])


def layout(
    azimuth: float = 23.7,
    spacing: float = 0.76,
    plant: float = 0.18,
    extent: tuple[float, float] = (30.0, 24.0),  # along, across (m)
    jitter: tuple[float, float] = (0.02, 0.03),  # across, along (m)
    miss: float = 0.05,
    skips: float = 0.0,  # probability a slot starts a run of 2..5 missing plants
    doubles: float = 0.0,  # probability a slot has a second plant 0.3..0.45 plant further on
    weeds: float = 0.1,  # weeds per crop plant, between the rows
    curve: tuple[float, float] = (0.0, 100.0),  # amplitude, wavelength (m)
    headland: float = 0.0,  # width (m) of a band at each end planted across the rows
    origin: tuple[float, float] = (500_000.0, 4_100_000.0),
    seed: int = 0,
) -> Layout:
    rng = np.random.default_rng(seed)
    nrows, nslots = int(extent[1] / spacing), int(extent[0] / plant)
    k = np.repeat(np.arange(nrows), nslots)
    j = np.tile(np.arange(nslots), nrows)
    v = j * plant + rng.uniform(0, plant, nrows)[k] + rng.uniform(-1, 1, k.size) * jitter[1]
    present = rng.random(k.size) >= miss
    starts = np.flatnonzero(rng.random(k.size) < skips)
    for s, n in zip(starts, rng.integers(2, 6, starts.size), strict=True):
        present[s : s + n] &= k[s : s + n] != k[s]
    second = present & (rng.random(k.size) < doubles)
    k2, j2 = k[second], j[second]
    v2 = v[second] + rng.uniform(0.3, 0.45, second.sum()) * plant
    k, j, v = np.r_[k[present], k2], np.r_[2 * j[present], 2 * j2 + 1], np.r_[v[present], v2]
    amp, wavelength = curve
    u = k * spacing + amp * np.sin(2 * np.pi * v / wavelength)
    u += rng.uniform(-1, 1, k.size) * jitter[0]
    nw = int(weeds * k.size)
    wv = rng.uniform(0, extent[0], nw)
    wu = (rng.integers(0, nrows - 1, nw) + 0.5 + rng.uniform(-0.2, 0.2, nw)) * spacing
    wu += amp * np.sin(2 * np.pi * wv / wavelength)
    a = np.radians(azimuth)
    normal, along = np.array([np.cos(a), -np.sin(a)]), np.array([np.sin(a), np.cos(a)])
    uu, vv = np.r_[u, wu], np.r_[v, wv]
    row = np.r_[k, np.full(nw, -1)]
    order = np.r_[j, np.full(nw, -1)]
    if headland > 0:  # rows across the field's ends: plants on no row of the field
        hu, hv = np.meshgrid(np.arange(-1.0, nrows * spacing + 1, plant),
                             np.arange(spacing / 2, headland, spacing))  # fmt: skip
        hu, hv = hu.ravel(), hv.ravel()
        hv = np.r_[-hv, extent[0] + hv]
        hu = np.r_[hu, hu] + rng.uniform(-1, 1, hv.size) * jitter[1]
        uu, vv = np.r_[uu, hu], np.r_[vv, hv]
        row, order = np.r_[row, np.full(hv.size, -2)], np.r_[order, np.full(hv.size, -1)]
    xy = uu[:, None] * normal + vv[:, None] * along + np.asarray(origin)
    return Layout(xy, row, order, azimuth % 180.0, spacing, plant)
