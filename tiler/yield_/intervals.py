"""Prediction intervals of a field's mean yield from the model's residual covariance.

A field's predicted mean is the area-weighted mean of its cells' predictions,
``Ŷ = Σ w_i ŷ_i / W``; its error is the same mean of the cells' residuals
``r_i = y_i - ŷ_i``. The residuals are modelled as a stationary field with the
exponential covariance the calibration fitted to its blocked cross-validation
residuals (``model.json``'s ``residuals``)::

    C(h) = nugget * [h == 0] + partial_sill * exp(-h / range_m)

so the mean's error variance is the spatially averaged covariance

    var = (1 / W²) Σ_i Σ_j w_i w_j C(d_ij)

with ``d_ij`` the distance (m) between cell centres. Neighbouring cells' errors
are alike, so this is far larger than the iid ``sd² / n``, which would claim a
field mean known to a few kg/ha (the coverage test in tests/test_yield_predict.py
shows the iid interval covering well under 95 %).

Choices, stated where a user reads the interval:

* **Bias.** The blocked-CV bias ``b`` (mean of predicted − measured) is a
  systematic error shared by every cell, which no averaging removes. It is not
  subtracted from the predictions (it is itself estimated from few blocks); it
  is added to the error's expected square: the interval is
  ``Ŷ ± 1.96 sqrt(var + b²)`` (a 95 % interval under a normal error of that
  mean square; conservative by at most ``b²`` when the bias is real).
* **Many cells.** The double sum is ``O(n²)``. Above :data:`MAX_CELLS` cells the
  correlated part (``partial_sill`` off the diagonal, a weighted mean of
  ``exp(-d_ij / range_m)`` over pairs) is averaged over a subsample of
  :data:`MAX_CELLS` cells drawn without replacement by a generator of fixed seed
  (the same cells every time; random rather than every m-th cell, which would
  line up with the grid's columns), weights kept; the diagonal
  (``nugget + partial_sill`` times ``Σ w_i² / W²``) is always exact over all cells.
* The nugget holds the truth's own measurement noise (monitor noise) as well as
  the cells' true misfit; it is counted in full (conservative), and averages away
  in large fields anyway.

Pure NumPy: no files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_CELLS = 2000  # above this, the correlated part is averaged over a subsample
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
CHUNK = 512  # rows of the pairwise distance matrix computed at a time


@dataclass(frozen=True)
class Residuals:
    """The exponential covariance of the model's residuals (t/ha², metres) and its bias."""

    nugget: float
    partial_sill: float
    range_m: float
    bias: float = 0.0

    @classmethod
    def from_meta(cls, meta: dict) -> Residuals:
        """From ``model.json`` (``residuals`` and ``cv.bias``)."""
        r = meta["residuals"]
        return cls(float(r["nugget"]), float(r["partial_sill"]), float(r["range_m"]),
                   float(meta.get("cv", {}).get("bias", 0.0) or 0.0))  # fmt: skip

    @property
    def sill(self) -> float:
        """The variance of one cell's residual."""
        return self.nugget + self.partial_sill

    def covariance(self, h: np.ndarray) -> np.ndarray:
        """``C(h)`` at distances ``h`` (m)."""
        h = np.asarray(h, dtype=np.float64)
        smooth = self.partial_sill * np.exp(-h / self.range_m) if self.range_m > 0 else 0.0 * h
        return np.where(h == 0, self.nugget + self.partial_sill, smooth)


def subsample(n: int, limit: int = MAX_CELLS, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``limit`` of ``n`` items drawn without replacement with a fixed
    seed (deterministic); all of them when ``n <= limit``."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _off_diagonal_mean(xy: np.ndarray, w: np.ndarray, range_m: float) -> float:
    """``Σ_{i≠j} w_i w_j exp(-d_ij / range) / Σ_{i≠j} w_i w_j`` (1 for a single cell)."""
    total, pairs = 0.0, float(w.sum() ** 2 - (w * w).sum())
    if pairs <= 0 or range_m <= 0:
        return 1.0 if range_m > 0 else 0.0
    for start in range(0, len(w), CHUNK):
        block = slice(start, start + CHUNK)
        d = np.hypot(*(xy[block, None, :] - xy[None, :, :]).transpose(2, 0, 1))
        e = np.exp(-d / range_m)
        total += float(w[block] @ e @ w) - float((w[block] ** 2).sum())  # drop i == j
    return total / pairs


def mean_variance(
    xy_m: np.ndarray, weights: np.ndarray, residuals: Residuals, limit: int = MAX_CELLS
) -> float:
    """The error variance (t/ha)² of a weighted mean of cells' predictions (module docstring).

    Parameters
    ----------
    xy_m : (N, 2) ndarray of float
        Cell centres in metres (any origin).
    weights : (N,) ndarray of float
        Each cell's weight (its imaged area inside the field); zero weights allowed.
    residuals : Residuals
        The residual covariance; its bias is *not* included here (see :func:`half_width`).
    limit : int
        Most cells in the correlated part's double sum.
    """
    w = np.asarray(weights, dtype=np.float64)
    keep = w > 0
    xy, w = np.asarray(xy_m, dtype=np.float64)[keep], w[keep]
    if w.size == 0:
        return float("nan")
    s2 = float((w * w).sum() / w.sum() ** 2)  # Σ w² / W², exact over all cells
    pick = subsample(w.size, limit)
    rho = _off_diagonal_mean(xy[pick], w[pick], residuals.range_m)
    return residuals.sill * s2 + residuals.partial_sill * (1.0 - s2) * rho


def half_width(variance: float, residuals: Residuals, z: float = Z95) -> float:
    """Half the 95 % prediction interval of a field mean: ``z sqrt(var + bias²)``."""
    return float(z * np.sqrt(variance + residuals.bias**2))


def iid_half_width(n: int, residuals: Residuals, z: float = Z95) -> float:
    """The naive interval's half width, ``z sd / sqrt(n)``: what independent cells would
    give. Wrong for spatially correlated residuals; kept to show why (tests)."""
    return float(z * np.sqrt(residuals.sill / max(n, 1)))
