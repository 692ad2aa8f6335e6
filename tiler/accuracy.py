"""Detection accuracy: match detected object centroids to ground-truth points, and score.

Pure NumPy/SciPy, no dask: :func:`match_points` pairs predicted points with
truth points one to one within a radius, so that the number of pairs is the
largest possible and, among such matchings, their total distance is the
smallest; :class:`Score` turns the counts into precision, recall, F1 and the
signed count error; :func:`combine_scores` pools per-tile scores (micro
average: sum the counts, then compute).

A pair is a candidate when its Euclidean distance, ``numpy.hypot(dx, dy)``,
is **at most** the radius (inclusive). Distances and the radius are in the
units of the coordinates (metres for projected map coordinates).

Examples
--------
>>> m = match_points([[0.0, 0.0], [10.0, 0.0]], [[1.0, 0.0], [50.0, 0.0]], radius=3.0)
>>> m.pred_index.tolist(), m.truth_index.tolist(), m.distance.tolist()
([0], [0], [1.0])
>>> s = m.score()
>>> (s.tp, s.fp, s.fn, s.precision, s.recall, s.f1, s.count_error)
(1, 1, 1, 0.5, 0.5, 0.5, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_bipartite_matching
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Score:
    """Detection counts and the measures derived from them.

    Parameters
    ----------
    tp : int
        True positives: matched (prediction, truth) pairs.
    fp : int
        False positives: predictions left unmatched.
    fn : int
        False negatives: truth points left unmatched.
    sum_distance : float
        Sum of the distances of the matched pairs.

    Notes
    -----
    With no predictions, precision is 1 (no prediction is wrong); with no
    truth points, recall is 1 (none is missed). F1 is ``2 tp / (2 tp + fp + fn)``,
    the harmonic mean of precision and recall wherever that is defined, and 1
    when both sets are empty. So a detector that finds nothing in a scene
    with objects scores precision 1, recall 0, F1 0; one that finds objects
    in an empty scene scores precision 0, recall 1, F1 0; and both sets empty
    scores 1, 1, 1. ``count_error`` is ``(n_pred - n_truth) / n_truth``: 0
    when both are empty and ``+inf`` when only the truth is empty.
    ``mean_distance`` is NaN when nothing matched.
    """

    tp: int
    fp: int
    fn: int
    sum_distance: float = 0.0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def n_pred(self) -> int:
        """Number of predictions, ``tp + fp``."""
        return self.tp + self.fp

    @property
    def n_truth(self) -> int:
        """Number of truth points, ``tp + fn``."""
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        """``tp / n_pred``; 1 when there are no predictions."""
        return self.tp / self.n_pred if self.n_pred else 1.0

    @property
    def recall(self) -> float:
        """``tp / n_truth``; 1 when there are no truth points."""
        return self.tp / self.n_truth if self.n_truth else 1.0

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 1 when both sets are empty."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 1.0

    @property
    def count_error(self) -> float:
        """Signed relative count error ``(n_pred - n_truth) / n_truth``.

        0 when both sets are empty, ``+inf`` when only the truth is empty.
        """
        if self.n_truth:
            return (self.n_pred - self.n_truth) / self.n_truth
        return math.inf if self.n_pred else 0.0

    @property
    def mean_distance(self) -> float:
        """Mean distance of the matched pairs; NaN when nothing matched."""
        return self.sum_distance / self.tp if self.tp else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Counts and measures as plain Python numbers (for JSON and tables)."""
        return {
            "n_truth": self.n_truth,
            "n_pred": self.n_pred,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "count_error": self.count_error,
            "mean_distance": self.mean_distance,
        }


def combine_scores(scores: Iterable[Score]) -> Score:
    """Pool scores of several tiles: sum the counts (micro average), then compute.

    Parameters
    ----------
    scores : iterable of Score

    Returns
    -------
    Score
        The pooled score; that of two empty sets when ``scores`` is empty.

    Examples
    --------
    >>> s = combine_scores([Score(tp=3, fp=1, fn=0), Score(tp=1, fp=0, fn=4)])
    >>> (s.tp, s.fp, s.fn, s.precision, s.recall)
    (4, 1, 4, 0.8, 0.5)
    """
    tp = fp = fn = 0
    sum_distance = 0.0
    for score in scores:
        tp, fp, fn = tp + score.tp, fp + score.fp, fn + score.fn
        sum_distance += score.sum_distance
    return Score(tp, fp, fn, sum_distance)


