"""Spatially blocked cross-validation and the spatial model of its residuals (issue 20).

Cells are grouped in square blocks of about ``block_m`` metres, whole cells each
(:func:`blocks`), and whole blocks are dealt to the folds (:func:`assign_folds`), so that
a cell and its neighbours are never split between training and test: the correlated
error of neighbouring cells cannot leak into the score, as it does when single cells
are dealt at random (:func:`random_folds`, kept to show that optimism on the model card).

:func:`fit_covariance` fits the exponential covariance of the out-of-fold residuals,
``C(h) = nugget * [h == 0] + partial_sill * exp(-h / range_m)``, to their binned
empirical semivariogram; prediction intervals of field sums are built from it.
Pure NumPy and scipy; no files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import nnls
from scipy.spatial.distance import pdist

MAX_VARIOGRAM_POINTS = 3000  # pdist of 3 000 points: 4.5 M pairs, a few tens of MB


def blocks(cell_row: np.ndarray, cell_col: np.ndarray, cell_m: float, block_m: float) -> np.ndarray:
    """The block of each cell: squares of ``m = max(1, round(block_m / cell_m))`` cells
    from the grid's top-left cell, numbered ``(row // m) * 2**20 + col // m`` (int64)."""
    m = max(1, round(block_m / cell_m))
    row = np.asarray(cell_row, np.int64) // m
    col = np.asarray(cell_col, np.int64) // m
    out: np.ndarray = row * (1 << 20) + col
    return out


def assign_folds(block: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Deal whole blocks to ``folds`` folds, as evenly as the rows allow (GroupKFold's rule:
    the largest blocks first, each to the fold with the fewest rows so far; blocks of equal
    size in an order drawn from ``seed``). Returns each row's fold, ``0 .. folds - 1``."""
    ids, inverse, counts = np.unique(block, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(ids.size)
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(folds, np.int64)
    fold_of = np.zeros(ids.size, np.int64)
    for b in order:
        f = int(np.argmin(load))
        fold_of[b] = f
        load[f] += counts[b]
    out: np.ndarray = fold_of[inverse]
    return out


def random_folds(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Rows dealt to folds at random (scikit-learn's shuffled KFold), ignoring space."""
    out = np.empty(n, np.int64)
    for f, chunk in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), folds)):
        out[chunk] = f
    return out


def out_of_fold(make: Callable[[], object], x: Any, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each row predicted by a fresh estimator (``make()``) fitted on the other folds
    (``x``: an array or a DataFrame of the rows, indexed by boolean masks)."""
    pred = np.full(y.shape, np.nan)
    for f in np.unique(fold):
        test = fold == f
        est = make()
        est.fit(x[~test], y[~test])  # type: ignore[attr-defined]
        pred[test] = est.predict(x[test])  # type: ignore[attr-defined]
    return pred


def scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """``r2`` (1 - SS_res / SS_tot about the measured mean), ``rmse`` and ``bias``
    (mean of predicted - measured), in the unit of the values, over all rows pooled."""
    y, p = np.asarray(measured, np.float64), np.asarray(predicted, np.float64)
    res = y - p
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((res**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"r2": r2, "rmse": float(np.sqrt((res**2).mean())), "bias": float(-res.mean())}


def variogram(
    xy: np.ndarray, residual: np.ndarray, bin_m: float, max_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binned empirical semivariogram: bins ``bin_m`` wide up to ``max_m``; returns each
    non-empty bin's mean distance, ``gamma = mean((r_i - r_j)**2) / 2`` and pair count.
    Over ``MAX_VARIOGRAM_POINTS`` points, an evenly spaced subset of them (deterministic)."""
    if len(residual) > MAX_VARIOGRAM_POINTS:
        keep = np.linspace(0, len(residual) - 1, MAX_VARIOGRAM_POINTS).astype(np.int64)
        xy, residual = xy[keep], residual[keep]
    h = pdist(xy)
    sq = pdist(residual[:, None], "sqeuclidean")
    inside = (h > 0) & (h <= max_m)
    b = (h[inside] / bin_m).astype(np.int64)
    n = np.bincount(b)
    ok = n > 0
    dist = np.bincount(b, h[inside])[ok] / n[ok]
    gamma = 0.5 * np.bincount(b, sq[inside])[ok] / n[ok]
    return dist, gamma, n[ok]


def fit_covariance(xy: np.ndarray, residual: np.ndarray, cell_m: float) -> dict[str, float]:
    """The exponential covariance of ``residual`` at map points ``xy`` (metres).

    Fits ``gamma(h) = nugget + partial_sill * (1 - exp(-h / range_m))`` to the
    semivariogram in bins of one cell up to half the largest distance, by least squares
    weighted by the pairs in each bin with non-negative ``nugget`` and ``partial_sill``
    (exact non-negative least squares for each range of a log grid from half a cell to
    the largest distance; the best range kept). Returns ``sd`` (the residuals' standard
    deviation), ``nugget``, ``partial_sill`` (their units squared), ``range_m``.
    """
    residual = np.asarray(residual, np.float64)
    sd = float(residual.std())
    out = {"sd": sd, "nugget": sd * sd, "partial_sill": 0.0, "range_m": float(cell_m)}
    extent = float(np.hypot(*np.ptp(xy, axis=0))) if len(xy) > 1 else 0.0
    if extent <= 0:
        return out
    dist, gamma, n = variogram(xy, residual - residual.mean(), cell_m, extent / 2)
    if dist.size < 3:
        return out
    w = np.sqrt(n)
    best = np.inf
    for range_m in np.geomspace(cell_m / 2, extent, 60):
        design = np.column_stack([np.ones_like(dist), 1.0 - np.exp(-dist / range_m)])
        coef, rnorm = nnls(design * w[:, None], gamma * w)
        if rnorm < best:
            best = rnorm
            out.update(nugget=float(coef[0]), partial_sill=float(coef[1]), range_m=float(range_m))
    return out
