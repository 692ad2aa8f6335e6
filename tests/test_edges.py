"""Tiled Canny (tiler.kernels.edges): exact local masks, object-level hysteresis, tight reach."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.feature import _canny, canny

from tiler.kernels.edges import (
    canny_masks,
    canny_reach,
    component_has_strong,
    hysteresis_connectivity,
)
from tiler.kernels.label import Edges, label, tile_stats
from tiler.stitch import seam_pairs, stitch

SIGMAS = [0.5, 1.0, 2.0, 3.0]


def skimage_canny(x, valid, sigma, low, high) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.feature.canny`` and its internal thinned magnitude (caught on the way)."""
    thinned = []
    suppress = _canny._nonmaximum_suppression_bilinear

    def spy(*args):
        thinned.append(suppress(*args))
        return thinned[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_canny, "_nonmaximum_suppression_bilinear", spy)
        edges = canny(x, sigma, low, high, mask=valid)
    return edges, thinned[0]


def skimage_masks(x, valid, sigma, low, high) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's internal low and high masks of the whole image."""
    _, thinned = skimage_canny(x, valid, sigma, low, high)
    low_mask = thinned > 0
    # canny's own line: high_mask = low_mask & (low_masked >= high_threshold)
    return low_mask, low_mask & (thinned >= high)


def make_scene(seed: int, shape: tuple[int, int], invalid: str) -> tuple[np.ndarray, np.ndarray]:
    """Blobs and rectangles plus noise; optionally an invalid rectangle or blob (NaN there)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    x = 0.05 * rng.standard_normal(shape)
    for _ in range(rng.integers(1, 6)):
        r, c = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        size = rng.uniform(1, 12)
        x += rng.uniform(-1, 1) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * size**2))
        x[int(r) : int(r + size), int(c) : int(c + size)] += rng.uniform(-1, 1)
    valid = np.ones(shape, dtype=bool)
    if invalid == "rectangle":
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        valid[r : r + rng.integers(1, 30), c : c + rng.integers(1, 30)] = False
    elif invalid == "blob":
        valid = ndi.gaussian_filter(rng.random(shape), 3) < 0.52
    x[~valid] = np.nan
    return x, valid


@st.composite
def cuts(draw, n: int) -> list[int]:
    """Tile boundaries ``0 = b0 < b1 < ... = n`` (adjacent cuts make 1-pixel tiles)."""
    inner = draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6)) if n > 1 else []
    return [0, *sorted(set(inner)), n]


@st.composite
def cases(draw):
    shape = (draw(st.integers(1, 80)), draw(st.integers(1, 80)))
    invalid = draw(st.sampled_from(["none", "rectangle", "blob"]))
    x, valid = make_scene(draw(st.integers(0, 2**32 - 1)), shape, invalid)
    sigma = draw(st.sampled_from(SIGMAS))
    _, thinned = skimage_canny(x, valid, sigma, 0.0, 0.0)
    magnitudes = thinned[thinned > 0]  # exact magnitudes of the local maxima
    low, high = draw(thresholds(magnitudes))
    return x, valid, sigma, low, high, draw(cuts(shape[0])), draw(cuts(shape[1]))


@st.composite
def thresholds(draw, magnitudes: np.ndarray) -> tuple[float, float]:
    """(low, high): fractions of the largest magnitude, 0, or magnitudes themselves (ties)."""
    top = float(magnitudes.max()) if magnitudes.size else 1.0

    def one() -> float:
        kind = draw(st.sampled_from(["fraction", "zero", "tie"]))
        if kind == "tie" and magnitudes.size:
            return float(magnitudes[draw(st.integers(0, magnitudes.size - 1))])
        return 0.0 if kind == "zero" else draw(st.floats(0, 1)) * top

    return tuple(sorted((one(), one())))


def pairs(bounds: list[int]) -> list[tuple[int, int]]:
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def window(
    shape: tuple[int, int], core: tuple[int, int, int, int], reach: int
) -> tuple[slice, ...]:
    """The core ``(r0, r1, c0, c1)`` grown by ``reach`` and clipped to the image."""
    r0, r1, c0, c1 = core
    return (
        slice(max(r0 - reach, 0), min(r1 + reach, shape[0])),
        slice(max(c0 - reach, 0), min(c1 + reach, shape[1])),
    )


def tiled_masks(x, valid, rows, cols, reach, **params) -> tuple[np.ndarray, np.ndarray]:
    """Each core's masks computed from its window grown by ``reach``, put together."""
    low_mask, high_mask = np.zeros((2, *x.shape), dtype=bool)
    for r0, r1 in pairs(rows):
        for c0, c1 in pairs(cols):
            win = window(x.shape, (r0, r1, c0, c1), reach)
            low, high = canny_masks(x[win], valid[win], **params)
            core = (slice(r0 - win[0].start, r1 - win[0].start),)
            core += (slice(c0 - win[1].start, c1 - win[1].start),)
            low_mask[r0:r1, c0:c1] = low[core]
            high_mask[r0:r1, c0:c1] = high[core]
    return low_mask, high_mask


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_tiled_masks_equal_skimages_internal_masks(case):
    x, valid, sigma, low, high, rows, cols = case
    low_ref, high_ref = skimage_masks(x, valid, sigma, low, high)
    params = {"sigma": sigma, "low": low, "high": high}
    whole = canny_masks(x, valid, **params)
    np.testing.assert_array_equal(whole[0], low_ref)
    np.testing.assert_array_equal(whole[1], high_ref)
    tiled = tiled_masks(x, valid, rows, cols, canny_reach(sigma), **params)
    np.testing.assert_array_equal(tiled[0], low_ref)
    np.testing.assert_array_equal(tiled[1], high_ref)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_one_pixel_tiles(sigma):
    x, valid = make_scene(7, (23, 19), "rectangle")
    params = {"sigma": sigma, "low": 0.02, "high": 0.1}
    low_ref, high_ref = skimage_masks(x, valid, **params)
    assert low_ref.any()
    low, high = tiled_masks(
        x, valid, list(range(24)), list(range(20)), canny_reach(sigma), **params
    )
    np.testing.assert_array_equal(low, low_ref)
    np.testing.assert_array_equal(high, high_ref)