@dataclass(frozen=True)
class Matches:
    """A one-to-one matching of predicted points to truth points.

    Attributes
    ----------
    pred_index, truth_index : (K,) ndarray of int64
        Row numbers of the matched points in ``pred_xy`` and ``truth_xy``,
        sorted by ``pred_index``.
    distance : (K,) ndarray of float64
        Distance of each matched pair (at most ``radius``).
    n_pred, n_truth : int
        Sizes of the two point sets.
    radius : float
        The matching radius.
    """

    pred_index: np.ndarray
    truth_index: np.ndarray
    distance: np.ndarray
    n_pred: int
    n_truth: int
    radius: float

    @property
    def tp(self) -> int:
        """Number of matched pairs."""
        return len(self.pred_index)

    def score(self) -> Score:
        """The :class:`Score` of this matching."""
        return Score(
            tp=self.tp,
            fp=self.n_pred - self.tp,
            fn=self.n_truth - self.tp,
            sum_distance=float(self.distance.sum()),
        )


def _as_points(xy: ArrayLike, name: str) -> np.ndarray:
    points = np.asarray(xy, dtype=np.float64)
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name}: expected an (N, 2) array of (x, y), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError(f"{name}: coordinates must be finite")
    return points


def candidate_pairs(
    pred_xy: np.ndarray, truth_xy: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (prediction, truth) pair within ``radius`` (inclusive).

    Parameters
    ----------
    pred_xy, truth_xy : (N, 2) and (M, 2) ndarray of float64
    radius : float

    Returns
    -------
    pred_index, truth_index : (P,) ndarray of int64
    distance : (P,) ndarray of float64
        ``numpy.hypot`` of the coordinate differences, each ``<= radius``.
    """
    if len(pred_xy) == 0 or len(truth_xy) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    # The tree's distances may round differently from hypot's: search a hair
    # wider, then apply the one rule, hypot(dx, dy) <= radius.
    search = np.nextafter(radius * (1 + 1e-9), np.inf)
    found = cKDTree(pred_xy).sparse_distance_matrix(
        cKDTree(truth_xy), search, output_type="ndarray"
    )
    i, j = found["i"].astype(np.int64), found["j"].astype(np.int64)
    distance = np.hypot(*(pred_xy[i] - truth_xy[j]).T)
    keep = distance <= radius
    return i[keep], j[keep], distance[keep]


def _components(i: np.ndarray, j: np.ndarray, n_pred: int, n_truth: int) -> list[np.ndarray]:
    """Candidate pairs grouped by connected component of the bipartite graph they form.

    Returns one array of pair numbers (positions in ``i`` and ``j``) per
    component that has at least one pair. Matchings in different components
    are independent, so each is solved on its own.
    """
    if len(i) == 0:
        return []
    nodes = n_pred + n_truth
    graph = coo_matrix((np.ones(len(i)), (i, n_pred + j)), shape=(nodes, nodes))
    _, component = connected_components(graph, directed=False)
    of_pair = component[i]
    order = np.argsort(of_pair, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(of_pair[order])) + 1)


def _assign(distance: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-cardinality, then minimum-distance, assignment in one dense block.

    ``distance`` and ``candidate`` are ``(p, t)``. Non-candidate pairs cost
    ``big``, more than the largest possible total distance of a matching in
    the block, so one non-candidate pair fewer always outweighs any
    difference in distance: minimising the cost first maximises the number
    of candidate pairs, then minimises their total distance. Non-candidate
    pairs in the assignment are dropped.
    """
    k = min(distance.shape)
    real = distance[candidate]
    big = 1.0 + k * (float(real.max()) if real.size else 0.0)
    cost = np.where(candidate, distance, big)
    rows, cols = linear_sum_assignment(cost)
    keep = candidate[rows, cols]
    return rows[keep], cols[keep]


def match_points(pred_xy: ArrayLike, truth_xy: ArrayLike, radius: float) -> Matches:
    """Optimal one-to-one matching of predicted points to truth points within ``radius``.

    Each prediction matches at most one truth point and vice versa, only
    within ``radius`` (inclusive: ``numpy.hypot(dx, dy) <= radius``). The
    matching has the largest possible number of pairs and, among those, the
    smallest total distance. Greedy nearest-neighbour matching can find
    fewer pairs (a prediction takes the truth point that another prediction
    needed).

    Candidate pairs come from a k-d tree; the bipartite graph they form is
    split into connected components, and each component is solved exactly
    by ``scipy.optimize.linear_sum_assignment`` on its dense distance block
    (memory: the product of its two sides, small for detections spaced
    about a radius apart or more).

    Parameters
    ----------
    pred_xy : (N, 2) array_like of float
        Predicted points ``(x, y)``, e.g. object centroids in map coordinates.
    truth_xy : (M, 2) array_like of float
        Ground-truth points ``(x, y)`` in the same coordinates.
    radius : float
        Largest distance of a match, >= 0, in the units of the coordinates.

    Returns
    -------
    Matches

    Examples
    --------
    Greedy matching would pair the first prediction with its nearest truth
    point (at x = 0.5, 0.5 away) and leave the second prediction, whose only
    candidate that is, unmatched; the optimal matching pairs both:

    >>> m = match_points([[0.0, 0.0], [1.4, 0.0]], [[0.5, 0.0], [-0.8, 0.0]], radius=1.0)
    >>> m.tp, m.pred_index.tolist(), m.truth_index.tolist()
    (2, [0, 1], [1, 0])
    """
    pred = _as_points(pred_xy, "pred_xy")
    truth = _as_points(truth_xy, "truth_xy")
    radius = float(radius)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius: expected a finite number >= 0, got {radius!r}")
    i, j, d = candidate_pairs(pred, truth, radius)
    pred_index, truth_index = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for pairs in _components(i, j, len(pred), len(truth)):
        rows, row_of = np.unique(i[pairs], return_inverse=True)
        cols, col_of = np.unique(j[pairs], return_inverse=True)
        distance = np.zeros((len(rows), len(cols)))
        candidate = np.zeros((len(rows), len(cols)), bool)
        distance[row_of, col_of] = d[pairs]
        candidate[row_of, col_of] = True
        r, c = _assign(distance, candidate)
        pred_index.append(rows[r])
        truth_index.append(cols[c])
    matched_pred, matched_truth = np.concatenate(pred_index), np.concatenate(truth_index)
    order = np.argsort(matched_pred, kind="stable")
    matched_pred, matched_truth = matched_pred[order], matched_truth[order]
    return Matches(
        pred_index=matched_pred,
        truth_index=matched_truth,
        distance=np.hypot(*(pred[matched_pred] - truth[matched_truth]).T),
        n_pred=len(pred),
        n_truth=len(truth),
        radius=radius,
    )


__all__ = ["Matches", "Score", "candidate_pairs", "combine_scores", "match_points"]


def match_boxes(points_rc: ArrayLike, boxes: ArrayLike) -> Score:
    """Score points against truth boxes: one to one, a point counting in a box it lies in.

    ``points_rc`` are (row, col) object centroids; ``boxes`` are
    ``(xmin, ymin, xmax, ymax)`` in pixel columns and rows, edges inclusive.
    The matching has the most pairs possible (a maximum bipartite matching).
    """
    points = _as_points(points_rc, "points_rc")
    box = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    row, col = points[:, :1], points[:, 1:]
    inside = (col >= box[:, 0]) & (col <= box[:, 2]) & (row >= box[:, 1]) & (row <= box[:, 3])
    tp = 0
    if inside.any():
        matched = maximum_bipartite_matching(csr_matrix(inside), perm_type="column")
        tp = int(np.count_nonzero(matched >= 0))
    return Score(tp, len(points) - tp, len(box) - tp)
