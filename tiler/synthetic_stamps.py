"""What :mod:`tiler.synthetic` draws from: integer hashes and a library of plant stamps.

Every random choice of a synthetic field is a splitmix64 hash of integer keys
(the seed, a salt, a row or slot number), so any window of the field can be
drawn on its own. The plants and weeds are stamped from a small library of
lobed footprints, built once per seed, radius range and scale.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
MASK64 = 0xFFFFFFFFFFFFFFFF
N_CROP, N_WEED = 256, 64  # sizes of the plant and weed stamp libraries


def mix64(x: np.ndarray) -> np.ndarray:
    """Splitmix64 finaliser of a uint64 array (wrapping arithmetic, no warnings)."""
    x = x ^ (x >> 30)
    x *= 0xBF58476D1CE4E5B9
    x ^= x >> 27
    x *= 0x94D049BB133111EB
    return x ^ (x >> 31)


def hash64(*keys: int | np.ndarray) -> np.ndarray:
    """Hash integer scalars and arrays (broadcast together) to uniform uint64, ndim >= 1."""
    shape = np.broadcast_shapes(*(np.shape(k) for k in keys)) or (1,)
    h = np.full(shape, GOLDEN, np.uint64)
    for key in keys:
        if isinstance(key, int):
            key = np.uint64(key & MASK64)
        h = mix64(h ^ np.asarray(key).astype(np.uint64))
    return h


def unit(h: np.ndarray, i: int) -> np.ndarray:
    """The ``i``-th independent uniform float64 in [0, 1) drawn from hashes ``h``."""
    return (mix64(h ^ np.uint64(i * GOLDEN & MASK64)) >> 11) * 2.0**-53


class Stamps(NamedTuple):
    """Sparse library of plant footprints: pixel offsets and leaf shades of every stamp."""

    dy: np.ndarray  # (P,) int64 row offset from the stamp centre
    dx: np.ndarray  # (P,) int64 column offset
    shade: np.ndarray  # (P,) uint8 leaf shade, 1..255
    start: np.ndarray  # (S,) first pixel of each stamp in the arrays above
    size: np.ndarray  # (S,) number of pixels of each stamp
    half: int  # every stamp fits in [-half, half]^2


@functools.lru_cache(maxsize=16)
def stamps(seed: int, radius: tuple[float, float], scale: float = 1.0) -> Stamps:
    """Build the stamps: ``N_CROP`` lobed plants, then ``N_WEED`` small weeds.

    ``radius``: the range of the plants' mean radius and ``scale`` the pixels
    per unit of it (weeds are 1.2 to 3.2 units); the shapes are the same at
    any scale, drawn with ``scale`` times as many pixels across.
    """
    weed = np.arange(N_CROP + N_WEED) >= N_CROP
    h = hash64(seed, 0x57A4B, np.arange(weed.size))
    u = [unit(h, i)[:, None, None] for i in range(6)]
    w = weed[:, None, None]
    r = np.where(w, 1.2 + 2.0 * u[0], radius[0] + (radius[1] - radius[0]) * u[0]) * scale
    lobes = np.where(weed, 2, 3) + (unit(h, 1) * np.where(weed, 3, 5)).astype(int)
    amp = np.where(w, 0.3, 0.1) + 0.2 * u[2]
    bright = np.where(w, 0.15 + 0.3 * u[5], 0.35 + 0.45 * u[5])
    half = math.ceil(float((r * (1 + amp)).max())) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    d = np.sqrt(xx * xx + yy * yy)
    ct, st = xx / np.maximum(d, 1.0), yy / np.maximum(d, 1.0)  # cos, sin of the angle
    pc, ps = u[3] - 0.5, u[4] - 0.5  # random phase as a unit vector
    norm = np.sqrt(pc * pc + ps * ps) + 1e-12
    pc, ps = pc / norm, ps / norm
    # cos(n * angle), sin(n * angle) by the angle-addition recurrence
    cn, sn = ct, st
    for n in range(1, int(lobes.max())):
        more = (lobes > n)[:, None, None]
        cn, sn = np.where(more, cn * ct - sn * st, cn), np.where(more, sn * ct + cn * st, sn)
    lobe = cn * pc - sn * ps  # cos(n * angle + phase)
    edge = r * (1.0 + amp * lobe)
    t = d / edge
    shade = bright + 0.3 * (1.0 - t * t) + 0.1 * lobe - 0.1 * (xx + yy) / r  # lit from top-left
    s, dy, dx = np.nonzero(d <= edge)
    size = np.bincount(s, minlength=weed.size)
    shade = np.clip(np.rint(shade[s, dy, dx] * 254), 1, 255).astype(np.uint8)
    return Stamps(dy - half, dx - half, shade, np.cumsum(size) - size, size, half)
