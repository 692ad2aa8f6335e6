"""Choosing the decode threshold on validation images: peaks, matching, scores.

Points: the peaks of each confidence map (the model file contract's local rule, by
``tiler.kernels.peaks.find_peaks``) are matched one to one with the truth points within a
ground distance (:func:`tiler.accuracy.match_points`), pooled over the images, for every
threshold of a grid (0.05 to 0.95 by 0.05). The threshold of the best F1 wins, and among
thresholds whose F1 is within ``F1_TIE`` of the best, the one whose count is closest to the
truth's: the model counts, so of two equally good decodings the one that counts right is
better (on the NAIP val tiles 0.5 and 0.55 both gave F1 0.777, counting +9.2 % and +3.0 %).
Peaks above a threshold ``t`` are the
peaks above the lowest threshold whose confidence is ``>= t`` (the local-maximum part of the
rule does not depend on ``t``), so each map is searched once. Masks: pixel F1 per threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiler.accuracy import Score, combine_scores, match_points
from tiler.kernels.peaks import find_peaks

THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))
F1_TIE = 0.005
# A threshold that finds more than this many peaks per truth point cannot be the best F1 of a
# useful net; skipping it keeps the matching of an untrained net's noise cheap.
MAX_OVER = 4


@dataclass(frozen=True)
class Choice:
    """The chosen threshold and the pooled validation score there."""

    threshold: float
    score: Score

    @property
    def f1(self) -> float:
        return self.score.f1

    def to_dict(self) -> dict[str, float]:
        s = self.score
        return {
            "threshold": self.threshold,
            "precision": s.precision,
            "recall": s.recall,
            "f1": s.f1,
            "count_error": s.count_error,
            "n_truth": s.n_truth,
            "n_pred": s.n_pred,
        }


def choose_points(
    confs: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    *,
    pixel_m: float,
    within_m: float,
    radius_px: int,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Choice:
    """The threshold of the best pooled F1 over ``confs`` against ``truths`` (pixel (row, col)).

    Distances are in metres: pixel positions times ``pixel_m``.
    """
    lowest = min(thresholds)
    found = []
    for conf in confs:
        peaks = find_peaks(conf, lowest, radius_px)
        found.append((peaks * pixel_m, conf[peaks[:, 0], peaks[:, 1]]))
    n_truth = sum(len(t) for t in truths)
    choices = []
    for t in sorted(thresholds):
        if sum(int((v >= t).sum()) for _, v in found) > MAX_OVER * max(n_truth, 1):
            continue
        scores = [
            match_points(at[v >= t], truth * pixel_m, radius=within_m).score()
            for (at, v), truth in zip(found, truths, strict=True)
        ]
        choices.append(Choice(t, combine_scores(scores)))
    return best_counting(choices, Choice(math.nan, Score(0, 0, n_truth)))


def best_counting(choices: Sequence[Choice], none: Choice) -> Choice:
    """The best F1; among those within ``F1_TIE`` of it, the count closest to the truth's
    (then the lower threshold). ``none`` when there is no choice."""
    if not choices:
        return none
    top = max(c.f1 for c in choices)
    near = [c for c in choices if c.f1 >= top - F1_TIE]
    return min(near, key=lambda c: (abs(c.score.n_pred - c.score.n_truth), c.threshold))


def choose_mask(
    confs: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    thresholds: Sequence[float] = THRESHOLDS,
) -> Choice:
    """The threshold of the best pooled pixel F1 (a pixel is a detection, mask = truth), the
    area closest to the truth's among near-ties (:func:`best_counting`)."""
    truth = np.concatenate([m.ravel() > 0 for m in masks])
    conf = np.concatenate([c.ravel() for c in confs])
    choices = []
    for t in sorted(thresholds):
        pred = conf >= t
        tp = int((pred & truth).sum())
        choices.append(Choice(t, Score(tp, int(pred.sum()) - tp, int(truth.sum()) - tp)))
    return best_counting(choices, Choice(math.nan, Score(0, 0, int(truth.sum()))))
