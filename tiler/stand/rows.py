"""Rows as plants in order, their lines and their in-row spacings.

A row is the plants of one lattice row (:mod:`tiler.stand.lattice`) ordered
along it. Its line runs from its first plant to its last: the straight line
fitted to its plants where the row is straight (within :data:`STRAIGHT` of a
spacing), else a vertex at the mean position of its plants in each cell length.
Its length is that line's. An in-row spacing is the distance between two
consecutive plants of a row (in the plane, so a double standing beside its
neighbour counts as the short spacing it is).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiler.stand.lattice import Assignment, Frame, Phase

STRAIGHT = 0.05  # a row deviating less than this share of the row spacing is a straight line


@dataclass(frozen=True)
class Rows:
    """The field's rows, numbered ``0 .. n-1`` across the field (increasing ``u``)."""

    plant: np.ndarray  # indices of the row plants into the input, row by row, in order
    row: np.ndarray  # the row of each of those plants
    starts: np.ndarray  # (n + 1,) offsets of each row's plants in ``plant``
    spacing: np.ndarray  # (len(plant) - n,) in-row spacings, row by row
    spacing_row: np.ndarray  # the row of each spacing
    first: np.ndarray  # the plant before each spacing (index into the input)
    second: np.ndarray  # and the plant after it
    lines: list[np.ndarray]  # each row's vertices, (m, 2) xy
    length: np.ndarray  # each row's line length (m)

    @property
    def count(self) -> int:
        return len(self.starts) - 1

    @property
    def plants(self) -> np.ndarray:
        return np.diff(self.starts)


def build(
    xy: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    on: Assignment,
    grid: Phase,
    frame: Frame,
    spacing: float,
    min_plants: int,
) -> Rows:
    """Group the plants on rows into rows of at least ``min_plants``, in order along."""
    index = np.flatnonzero(on.on_row)
    index = index[np.lexsort((v[index], on.k[index]))]
    k = on.k[index]
    _, counts = np.unique(k, return_counts=True)
    keep = np.repeat(counts >= min_plants, counts)
    index, k = index[keep], k[keep]
    _, counts = np.unique(k, return_counts=True)
    row = np.repeat(np.arange(len(counts)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)])
    same = row[1:] == row[:-1]
    step = np.diff(xy[index], axis=0)[same]
    lines = []
    for r in range(len(counts)):
        members = index[starts[r] : starts[r + 1]]
        lines.append(_line(u[members], v[members], grid.cell[1], frame, spacing))
    length = np.array([float(np.hypot(*np.diff(line, axis=0).T).sum()) for line in lines])
    return Rows(
        plant=index,
        row=row,
        starts=starts,
        spacing=np.hypot(step[:, 0], step[:, 1]),
        spacing_row=row[1:][same],
        first=index[:-1][same],
        second=index[1:][same],
        lines=lines,
        length=length,
    )


def _line(u: np.ndarray, v: np.ndarray, cell: float, frame: Frame, spacing: float) -> np.ndarray:
    """A row's vertices in xy, from its first plant to its last (``v`` ascending): the
    least-squares line through its plants if the means of their distances to it, a
    ``cell`` length at a time, stay within :data:`STRAIGHT` of a spacing; else the mean
    position of its plants in each ``cell`` length, continued straight to its ends."""
    v0, v1 = float(v[0]), float(v[-1])
    dv = v - v.mean()
    slope = float(np.dot(dv, u) / np.dot(dv, dv)) if v1 > v0 else 0.0
    intercept = float(u.mean() - slope * v.mean())
    piece = ((v - v0) // cell).astype(np.int64)
    count = np.bincount(piece)
    has = count > 0
    bends = np.abs(np.bincount(piece, u - (intercept + slope * v))[has] / count[has])
    ends = np.array([v0, v1])
    if bends.max() <= STRAIGHT * spacing or has.sum() < 2:
        return frame.to_xy(intercept + slope * ends, ends)
    um, vm = np.bincount(piece, u)[has] / count[has], np.bincount(piece, v)[has] / count[has]
    first = um[0] + (um[1] - um[0]) / (vm[1] - vm[0]) * (v0 - vm[0])
    last = um[-1] + (um[-1] - um[-2]) / (vm[-1] - vm[-2]) * (v1 - vm[-1])
    inner = (vm > v0) & (vm < v1)  # a cell's mean on an end plant would repeat the end
    return frame.to_xy(np.r_[first, um[inner], last], np.r_[v0, vm[inner], v1])
