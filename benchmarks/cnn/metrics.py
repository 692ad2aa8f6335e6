"""Peaks of a confidence map, one-to-one matching at 10 px, precision/recall/F1 and count error.

Matching is optimal one-to-one (scipy.optimize.linear_sum_assignment on Euclidean distances);
pairs farther than ``radius`` are not matches. Pairs beyond the radius cost BIG, so the
assignment first maximises the number of true matches, then minimises their total distance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

RADIUS = 10.0
BIG = 1e6
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)
MIN_DISTS = (2, 3, 4, 5)
MAX_OVER = 4


def peak_mask(conf: torch.Tensor, min_dist: int) -> torch.Tensor:
    """(n, h, w) -> bool, True at local maxima of a (2 min_dist + 1)^2 window."""
    k = 2 * min_dist + 1
    pooled = F.max_pool2d(conf[:, None], k, stride=1, padding=min_dist)[:, 0]
    return conf == pooled


def peaks(conf: np.ndarray, mask: np.ndarray, t: float) -> np.ndarray:
    """(k, 2) x, y of the peaks of one map above t."""
    ys, xs = np.nonzero(mask & (conf > t))
    return np.stack([xs, ys], axis=1).astype(np.float32)


def n_matches(pred: np.ndarray, truth: np.ndarray, radius: float = RADIUS) -> int:
    if len(pred) == 0 or len(truth) == 0:
        return 0
    d = np.sqrt(((pred[:, None, :] - truth[None, :, :]) ** 2).sum(-1))
    cost = np.where(d <= radius, d, BIG)
    rows, cols = linear_sum_assignment(cost)
    return int((cost[rows, cols] <= radius).sum())


def scores(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    count_err = (n_pred - n_true) / n_true if n_true else 0.0
    return {"P": p, "R": r, "F1": f1, "count_err": count_err, "n_pred": n_pred, "n_true": n_true}


def evaluate(
    conf: torch.Tensor,
    truth: list[np.ndarray],
    thresholds: tuple[float, ...] = THRESHOLDS,
    min_dists: tuple[int, ...] = (3,),
) -> dict:
    """Best (by F1) threshold and min distance for confidence maps (n, h, w) in [0, 1].

    A threshold giving over MAX_OVER x as many peaks as trees (precision < 1 / MAX_OVER) is not
    matched: that would be slow on an untrained net and cannot be the best F1 of a useful one.
    """
    n_true = sum(len(p) for p in truth)
    best: dict = {**scores(0, 0, n_true), "F1": -1.0, "t": None, "min_dist": None}
    for md in min_dists:
        mask = peak_mask(conf.float(), md).cpu().numpy()
        cmap = conf.float().cpu().numpy()
        for t in thresholds:
            if int((mask & (cmap > t)).sum()) > MAX_OVER * max(n_true, 1):
                continue
            tp = n_pred = 0
            for i, pts in enumerate(truth):
                pred = peaks(cmap[i], mask[i], t)
                tp += n_matches(pred, pts)
                n_pred += len(pred)
            s = scores(tp, n_pred, n_true)
            if s["F1"] > best["F1"]:
                best = {**s, "t": t, "min_dist": md}
    return {**best, "F1": max(best["F1"], 0.0)}
