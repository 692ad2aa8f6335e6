"""The row layout of :mod:`tiler.synthetic`: the row frame, its slots, skips and doubles.

Crop rows and the weeds between them sit on a grid of (row ``k``, slot ``j``) in
the *row frame*: ``v`` along the rows, ``w`` across them, in the field's units.
The rows run at ``angle`` degrees counter-clockwise from the image's +x axis as
seen on screen (image rows grow downward), and every row is displaced sideways by
the same ``amplitude * sin(2 pi v / wavelength)``. With image units ``x`` (right)
and ``y`` (down)::

    v = x cos(a) - y sin(a)        x = v cos(a) + w sin(a)
    w = x sin(a) + y cos(a)        y = w cos(a) - v sin(a)

so at angle 0 ``v`` is ``x`` and ``w`` is ``y``, bit for bit. Every position is
built from integer hashes and IEEE ``+ - * /`` and ``floor`` (the sine is a
polynomial), so any window of the field can be drawn on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tiler.synthetic_stamps import hash64, unit

_SKIP_SALT, _DOUBLE_SALT = 9, 10
_BED_STEPS = 4096  # turned rows' beds: positions across a row spacing, a power of 2
_SIN = (-1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800)  # Taylor terms of sin


class Layer(NamedTuple):
    """Objects on a (crop row, slot along the row) grid; one per slot if present."""

    salt: int
    row_shift: float  # in row spacings: 0 on the crop rows, 0.5 between them
    spacing: float  # slot spacing along the row, in units (SyntheticField.unit_m)
    jitter: tuple[float, float]  # max (across, along) displacement, in units
    density: float  # probability that a slot holds an object
    stamps: tuple[int, int]  # range of stamp ids to draw from
    planted: bool = False  # crop rows: skips and doubles apply


class Objects(NamedTuple):
    """Every slot of a block of rows (then the doubles' second plants), flattened."""

    k: np.ndarray  # (N,) int64 row number
    j: np.ndarray  # (N,) int64 slot number along the row
    v: np.ndarray  # (N,) float64 along-row position in units (jittered)
    x: np.ndarray  # (N,) float64 image position in units, rightward
    y: np.ndarray  # (N,) float64 image position in units, downward
    present: np.ndarray  # (N,) bool: a plant is there
    double: np.ndarray  # (N,) bool: the slot holds two plants (both entries)
    second: np.ndarray  # (N,) bool: the second plant of a double
    skipped: np.ndarray  # (N,) bool: the slot is in a skip (a run of missing plants)
    h: np.ndarray  # (N,) uint64 hash of the object (its stamp)
    nominal_v: np.ndarray  # (N,) float64 planted along-row position, no jitter
    nominal_w: np.ndarray  # (N,) float64 planted across-row position, no jitter or curve


def sin_turns(t: np.ndarray) -> np.ndarray:
    """``sin(2 pi t)`` from ``+ - * /`` and ``floor`` only (absolute error < 1e-7)."""
    f = t - np.floor(t + 0.5)  # [-0.5, 0.5)
    f = np.where(f > 0.25, 0.5 - f, np.where(f < -0.25, -0.5 - f, f))  # sin(pi - x) = sin x
    x = (2 * math.pi) * f
    x2, poly = x * x, _SIN[-1]
    for c in _SIN[-2::-1]:
        poly = c + x2 * poly
    return x + x * x2 * poly


def _relief(t: np.ndarray) -> np.ndarray:
    """Row bed relief (int16) at ``t`` row spacings from a crop row."""
    u = 2.0 * np.abs(t - np.floor(t + 0.5))  # 0 on a crop row, 1 halfway between rows
    return np.rint(5.0 - 10.0 * u * u).astype(np.int16)


@dataclass(frozen=True)
class RowLayout:
    """Where the rows and slots of a field are (see the module docstring)."""

    seed: int
    row_spacing: float
    angle: float = 0.0
    curvature: tuple[float, float] = (0.0, 1000.0)
    skip_rate: float = 0.0
    skip_length: tuple[int, int] = (2, 6)
    double_rate: float = 0.0
    double_offset: tuple[float, float] = (0.3, 0.45)

    def __post_init__(self) -> None:
        if not math.isfinite(self.angle):
            raise ValueError(f"row_angle must be finite, got {self.angle}")
        if not (self.curvature[0] >= 0 and self.curvature[1] > 0):
            raise ValueError("row_curvature must be (amplitude >= 0, wavelength > 0)")
        if not (0 <= self.skip_rate <= 1 and 0 <= self.double_rate <= 1):
            raise ValueError("skip_rate and double_rate must be in [0, 1]")
        if not 1 <= self.skip_length[0] <= self.skip_length[1]:
            raise ValueError("skip_length must satisfy 1 <= min <= max")
        if not 0 < self.double_offset[0] <= self.double_offset[1] < 1:
            raise ValueError("double_offset must satisfy 0 < min <= max < 1")

    @property
    def level(self) -> bool:
        """Straight rows along the image's x axis (today's layout, no rotation needed)."""
        return self.angle == 0 and self.curvature[0] == 0

    @property
    def phase(self) -> float:
        """``w`` of crop row 0, in units."""
        return float(unit(hash64(self.seed, 4), 0)[0]) * self.row_spacing

    def _cos_sin(self) -> tuple[float, float]:
        a = math.radians(self.angle)
        return math.cos(a), math.sin(a)

    def offset(self, v: np.ndarray) -> np.ndarray:
        """Sideways displacement of every row at along-row position ``v``."""
        amplitude, wavelength = self.curvature
        return amplitude * sin_turns(v / wavelength)

    def to_image(self, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image units ``(x, y)`` of row-frame ``(v, w)`` (``w`` with the curve in it)."""
        if self.angle == 0:
            return v, w
        c, s = self._cos_sin()
        return v * c + w * s, w * c - v * s

    def beds(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Relief of the soil's row beds (int16, +5 on the crop rows to -5 between them)
        at the grid ``y[:, None], x[None, :]`` (units); ``(rows, 1)`` for level rows."""
        if self.level:
            return _relief((y - self.phase) / self.row_spacing)[:, None]
        # the position across the rows in 1/_BED_STEPS of a row spacing, modulo a spacing,
        # in integers: each pixel's from its row's part and its column's part
        c, s = self._cos_sin()
        ty, tx = (y * c - self.phase) / self.row_spacing, x * s / self.row_spacing
        qy, qx = (np.rint((t - np.floor(t)) * _BED_STEPS).astype(np.int32) for t in (ty, tx))
        q = qy[:, None] + qx[None, :]
        if self.curvature[0]:  # minus the curve's offset at v = x c - y s, to a unit or two
            vy, vx = np.floor(-y * s).astype(np.int64), np.floor(x * c).astype(np.int64)
            first = int(vy.min() + vx.min())
            v = np.arange(first, int(vy.max() + vx.max()) + 1)
            shift = np.rint(self.offset(v) / self.row_spacing * _BED_STEPS).astype(np.int32)
            q -= shift[(vy - first).astype(np.int32)[:, None] + vx.astype(np.int32)[None, :]]
        table = _relief(np.arange(_BED_STEPS) / _BED_STEPS)
        return table[q & (_BED_STEPS - 1)]

    def _bounds(self, x0: float, x1: float, y0: float, y1: float) -> tuple[float, ...]:
        """``v`` and ``w`` ranges of an image box (units): its corners in the row frame."""
        if self.angle == 0:
            return x0, x1, y0, y1
        c, s = self._cos_sin()
        xs, ys = np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1])
        v, w = xs * c - ys * s, xs * s + ys * c
        return float(v.min()), float(v.max()), float(w.min()), float(w.max())

    def objects(self, layer: Layer, box: tuple[float, float, float, float], pad: float) -> Objects:
        """Every slot of ``layer`` whose object may lie within ``pad`` units of the image
        box ``(x0, x1, y0, y1)`` (units), present or not; the doubles' second plants last."""
        rs, sp = self.row_spacing, layer.spacing
        y0 = self.phase + layer.row_shift * rs
        v0, v1, u0, u1 = self._bounds(*box)
        doubles = layer.planted and self.double_rate > 0
        ry = pad + layer.jitter[0] + self.curvature[0]
        rx = pad + layer.jitter[1] + (self.double_offset[1] * sp if doubles else 0.0)
        k = np.arange(math.floor((u0 - ry - y0) / rs), math.floor((u1 + ry - y0) / rs) + 1)
        j = np.arange(math.floor((v0 - rx) / sp) - 1, math.floor((v1 + rx) / sp) + 1)
        h = hash64(self.seed, layer.salt, k[:, None], j[None, :])
        phase = unit(hash64(self.seed, layer.salt, k), 0)[:, None] * sp
        w = y0 + k[:, None] * rs + layer.jitter[0] * (2 * unit(h, 1) - 1)
        v = phase + j[None, :] * sp + layer.jitter[1] * (2 * unit(h, 2) - 1)
        nominal_v = phase + j[None, :] * sp
        nominal_w = np.broadcast_to(y0 + k[:, None] * rs, h.shape)
        present = unit(h, 3) < layer.density
        skipped = np.zeros(h.shape, bool)
        if layer.planted and self.skip_rate > 0:
            skipped = self._skipped(k, j)
            present &= ~skipped
        kk, jj = np.broadcast_arrays(k[:, None], j[None, :])
        parts = [(kk, jj, v, w, present, h, nominal_v, nominal_w, skipped)]
        double = np.zeros(h.shape, bool)
        if doubles:
            hd = hash64(self.seed, _DOUBLE_SALT, k[:, None], j[None, :])
            double = present & (unit(hd, 0) < self.double_rate)
            lo, hi = self.double_offset
            shift = (lo + (hi - lo) * unit(hd, 1)) * sp
            more = (kk, jj, v + shift, w, present, hd, nominal_v + shift, nominal_w, skipped)
            parts.append(tuple(a[double] for a in more))
        kk, jj, v, w, present, h, nominal_v, nominal_w, skipped = (
            np.concatenate([np.ravel(a) for a in arrays]) for arrays in zip(*parts, strict=True)
        )
        second = np.arange(v.size) >= double.size
        double = np.concatenate([double.ravel(), np.ones(v.size - double.size, bool)])
        if self.curvature[0]:
            w = w + self.offset(v)
        x, y = self.to_image(v, w)
        return Objects(kk, jj, v, x, y, present, double, second, skipped, h,
                       nominal_v, nominal_w)  # fmt: skip

    def _skipped(self, k: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Slots inside a skip: slot ``j`` starts a run of ``skip_length`` missing slots
        with probability ``skip_rate``, so look back as far as the longest run."""
        lo, hi = self.skip_length
        ext = np.arange(j[0] - (hi - 1), j[-1] + 1)
        hs = hash64(self.seed, _SKIP_SALT, k[:, None], ext[None, :])
        start = unit(hs, 0) < self.skip_rate
        length = lo + np.floor(unit(hs, 1) * (hi - lo + 1))
        out = np.zeros((k.size, j.size), bool)
        for d in range(hi):  # the run that starts d slots before reaches this slot
            s = hi - 1 - d
            out |= start[:, s : s + j.size] & (length[:, s : s + j.size] > d)
        return out


@dataclass(frozen=True, eq=False)
class RowTruth:
    """One crop row inside the footprint, from its first to its last present plant."""

    row: int  # the row's number (its ``row`` in the slots and plants)
    line: np.ndarray  # (V, 2) map (x, y) along the row's centre line: 2 if straight, ~1 m apart
    plants: int  # present plants, doubles' second plants included
    length_m: float  # length of ``line`` in metres
    spacings_m: np.ndarray  # (plants - 1,) distances between consecutive plants along the row


@dataclass(frozen=True, eq=False)
class StandTruth:
    """The stand of a synthetic field as planted, in map coordinates (metres).

    A slot or plant counts when its centre pixel is inside the footprint (and the
    window asked for), as :meth:`tiler.synthetic.SyntheticField.plant_centres`.
    Plants are at their drawn (jittered, pixel-centre) positions, slots at their
    nominal planted positions (on the row's curve, no jitter).
    """

    slot_xy: np.ndarray  # (N, 2) nominal planted (x, y) of each slot and doubles' seconds
    slot_row: np.ndarray  # (N,) int64 row number
    slot_index: np.ndarray  # (N,) int64 slot number along the row (a second shares its slot's)
    slot_present: np.ndarray  # (N,) bool: a plant grows there
    slot_double: np.ndarray  # (N,) bool: the slot holds two plants (both entries)
    slot_second: np.ndarray  # (N,) bool: the entry is a double's second plant
    slot_skipped: np.ndarray  # (N,) bool: missing as part of a skip
    plants_xy: np.ndarray  # (P, 2) present plants, ordered by row then along it
    plant_row: np.ndarray  # (P,) int64 row number of each plant
    rows: tuple[RowTruth, ...]  # the rows with at least one plant, by row number
    gap_row: np.ndarray  # (G,) int64: each interval between consecutive plants of a row
    gap_length_m: np.ndarray  # (G,) float64 its Euclidean length
    gap_start_xy: np.ndarray  # (G, 2) the plant it starts at (earlier along the row)
    gap_end_xy: np.ndarray  # (G, 2) the plant it ends at
    row_spacing_m: float  # nominal distance between rows
    plant_spacing_m: float  # nominal distance between slots along a row
    azimuth_deg: float  # the rows' direction clockwise from map north, in [0, 180)


def _to_map(field, x: np.ndarray, y: np.ndarray, *, pixels: bool = False) -> np.ndarray:
    """Map ``(x, y)`` of image positions in units (``pixels``: in pixel indices);
    pixel ``(i, j)`` is centred on ``transform * (j + 0.5, i + 0.5)``."""
    if not pixels:
        x, y = (p * field.scale + (field.scale - 1) * 0.5 for p in (x, y))
    col, row = x + 0.5, y + 0.5
    a, b, c, d, e, f = tuple(field.transform)[:6]
    return np.column_stack([a * col + b * row + c, d * col + e * row + f])


def stand_truth(field, window) -> StandTruth:
    """:meth:`tiler.synthetic.SyntheticField.stand_truth` of ``field`` in ``window``."""
    r0, r1, c0, c1 = window.row_start, window.row_stop, window.col_start, window.col_stop
    layout, crops = field._layout, field._layers()[0]
    o = field._slots(crops, r0, r1, c0, c1, margin=0)
    nx, ny = layout.to_image(o.nominal_v, o.nominal_w + layout.offset(o.nominal_v))

    def inside(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cy, cx = field._pixels(y).astype(np.int64), field._pixels(x).astype(np.int64)
        keep = (cy >= r0) & (cy < r1) & (cx >= c0) & (cx < c1)
        return keep & field._inside(cy, cx)

    slot = inside(nx, ny)
    px, py = field._pixels(o.x), field._pixels(o.y)  # plants: their drawn pixel centres
    plant = o.present & inside(o.x, o.y)
    order = np.lexsort((o.v[plant], o.k[plant]))
    row = o.k[plant][order]
    xy = _to_map(field, px[plant][order], py[plant][order], pixels=True)
    v = o.v[plant][order]
    same = row[1:] == row[:-1]
    step = np.hypot(*(xy[1:] - xy[:-1]).T)
    rows = []
    for k, first, stop in zip(*_runs(row), strict=True):
        line = _line(field, layout, k, v[first], v[stop - 1])
        length = float(np.hypot(*np.diff(line, axis=0).T).sum())
        rows.append(RowTruth(int(k), line, int(stop - first), length, step[first : stop - 1]))
    return StandTruth(
        slot_xy=_to_map(field, nx[slot], ny[slot]), slot_row=o.k[slot], slot_index=o.j[slot],
        slot_present=o.present[slot], slot_double=o.double[slot], slot_second=o.second[slot],
        slot_skipped=o.skipped[slot], plants_xy=xy, plant_row=row, rows=tuple(rows),
        gap_row=row[1:][same], gap_length_m=step[same], gap_start_xy=xy[:-1][same],
        gap_end_xy=xy[1:][same], row_spacing_m=field.row_spacing * field.unit_m,
        plant_spacing_m=field.plant_spacing * field.unit_m,
        azimuth_deg=(90.0 - field.row_angle) % 180.0,
    )  # fmt: skip


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, first index and stop of each run of equal values of a sorted array."""
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    return row[starts], starts, np.r_[starts[1:], row.size]


def _line(field, layout: RowLayout, k: int, v0: float, v1: float) -> np.ndarray:
    """Map vertices of crop row ``k``'s centre line from ``v = v0`` to ``v1`` (units)."""
    n = 2
    if layout.curvature[0]:
        n = max(2, math.ceil((v1 - v0) * field.unit_m) + 1)  # about a vertex a metre
    v = np.linspace(v0, v1, n)
    w = layout.phase + k * layout.row_spacing + layout.offset(v)
    return _to_map(field, *layout.to_image(v, w))


def footprint_spans(
    seed: int, inset: tuple[float, float], shape: tuple[int, int], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and last column inside a field's footprint, a quadrilateral whose corners
    are inset by a fraction in ``inset`` of the image ``shape``, of each of ``rows``
    (``lo > hi``: none)."""
    f = unit(hash64(seed, 3, np.arange(8)), 0)
    f = inset[0] + (inset[1] - inset[0]) * f
    h, w = shape
    # clockwise on screen: top-left, top-right, bottom-right, bottom-left, as (y, x)
    ys = (f[0] * h, f[2] * h, (1 - f[4]) * h, (1 - f[6]) * h)
    xs = (f[1] * w, (1 - f[3]) * w, (1 - f[5]) * w, f[7] * w)
    y = np.asarray(rows, np.float64) + 0.5
    lo, hi = np.full(y.shape, 0.0), np.full(y.shape, w - 1.0)
    for e in range(4):  # inside iff (q - p) x (X - p) >= 0 for every edge p -> q
        py, px, qy, qx = ys[e], xs[e], ys[(e + 1) % 4], xs[(e + 1) % 4]
        dy, rhs = qy - py, (qx - px) * (y - py)
        if dy > 0:
            hi = np.minimum(hi, np.floor((rhs + dy * px) / dy - 0.5))
        elif dy < 0:
            lo = np.maximum(lo, np.ceil((rhs + dy * px) / dy - 0.5))
        else:
            lo = np.where(rhs >= 0, lo, w)
    return lo.astype(np.int64), hi.astype(np.int64)
