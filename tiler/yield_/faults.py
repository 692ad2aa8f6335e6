"""Yield-monitor faults: which measured records a calibration must not learn from (issue 20).

Each record gets the first of these reasons that applies to it, or none (kept):

* ``missing``: no value or no geometry;
* ``outside``: not on a cell of the image with any valid pixel (for a plot: less than
  half of its area on such cells);
* ``no crop``: on a cell without vegetation (canopy cover under :data:`NO_CROP_COVER_PCT`
  or no plants): the combine's turns on the headland, outside the crop;
* ``zero``: a value at or below 0 or under :data:`ZERO_FRACTION` of the median of the
  records still kept (header up, grain not flowing yet);
* ``outlier``: outside the median +- :data:`OUTLIER_SD` robust standard deviations
  (1.4826 x the median absolute deviation) of the records still kept;
* ``position jump`` (points with a time column only): the records between a jump of the
  position ahead along the track and the jump back of the same size (within
  :data:`JUMP_MATCH`) at most :data:`JUMP_RUN` records later, jumps being steps that
  differ from the median step by over :data:`JUMP_M` m: positions recorded away from
  where the grain was cut (GPS lag or a lost fix);
* ``pass end`` (points with a time column only): within :data:`PASS_END_M` metres along the
  track of a turn (the heading over :data:`TURN_M` m before and after a record differ
  by over :data:`TURN_DEG` degrees): the headland turns, and the start and end
  of each pass, where the grain flow through the combine fills and empties;
* ``local outlier`` (points only): differs from the median of the kept records within
  :data:`LOCAL_M` metres around it (at least :data:`LOCAL_MIN` of them) by more than
  :data:`LOCAL_SD` robust standard deviations of such differences: a reading that does
  not fit its place, as after a GPS lag at the ends of passes or the filling and
  emptying of the combine's throughput.

Pure NumPy and scipy; no files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

REASONS = ("missing", "outside", "no crop", "zero", "outlier", "position jump", "pass end",
           "local outlier")  # fmt: skip
NO_CROP_COVER_PCT = 1.0
ZERO_FRACTION = 0.1
OUTLIER_SD = 4.0
LOCAL_M, LOCAL_MIN, LOCAL_SD = 10.0, 3, 3.0
PASS_END_M, TURN_DEG, TURN_M = 10.0, 45.0, 5.0
JUMP_M, JUMP_MATCH, JUMP_RUN = 1.5, 0.3, 50
# The records form a track (are in the order they were recorded) when this share of the
# steps between consecutive records lies within half to twice the median step.
TRACK_SHARE, MIN_TRACK = 0.75, 20


def robust_sd(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of normal data."""
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def flag(
    value: np.ndarray,
    on_image: np.ndarray,
    crop: np.ndarray,
    xy_m: np.ndarray | None = None,
    track: bool = False,
) -> np.ndarray:
    """The reason each record is left out (``""``: kept), as the module docstring says.

    Parameters
    ----------
    value : (N,) ndarray of float
        The measured values (NaN: missing).
    on_image, crop : (N,) ndarray of bool
        Whether the record lies on an imaged cell, and whether that cell has crop.
    xy_m : (N, 2) ndarray of float, optional
        Positions in metres, for the ``local outlier`` check (points; None: plots).
    track : bool
        Whether ``xy_m`` is in the order the records were made, for the ``pass end``
        and ``position jump`` checks (skipped where the steps do not form a track:
        :func:`is_track`).
    """
    reason = np.full(value.shape, "", dtype=object)
    kept = lambda: reason == ""  # noqa: E731 - re-evaluated after each rule
    reason[~np.isfinite(value)] = "missing"
    reason[kept() & ~on_image] = "outside"
    reason[kept() & ~crop] = "no crop"
    if kept().any():
        med = float(np.median(value[kept()]))
        reason[kept() & ((value <= 0) | (value < ZERO_FRACTION * med))] = "zero"
    if kept().any():
        v = value[kept()]
        med, sd = float(np.median(v)), robust_sd(v)
        reason[kept() & (np.abs(value - med) > OUTLIER_SD * sd)] = "outlier"
    if xy_m is not None and track and is_track(xy_m):
        jumped = position_jumps(xy_m)
        reason[kept() & jumped] = "position jump"
        reason[kept() & pass_ends(xy_m, ~jumped)] = "pass end"
    if xy_m is not None and kept().sum() > LOCAL_MIN:
        reason[local_outliers(value, xy_m, kept())] = "local outlier"
    out: np.ndarray = reason.astype(str)
    return out


