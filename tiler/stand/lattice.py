"""Plants to rows across a whole field: the row lattice's local phase, unwrapped.

In the rows' frame (``u`` across the rows, ``v`` along them) plants of row ``k``
sit at ``u = phi(u, v) + k s``: the lattice's offset ``phi`` is a smooth field
that absorbs gentle curvature, a slightly wrong azimuth and a spacing that drifts
across passes. Each cell of a grid (:data:`CELL_ROWS` rows wide,
:data:`CELL_LENGTH` spacings long, or longer to hold :data:`CELL_POINTS` plants)
measures ``phi`` modulo ``s`` as the phase of ``sum exp(2 pi i u / s)`` over its
plants. The phases are unwrapped from the
surest cell outward (quality-guided, as radar interferometry unwraps phase), so a
row keeps its number ``k`` from cell to cell however far it bends, as long as
neighbouring cells differ by less than half a spacing: rows turning by under
about 1 / (2 CELL_LENGTH) rad (14 degrees) between cells. A plant belongs to row
``k = round((u - phi) / s)`` if it lies within a tolerance of the row's line
and its cell is not one that has plants but no rows (a headland, a weedy patch).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tiler.stand.pattern import normal

CELL_ROWS = 8  # cell width across the rows, in row spacings
CELL_LENGTH = 2  # cell length along the rows, in row spacings
CELL_POINTS = 40  # and at least this long: as many plants as this, at the field's density
MIN_CELL = 12  # plants in a cell to judge its rows
EDGE_CELL = (4, 0.7)  # fewer, as few as these with this R: a cell at the field's edge
CELL_STRENGTH = 0.3  # R of a cell with rows
TOLERANCE = (0.12, 0.3)  # a plant's distance to its row's line: clipped to these shares of s


@dataclass(frozen=True)
class Frame:
    """The rows' frame: ``u`` across (along the normal), ``v`` along the rows (metres)."""

    azimuth: float

    def to_uv(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = normal(self.azimuth)
        return xy @ n, xy @ np.array([-n[1], n[0]])

    def to_xy(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        n = normal(self.azimuth)
        return np.outer(u, n) + np.outer(v, [-n[1], n[0]])


@dataclass(frozen=True)
class Phase:
    """The unwrapped lattice offset ``phi`` (m) on a grid of cells, and where it is known."""

    origin: tuple[float, float]  # (u, v) of the grid's corner
    cell: tuple[float, float]  # cell size (u, v), metres
    phi: np.ndarray  # (nu, nv), filled everywhere
    rowless: np.ndarray  # (nu, nv) bool: enough plants, no rows

    def index(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional cell coordinates of ``(u, v)``: cell ``(i, j)`` spans ``[i, i + 1)``."""
        return (u - self.origin[0]) / self.cell[0], (v - self.origin[1]) / self.cell[1]

    def at(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """``phi`` at points, bilinear between cell centres, and continued linearly for
        half a cell beyond the outer ones (the rows go on turning up to the field's edge)."""
        fu, fv = self.index(u, v)
        coords = np.stack([fu + 0.5, fv + 0.5])  # on the grid grown by one cell each side
        values: np.ndarray = ndimage.map_coordinates(
            _extended(self.phi), coords, order=1, mode="nearest"
        )
        return values

    def is_rowless(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        fu, fv = self.index(u, v)
        i = np.clip(fu.astype(np.int64), 0, self.phi.shape[0] - 1)
        j = np.clip(fv.astype(np.int64), 0, self.phi.shape[1] - 1)
        return self.rowless[i, j]


def _extended(phi: np.ndarray) -> np.ndarray:
    """``phi`` grown by one cell on each side, continuing its outer differences."""
    for axis in (0, 1):
        if phi.shape[axis] < 2:
            phi = np.concatenate([phi, phi, phi], axis=axis)
            continue
        first, second = np.take(phi, [0], axis), np.take(phi, [1], axis)
        last, before = np.take(phi, [-1], axis), np.take(phi, [-2], axis)
        phi = np.concatenate([2 * first - second, phi, 2 * last - before], axis=axis)
    return phi


def phase(u: np.ndarray, v: np.ndarray, spacing: float, density: float) -> Phase:
    """Measure and unwrap the lattice offset of plants at ``(u, v)`` with row ``spacing``
    (``density`` plants per m², which lengthens cells to hold :data:`CELL_POINTS`)."""
    width = CELL_ROWS * spacing
    cell = (width, max(CELL_LENGTH * spacing, CELL_POINTS / (density * width)))
    origin = (float(u.min()), float(v.min()))
    shape = (int((u.max() - origin[0]) // cell[0]) + 1, int((v.max() - origin[1]) // cell[1]) + 1)
    i = ((u - origin[0]) // cell[0]).astype(np.int64)
    j = ((v - origin[1]) // cell[1]).astype(np.int64)
    flat = i * shape[1] + j
    size = shape[0] * shape[1]
    angle = 2 * np.pi * u / spacing
    z = np.bincount(flat, np.cos(angle), size) + 1j * np.bincount(flat, np.sin(angle), size)
    n = np.bincount(flat, minlength=size)
    r = np.abs(z) / np.maximum(n, 1)
    known = (n >= MIN_CELL) & (r >= CELL_STRENGTH)
    edge = ~known & (n >= EDGE_CELL[0]) & (r >= EDGE_CELL[1])
    wrapped = np.angle(z) / (2 * np.pi) * spacing
    quality = (r * np.sqrt(n)).reshape(shape)
    phi = _unwrap(wrapped.reshape(shape), quality, known.reshape(shape), spacing)
    _unwrap_edges(phi, wrapped.reshape(shape), quality, known.reshape(shape),
                  edge.reshape(shape), spacing)  # fmt: skip
    rowless = ((n >= MIN_CELL) & ~known).reshape(shape)
    return Phase(origin, cell, phi, rowless)


def _unwrap(wrapped: np.ndarray, quality: np.ndarray, known: np.ndarray, s: float) -> np.ndarray:
    """Unwrap ``wrapped`` (modulo ``s``) over the ``known`` cells, surest first.

    Quality-guided flood fill over the eight neighbours: a cell is unwrapped
    against the value its neighbour predicts, continuing the neighbour's own
    change from the cell behind it when that is known (so a steady turn of the
    rows, or an azimuth a little off, costs nothing). A known cell reached only
    across one unknown cell is unwrapped the same way over the two cells; a group
    out of reach of the others against the first group's median, as a straight
    lattice would continue. Unknown cells take the value of the nearest known one
    (then :func:`_unwrap_edges` may measure some of them).
    """
    out = np.full(wrapped.shape, np.nan)
    if not known.any():
        return np.zeros(wrapped.shape)
    nu, nv = wrapped.shape
    near = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]
    leapt = np.zeros(known.shape, bool)  # cells whose two-cell neighbours were tried

    def fill(i: int, j: int, reach: int, heap: list[tuple[float, int, int]]) -> None:
        """Unwrap the known neighbours ``reach`` cells from ``(i, j)`` that are not yet."""
        for a, b in near:
            p, q = i + reach * a, j + reach * b
            if not (0 <= p < nu and 0 <= q < nv and known[p, q] and np.isnan(out[p, q])):
                continue
            guess = out[i, j]
            if 0 <= i - a < nu and 0 <= j - b < nv and not np.isnan(out[i - a, j - b]):
                guess += reach * (out[i, j] - out[i - a, j - b])  # the change continues
            out[p, q] = wrapped[p, q] + s * np.round((guess - wrapped[p, q]) / s)
            heapq.heappush(heap, (-quality[p, q], p, q))

    order = np.argsort(-np.where(known, quality, -np.inf), axis=None)[: int(known.sum())]
    reference = None
    for seed in order:
        si, sj = divmod(int(seed), nv)
        if not np.isnan(out[si, sj]):
            continue
        base = wrapped[si, sj]
        if reference is not None:  # another group: continue the lattice of the first
            base += s * np.round((reference - base) / s)
        out[si, sj] = base
        heap = [(-quality[si, sj], si, sj)]
        while heap:
            while heap:
                _, i, j = heapq.heappop(heap)
                fill(i, j, 1, heap)
            # across one unknown cell from the group's edge, then on over the eight again
            edge = ~np.isnan(out) & ~leapt
            edge &= ndimage.binary_dilation(~known, np.ones((3, 3), bool), border_value=0)
            leapt |= edge
            for i, j in np.argwhere(edge):
                fill(int(i), int(j), 2, heap)
        if reference is None:
            reference = float(np.nanmedian(out))
    nearest = ndimage.distance_transform_edt(~known, return_distances=False, return_indices=True)
    filled: np.ndarray = out[tuple(nearest)]
    return filled


def _unwrap_edges(phi: np.ndarray, wrapped: np.ndarray, quality: np.ndarray,
                  known: np.ndarray, edge: np.ndarray, s: float) -> None:  # fmt: skip
    """Measure, in place, the ``edge`` cells beside known ones: too few plants to judge
    rows from, but where rows end (at the field's edge) the lattice still turns. Each is
    unwrapped against the surest known neighbour's prediction and passes nothing on."""
    nu, nv = phi.shape
    measured = phi.copy()
    for i, j in np.argwhere(edge):
        best = None
        for a in (-1, 0, 1):
            for b in (-1, 0, 1):
                p, q = i + a, j + b
                if 0 <= p < nu and 0 <= q < nv and known[p, q]:
                    if best is None or quality[p, q] > quality[best]:
                        best = (p, q)
        if best is None:
            continue
        p, q = best
        guess = phi[p, q]
        back = (2 * p - i, 2 * q - j)
        if 0 <= back[0] < nu and 0 <= back[1] < nv and known[back]:
            guess += phi[p, q] - phi[back]
        measured[i, j] = wrapped[i, j] + s * np.round((guess - wrapped[i, j]) / s)
    phi[...] = measured


@dataclass(frozen=True)
class Assignment:
    """Each plant's row number ``k`` (lattice index) and whether it is on a row."""

    k: np.ndarray  # int64
    on_row: np.ndarray  # bool
    offset: np.ndarray  # u - phi - k s: signed distance from the lattice line (m)
    tolerance: float


def assign(u: np.ndarray, v: np.ndarray, grid: Phase, spacing: float) -> Assignment:
    """The nearest lattice row of each plant, and whether the plant is on it."""
    r = u - grid.at(u, v)
    k = np.rint(r / spacing).astype(np.int64)
    offset = r - k * spacing
    rowless = grid.is_rowless(u, v)
    core = np.abs(offset[~rowless]) <= TOLERANCE[1] * spacing
    mad = float(np.median(np.abs(offset[~rowless][core]))) if core.any() else 0.0
    low, high = (t * spacing for t in TOLERANCE)
    tolerance = min(max(5 * 1.4826 * mad, low), high)
    return Assignment(k, (np.abs(offset) <= tolerance) & ~rowless, offset, tolerance)


def refine_spacing(u: np.ndarray, v: np.ndarray, rows: Assignment, grid: Phase) -> float:
    """The row spacing as the slope of ``u`` on the row number, with an intercept per
    column of cells along the rows (which absorbs their shared curvature)."""
    on = rows.on_row
    column = grid.index(u[on], v[on])[1].astype(np.int64)
    column -= column.min()
    k, uu = rows.k[on].astype(np.float64), u[on]
    count = np.bincount(column)
    mean_k = np.bincount(column, k) / np.maximum(count, 1)
    mean_u = np.bincount(column, uu) / np.maximum(count, 1)
    dk, du = k - mean_k[column], uu - mean_u[column]
    spread = float(np.dot(dk, dk))
    return float(np.dot(dk, du) / spread) if spread > 0 else grid.cell[0] / CELL_ROWS


def turn(u: np.ndarray, v: np.ndarray, rows: Assignment) -> float:
    """The turn (degrees, clockwise) that aligns the frame with the rows on average: the
    slope of ``u`` on ``v`` with an intercept per row."""
    on = rows.on_row
    k = rows.k[on] - rows.k[on].min()
    uu, vv = u[on], v[on]
    count = np.maximum(np.bincount(k), 1)
    du = uu - (np.bincount(k, uu) / count)[k]
    dv = vv - (np.bincount(k, vv) / count)[k]
    return float(np.degrees(np.arctan(np.dot(du, dv) / np.dot(dv, dv))))