def hysteresis_whole(low_mask: np.ndarray, high_mask: np.ndarray) -> np.ndarray:
    structure = ndi.generate_binary_structure(2, hysteresis_connectivity)
    labels, n = ndi.label(low_mask, structure)
    keep = np.r_[False, component_has_strong(labels, n, high_mask)]
    return keep[labels]


def hysteresis_tiled(
    low_mask: np.ndarray, high_mask: np.ndarray, rows: list[int], cols: list[int]
) -> np.ndarray:
    """Hysteresis as the engine would do it: tile labels, seams, stitch, OR of the flags."""
    tiles = [(r0, r1, c0, c1) for r0, r1 in pairs(rows) for c0, c1 in pairs(cols)]
    stride = max((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in tiles) + 1
    labelled = [label(low_mask[r0:r1, c0:c1], hysteresis_connectivity) for r0, r1, c0, c1 in tiles]
    stats = [
        tile_stats(lab, n, (t[0], t[2]), low_mask.shape)
        for t, (lab, n) in zip(tiles, labelled, strict=True)
    ]
    flags = np.concatenate(
        [
            component_has_strong(lab, n, high_mask[r0:r1, c0:c1])
            for (r0, r1, c0, c1), (lab, n) in zip(tiles, labelled, strict=True)
        ]
    )
    n_cols = len(cols) - 1
    edges = [(i, Edges.of(lab)) for i, (lab, _) in enumerate(labelled)]

    def neighbour(i: int, down: int, right: int):
        r, c = divmod(i, n_cols)
        inside = r + down < len(rows) - 1 and c + right < n_cols
        return edges[i + down * n_cols + right] if inside else None

    seams = [
        seam_pairs(
            edges[i],
            neighbour(i, 0, 1),
            neighbour(i, 1, 0),
            neighbour(i, 1, 1),
            stride=stride,
            connectivity=hysteresis_connectivity,
        )
        for i in range(len(tiles))
    ]
    objects = stitch(stats, seams, stride)
    strong = np.zeros(objects.n_objects, dtype=bool)
    strong[objects.object_of[flags]] = True
    out = np.zeros(low_mask.shape, dtype=bool)
    for i, ((r0, r1, c0, c1), (lab, _)) in enumerate(zip(tiles, labelled, strict=True)):
        out[r0:r1, c0:c1] = objects.tile_lut(i, strong, background=False)[lab]
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_hysteresis_over_components_reproduces_canny(case):
    x, valid, sigma, low, high, rows, cols = case
    expected, _ = skimage_canny(x, valid, sigma, low, high)
    params = {"sigma": sigma, "low": low, "high": high}
    low_mask, high_mask = tiled_masks(x, valid, rows, cols, canny_reach(sigma), **params)
    np.testing.assert_array_equal(hysteresis_whole(low_mask, high_mask), expected)
    np.testing.assert_array_equal(hysteresis_tiled(low_mask, high_mask, rows, cols), expected)


def step_with_far_pixel(reach: int) -> tuple[np.ndarray, int]:
    """A vertical step between columns e and e + 1, and a brighter column at e + reach.

    Without that column the two columns of the step tie in gradient magnitude.
    With it, column e + 1 is slightly stronger, so column e is suppressed: a
    pixel ``reach`` columns away decides whether column e is an edge.
    """
    e = reach + 2
    x = np.zeros((2 * reach + 5, e + 2 * reach + 3))
    x[:, e + 1 :] = 1.0
    x[:, e + reach] = 2.0
    return x, e


@pytest.mark.parametrize(("sigma", "reach"), [(0.5, 4), (1.0, 6), (2.0, 10), (3.0, 14)])
def test_reach_is_tight(sigma, reach):
    assert canny_reach(sigma) == reach
    x, e = step_with_far_pixel(reach)
    valid = np.ones(x.shape, dtype=bool)
    params = {"sigma": sigma, "low": 0.0, "high": 0.0}
    reference, _ = skimage_masks(x, valid, **params)
    middle = x.shape[0] // 2
    assert not reference[middle, e] and reference[middle, e + 1]
    rows, cols = [0, x.shape[0]], [0, e + 1, x.shape[1]]
    short, _ = tiled_masks(x, valid, rows, cols, reach - 1, **params)
    assert short[middle, e]
    exact, _ = tiled_masks(x, valid, rows, cols, reach, **params)
    np.testing.assert_array_equal(exact, reference)


def test_low_threshold_is_applied_in_float32():
    # A step between columns 5 and 6: both columns are maxima of magnitude m,
    # just below 4 (smoothing divides by 1 + eps), so float32(m) == 4 > m.
    x = np.zeros((9, 12))
    x[:, 6:] = 1.0
    valid = np.ones(x.shape, dtype=bool)
    m = skimage_canny(x, valid, 0.0, 0.0, 0.0)[1][4, 5]
    below = float(np.nextafter(np.float32(m), np.float32(0)))
    kept = {
        t: bool(canny_masks(x, valid, sigma=0.0, low=t, high=t)[0][4, 5])
        for t in (m, float(np.nextafter(m, 0)), below)
    }
    assert kept == {t: bool(m >= np.float32(t)) for t in kept}
    assert kept == {m: False, float(np.nextafter(m, 0)): False, below: True}
    _, high_mask = canny_masks(x, valid, sigma=0.0, low=below, high=m)
    assert high_mask[4, 5]  # high is compared in float64


@pytest.mark.parametrize(("sigma", "reach"), [(0.0, 2), (1.1, 6), (1.125, 7), (0.375, 4)])
def test_reach_formula(sigma, reach):
    assert canny_reach(sigma) == reach


def test_rejects_bad_parameters():
    with pytest.raises(ValueError, match="sigma"):
        canny_reach(-1.0)
    with pytest.raises(ValueError, match="above the high"):
        canny_masks(np.zeros((3, 3)), np.ones((3, 3), bool), sigma=1.0, low=0.2, high=0.1)


def test_component_has_strong():
    labels = np.array([[1, 1, 0, 2], [0, 3, 0, 2]])
    high = np.array([[False, True, False, False], [False, False, False, True]])
    assert component_has_strong(labels, 3, high).tolist() == [True, True, False]
    assert component_has_strong(labels[:0], 0, high[:0]).shape == (0,)
