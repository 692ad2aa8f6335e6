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

REASONS = ("missing", "outside", "no crop", "zero", "outlier", "local outlier")
NO_CROP_COVER_PCT = 1.0
ZERO_FRACTION = 0.1
OUTLIER_SD = 4.0
LOCAL_M, LOCAL_MIN, LOCAL_SD = 10.0, 3, 3.0


def robust_sd(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of normal data."""
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def flag(
    value: np.ndarray,
    on_image: np.ndarray,
    crop: np.ndarray,
    xy_m: np.ndarray | None = None,
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