def local_outliers(value: np.ndarray, xy_m: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Kept records that differ from the median of their kept neighbours within
    :data:`LOCAL_M` m by over :data:`LOCAL_SD` robust SD of all such differences."""
    idx = np.flatnonzero(kept)
    tree = cKDTree(xy_m[idx])
    diff = np.full(idx.size, np.nan)
    for i, near in enumerate(tree.query_ball_point(xy_m[idx], LOCAL_M)):
        others = [j for j in near if j != i]
        if len(others) >= LOCAL_MIN:
            diff[i] = value[idx[i]] - np.median(value[idx[others]])
    ok = np.isfinite(diff)
    out = np.zeros(value.shape, bool)
    if ok.sum() > LOCAL_MIN:
        centre, sd = float(np.median(diff[ok])), robust_sd(diff[ok])
        out[idx[ok]] = np.abs(diff[ok] - centre) > LOCAL_SD * sd
    return out


def _steps(xy_m: np.ndarray) -> tuple[np.ndarray, float]:
    steps = np.hypot(*np.diff(xy_m, axis=0).T)
    return steps, float(np.median(steps)) if steps.size else 0.0


def is_track(xy_m: np.ndarray) -> bool:
    """Whether consecutive records are a combine's track: :data:`TRACK_SHARE` of the steps
    within half to twice the median step (a file sorted otherwise is not)."""
    steps, median = _steps(xy_m)
    if len(xy_m) < MIN_TRACK or not median > 0:
        return False
    return bool(np.mean((steps >= 0.5 * median) & (steps <= 2 * median)) >= TRACK_SHARE)


def pass_ends(xy_m: np.ndarray, use: np.ndarray | None = None) -> np.ndarray:
    """Records within :data:`PASS_END_M` m along the track of a turn: where the heading
    over :data:`TURN_M` m before a record and after it differ by over :data:`TURN_DEG`
    degrees. ``use``: the records that trace the track (others, such as position jumps,
    are left out of it and flagged by the turn nearest along it)."""
    n = len(xy_m)
    use = np.ones(n, bool) if use is None else use
    path = xy_m[use]
    along = np.r_[0.0, np.cumsum(_steps(path)[0])]  # distance along the track
    if path.shape[0] < 3 or along[-1] <= 2 * TURN_M:
        return np.zeros(n, bool)
    at = lambda s: np.column_stack([np.interp(s, along, path[:, 0]),  # noqa: E731
                                    np.interp(s, along, path[:, 1])])  # fmt: skip
    before, after = path - at(along - TURN_M), at(along + TURN_M) - path
    cos = np.einsum("ij,ij->i", before, after) / np.maximum(
        np.hypot(*before.T) * np.hypot(*after.T), 1e-12
    )
    inner = (along >= TURN_M) & (along <= along[-1] - TURN_M)  # the track's ends: no turn
    turns = along[(cos < np.cos(np.radians(TURN_DEG))) & inner]
    if not turns.size:
        return np.zeros(n, bool)
    # every record at its place along the track (a left-out one at its predecessor's)
    place = along[np.maximum(np.cumsum(use) - 1, 0)]
    out: np.ndarray = _nearest_distance(place, turns) <= PASS_END_M
    return out


def _nearest_distance(values: np.ndarray, sorted_points: np.ndarray) -> np.ndarray:
    """Each value's distance to the nearest of ``sorted_points`` (ascending, non-empty)."""
    i = np.searchsorted(sorted_points, values).clip(1, max(sorted_points.size - 1, 1))
    lo, hi = sorted_points[i - 1], sorted_points[np.minimum(i, sorted_points.size - 1)]
    return np.minimum(np.abs(values - lo), np.abs(values - hi))


def position_jumps(xy_m: np.ndarray) -> np.ndarray:
    """Records between a jump along the track and its jump back (module docstring)."""
    delta = np.diff(xy_m, axis=0)
    steps, median = _steps(xy_m)
    # A step's signed length along the track's direction before it (a jump back is negative).
    previous = np.vstack([delta[:1], delta[:-1]])
    sign = np.where(np.einsum("ij,ij->i", delta, previous) < 0, -1.0, 1.0)
    excess = sign * steps - median
    jumps = np.flatnonzero(np.abs(excess) > JUMP_M)
    out = np.zeros(len(xy_m), bool)
    for a, b in zip(jumps[:-1], jumps[1:], strict=True):
        back = excess[a] + excess[b]
        if b - a <= JUMP_RUN and abs(back) <= JUMP_MATCH * abs(excess[a]):
            out[a + 1 : b + 1] = True  # step a lands on record a + 1; step b leaves record b
    return out


def counts(reason: np.ndarray) -> dict[str, int]:
    """Records left out, by reason (every reason listed, zeros included)."""
    return {r: int((reason == r).sum()) for r in REASONS}


def has_crop(cells: pd.DataFrame) -> np.ndarray:
    """Whether each cell of a features table holds crop: a plant and at least
    :data:`NO_CROP_COVER_PCT` % canopy cover (else nothing there to harvest)."""
    crop = np.ones(len(cells), bool)
    if "canopy_cover_pct" in cells:
        crop &= cells["canopy_cover_pct"].fillna(0).to_numpy() >= NO_CROP_COVER_PCT
    if "plants" in cells:
        crop &= cells["plants"].fillna(0).to_numpy() > 0
    return crop
