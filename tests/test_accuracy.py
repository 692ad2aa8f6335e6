"""The point matcher and scores of tiler.accuracy, and the accuracy harness on one NAIP tile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio.transform
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

import tiler
from tiler import presets
from tiler.accuracy import Score, combine_scores, match_points
from tiler.synthetic import SyntheticField

ROOT = Path(__file__).resolve().parents[1]
NAIP = Path(__file__).parent / "data" / "urban_trees_naip"


def greedy_count(pred: np.ndarray, truth: np.ndarray, radius: float) -> int:
    """Greedy nearest matching: take the closest free pair within the radius, repeatedly."""
    d = np.hypot(*(pred[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    pairs = sorted((d[i, j], i, j) for i, j in zip(*np.nonzero(d <= radius), strict=True))
    used_pred, used_truth = set(), set()
    for _, i, j in pairs:
        if i not in used_pred and j not in used_truth:
            used_pred.add(i)
            used_truth.add(j)
    return len(used_pred)


def best_matching(pred: np.ndarray, truth: np.ndarray, radius: float) -> tuple[int, float]:
    """Brute force over every matching: (largest size, smallest total distance at that size)."""
    d = np.hypot(*(pred[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    best = (0, 0.0)

    def extend(i: int, used: frozenset[int], size: int, total: float) -> None:
        nonlocal best
        if i == len(pred):
            if size > best[0] or (size == best[0] and total < best[1]):
                best = (size, total)
            return
        extend(i + 1, used, size, total)
        for j in range(len(truth)):
            if j not in used and d[i, j] <= radius:
                extend(i + 1, used | {j}, size + 1, total + d[i, j])

    extend(0, frozenset(), 0, 0.0)
    return best


# ---------------------------------------------------------------------------
# Hand-built cases
# ---------------------------------------------------------------------------


def test_optimal_matching_finds_more_pairs_than_greedy():
    # p0 is nearest to t0 (0.5 away), but t0 is p1's only candidate; p0 can
    # take t1 (0.8 away) instead.
    pred = np.array([[0.0, 0.0], [1.4, 0.0]])
    truth = np.array([[0.5, 0.0], [-0.8, 0.0]])
    assert greedy_count(pred, truth, 1.0) == 1
    m = match_points(pred, truth, radius=1.0)
    assert m.tp == 2
    assert m.pred_index.tolist() == [0, 1]
    assert m.truth_index.tolist() == [1, 0]
    np.testing.assert_allclose(m.distance, [0.8, 0.9])


def test_among_maximum_matchings_the_total_distance_is_smallest():
    # Both pairings match two; the crossed one is 0.2 + 0.2 against 0.8 + 0.8.
    pred = np.array([[0.0, 0.0], [1.0, 0.0]])
    truth = np.array([[0.8, 0.0], [0.2, 0.0]])
    m = match_points(pred, truth, radius=1.0)
    assert m.truth_index.tolist() == [1, 0]
    np.testing.assert_allclose(m.distance, [0.2, 0.2])


def test_a_pair_exactly_at_the_radius_matches():
    # 3-4-5: hypot is exactly 5.
    assert match_points([[0.0, 0.0]], [[3.0, 4.0]], radius=5.0).tp == 1
    assert match_points([[0.0, 0.0]], [[3.0, 0.0]], radius=3.0).tp == 1
    just_beyond = np.nextafter(3.0, np.inf)
    assert match_points([[0.0, 0.0]], [[just_beyond, 0.0]], radius=3.0).tp == 0


def test_radius_zero_matches_coincident_points_only():
    m = match_points([[1.0, 2.0], [5.0, 5.0]], [[1.0, 2.0], [5.0, 5.5]], radius=0.0)
    assert (m.tp, m.pred_index.tolist(), m.distance.tolist()) == (1, [0], [0.0])


def test_map_coordinates_far_from_the_origin():
    # UTM-sized coordinates: the matching is about distances, not magnitudes.
    pred = np.array([[595053.0, 4403563.0], [595060.0, 4403563.0]])
    truth = pred + [[2.9, 0.0], [0.0, 3.1]]
    m = match_points(pred, truth, radius=3.0)
    assert m.pred_index.tolist() == [0]
    assert m.distance[0] == pytest.approx(2.9)


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        # (tp, fp, fn, precision, recall, f1, count_error)
        ([], [], (0, 0, 0, 1.0, 1.0, 1.0, 0.0)),
        ([], [[0.0, 0.0], [5.0, 5.0]], (0, 0, 2, 1.0, 0.0, 0.0, -1.0)),
        ([[0.0, 0.0]], [], (0, 1, 0, 0.0, 1.0, 0.0, math.inf)),
        ([[0.0, 0.0]], [[9.0, 9.0]], (0, 1, 1, 0.0, 0.0, 0.0, 0.0)),
    ],
)
def test_empty_and_disjoint_sets(pred, truth, expected):
    m = match_points(pred, truth, radius=1.0)
    s = m.score()
    got = (s.tp, s.fp, s.fn, s.precision, s.recall, s.f1, s.count_error)
    assert got == expected
    assert m.pred_index.shape == m.truth_index.shape == m.distance.shape == (0,)
    assert math.isnan(s.mean_distance)


def test_empty_arrays_of_any_empty_shape():
    for empty in ([], np.zeros((0, 2)), np.zeros(0)):
        assert match_points(empty, [[1.0, 1.0]], radius=1.0).score().fn == 1


@pytest.mark.parametrize(
    ("pred", "truth", "radius", "message"),
    [
        ([[0.0, 0.0, 0.0]], [], 1.0, "pred_xy: expected an"),
        ([], [[0.0, math.nan]], 1.0, "truth_xy: coordinates must be finite"),
        ([], [], -1.0, "radius"),
        ([], [], math.inf, "radius"),
    ],
)
def test_bad_input_is_refused(pred, truth, radius, message):
    with pytest.raises(ValueError, match=message):
        match_points(pred, truth, radius)


def test_score_measures():
    s = Score(tp=6, fp=2, fn=4, sum_distance=3.0)
    assert (s.n_pred, s.n_truth) == (8, 10)
    assert s.precision == 6 / 8
    assert s.recall == 6 / 10
    assert s.f1 == pytest.approx(2 * s.precision * s.recall / (s.precision + s.recall))
    assert s.count_error == pytest.approx(-0.2)
    assert s.mean_distance == 0.5
    assert s.to_dict()["f1"] == s.f1


def test_score_refuses_negative_or_fractional_counts():
    with pytest.raises(ValueError, match="fp"):
        Score(tp=1, fp=-1, fn=0)
    with pytest.raises(ValueError, match="tp"):
        Score(tp=1.5, fp=0, fn=0)


def test_combine_sums_counts_then_computes():
    parts = [Score(3, 1, 0, 1.5), Score(0, 0, 5), Score(1, 4, 1, 0.5)]
    total = combine_scores(parts)
    assert (total.tp, total.fp, total.fn, total.sum_distance) == (4, 5, 6, 2.0)
    assert total.precision == 4 / 9  # not the mean of the per-tile precisions
    assert combine_scores([]) == Score(0, 0, 0)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

# Integer grids put many pairs exactly at the radius (1, 2, 3, 5) and make ties.
points = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=6).map(
    lambda p: np.asarray(p, dtype=np.float64).reshape(-1, 2)
)
radii = st.sampled_from([0.0, 1.0, 1.5, 2.0, 3.0, 5.0])


@settings(max_examples=300, deadline=None)
@given(pred=points, truth=points, radius=radii)
def test_matching_is_valid_and_maximum(pred, truth, radius):
    m = match_points(pred, truth, radius)
    s = m.score()
    assert s.tp <= min(len(pred), len(truth))
    assert s.tp + s.fp == len(pred) and s.tp + s.fn == len(truth)
    assert len(set(m.pred_index.tolist())) == len(set(m.truth_index.tolist())) == m.tp
    np.testing.assert_array_equal(
        m.distance, np.hypot(*(pred[m.pred_index] - truth[m.truth_index]).T)
    )
    assert (m.distance <= radius).all()

    # Maximum cardinality, by scipy's bipartite matching on the candidate graph.
    d = np.hypot(*(pred[:, None, :] - truth[None, :, :]).transpose(2, 0, 1))
    graph = csr_matrix((d <= radius).reshape(len(pred), len(truth)).astype(np.int8))
    maximum = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
    assert m.tp == maximum

    # And, by brute force, the smallest total distance among maximum matchings.
    size, total = best_matching(pred, truth, radius)
    assert size == maximum
    assert m.distance.sum() == pytest.approx(total, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(tiles=st.lists(st.tuples(points, points), min_size=1, max_size=4), radius=radii)
def test_combining_tiles_equals_matching_their_union(tiles, radius):
    # Tiles placed 100 apart cannot match across each other.
    offsets = [np.array([100.0 * k, 0.0]) for k in range(len(tiles))]
    union_pred = np.concatenate([p + o for (p, _), o in zip(tiles, offsets, strict=True)])
    union_truth = np.concatenate([t + o for (_, t), o in zip(tiles, offsets, strict=True)])
    combined = combine_scores(match_points(p, t, radius).score() for p, t in tiles)
    union = match_points(union_pred, union_truth, radius).score()
    assert (combined.tp, combined.fp, combined.fn) == (union.tp, union.fp, union.fn)
    assert combined.sum_distance == pytest.approx(union.sum_distance)


# ---------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------


@pytest.fixture
def harness(monkeypatch):
    """``benchmarks.accuracy``, importable however pytest was started."""
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.accuracy

    return benchmarks.accuracy


def test_field_truth_is_at_pixel_centres_in_map_coordinates(harness):
    field = SyntheticField(height=300, width=400, seed=3)
    rows, cols = field.plant_centres().T
    x, y = rasterio.transform.xy(field.transform, rows, cols, offset="center")
    np.testing.assert_allclose(harness.field_truth_points(field), np.column_stack([x, y]))


def test_naip_tile_scores_every_truth_point_and_object(harness, tmp_path):
    # bishop_2020_3 has band 4 (NIR) tagged as alpha.
    tif = NAIP / "bishop_2020_3.tif"
    truth = NAIP / "json" / "bishop_2020_3.json"
    features = json.loads(truth.read_text())["features"]
    n_truth = sum(f["geometry"]["type"] == "Point" for f in features)

    pipeline = presets.load("tree-crowns-classical")
    result = harness.score_naip_tile(tif, truth, pipeline, tmp_path)
    s = result.score
    n_objects = len(tiler.read_objects(result.dst))

    assert n_truth > 0 and n_objects > 0
    assert s.tp + s.fn == s.n_truth == n_truth
    assert s.tp + s.fp == s.n_pred == n_objects
    assert 0 < s.tp <= min(n_truth, n_objects)
    assert 0.0 <= s.mean_distance <= harness.NAIP_RADIUS_M
    assert result.notes and "band 4 is tagged alpha" in result.notes[0]


def test_every_naip_tile_has_its_truth(harness):
    pairs = harness.naip_tiles()
    assert len(pairs) == 8
    assert all(truth.stem == tif.stem for tif, truth in pairs)
