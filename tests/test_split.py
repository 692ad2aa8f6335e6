"""Watershed splitting: the kernel against the library calls, the tiled merge against the kernel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label
from skimage.segmentation import watershed

from tiler.kernels.split import reference_split, watershed_split
from tiler.split import (
    SplitTile,
    assign_core,
    identical_objects,
    split_in_memory,
    split_stride,
    split_tile,
)
from tiler.tiling import TileGrid, Window

SHAPE = (300, 400)
MAX_RADIUS = 12
OPTIONS = dict(min_distance=5, footprint=3, connectivity=2)


def touching_ellipses(seed: int, n: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """``n`` ellipses of semi-axes 3..12 px, most placed to touch or overlap an earlier one.

    Centres fall anywhere in the image, so some ellipses are cut by its border.
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape, sparse=True)
    mask = np.zeros(shape, bool)
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        a, b = rng.uniform(3, MAX_RADIUS, 2)
        if placed and rng.random() < 0.7:
            r, c, size = placed[rng.integers(len(placed))]
            angle = rng.uniform(0, 2 * np.pi)
            reach = (size + max(a, b)) * rng.uniform(0.7, 1.05)
            centre = (r + reach * np.sin(angle), c + reach * np.cos(angle))
        else:
            centre = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        mask |= ((rows - centre[0]) / a) ** 2 + ((cols - centre[1]) / b) ** 2 <= 1
        placed.append((*centre, max(a, b)))
    return mask


def by_hand(mask: np.ndarray, min_distance: int, footprint: int | None, connectivity: int):
    """The module docstring's calls, written out, with tied markers ordered in a plain loop."""
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance,
        min_distance=min_distance,
        footprint=np.ones((footprint, footprint), bool) if footprint else None,
        labels=label(mask, connectivity=connectivity),
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    flood = -distance
    tied: dict[float, list[tuple[int, int]]] = {}
    for r, c in sorted(map(tuple, peaks)):  # raster order
        tied.setdefault(flood[r, c], []).append((r, c))
    for value, positions in tied.items():
        for k, (r, c) in enumerate(positions):
            flood[r, c] = value - (len(positions) - 1 - k) * np.spacing(abs(value))
    labels = watershed(flood, markers, mask=mask, connectivity=connectivity)
    unmarked = label(mask & (labels == 0), connectivity=connectivity)
    labels[unmarked > 0] = unmarked[unmarked > 0] + len(peaks)
    return labels


def tiled(mask: np.ndarray, chunk: int | tuple[int, int], halo: int, **options):
    chunks = (chunk, chunk) if isinstance(chunk, int) else chunk
    return split_in_memory(mask, chunks, halo, **{**OPTIONS, **options})


def share_identical(mask: np.ndarray, chunk, halo: int) -> tuple[float, str]:
    """Share of reference objects the tiled run reproduces, and a message for assertions."""
    reference, n = reference_split(mask, **OPTIONS)
    result = tiled(mask, chunk, halo)
    share = identical_objects(reference, result.labels) / max(n, 1)
    return share, (
        f"chunk {chunk}, halo {halo}: {100 * share:.2f} % of {n} reference objects identical "
        f"({result.n} tiled; fallbacks IoU {result.fallback_iou}, own {result.fallback_own})"
    )


# ---------------------------------------------------------------------------
# The kernel is the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("footprint", [3, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_watershed_split_is_the_library_calls(seed, footprint, connectivity):
    mask = touching_ellipses(seed, 150)
    labels, n = watershed_split(mask, 5, footprint, connectivity)
    expected = by_hand(mask, 5, footprint, connectivity)
    np.testing.assert_array_equal(labels, expected)
    assert n == expected.max() > label(mask).max()  # touching ellipses were split


def test_reference_numbers_objects_by_first_pixel():
    mask = touching_ellipses(2, 150)
    labels, n = reference_split(mask, **OPTIONS)
    values, first = np.unique(labels, return_index=True)
    assert values.tolist() == list(range(n + 1))
    assert np.all(np.diff(first[1:]) > 0)
    same = identical_objects(labels, watershed_split(mask, **OPTIONS)[0])
    assert same == n


def test_far_objects_do_not_change_a_split():
    """What tiling relies on; scikit-image's own order of tied markers breaks it."""
    mask = touching_ellipses(3, 200)
    components = label(mask, connectivity=2)
    near = np.unique(components[:150, :200])
    kept = np.isin(components, near[near > 0])
    assert kept.sum() < mask.sum()
    whole, _ = watershed_split(mask, **OPTIONS)
    part, n = watershed_split(kept, **OPTIONS)
    assert identical_objects(part, np.where(kept, whole, 0)) == n


# ---------------------------------------------------------------------------
# Tiled against whole-image
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [37, 64, 100, (37, 100)])
@pytest.mark.parametrize("seed, n", [(4, 120), (5, 250)])
def test_tiled_split_agrees_with_the_reference(chunk, seed, n):
    mask = touching_ellipses(seed, n)
    share, message = share_identical(mask, chunk, halo=4 * MAX_RADIUS)  # 2 x the largest diameter
    assert share >= 0.99, message


def test_the_halo_matters():
    mask = touching_ellipses(6, 200)
    without, message_without = share_identical(mask, 64, halo=0)
    with_halo, message_with = share_identical(mask, 64, halo=4 * MAX_RADIUS)
    assert without < 0.9 and with_halo >= 0.99, f"{message_without}; {message_with}"


def test_tiled_split_is_deterministic_and_numbered_by_first_pixel():
    mask = touching_ellipses(7, 200)
    first, second = tiled(mask, 37, 24), tiled(mask, 37, 24)
    np.testing.assert_array_equal(first.labels, second.labels)
    values, first_pixel = np.unique(first.labels, return_index=True)
    assert values.tolist() == list(range(first.n + 1))
    assert np.all(np.diff(first_pixel[1:]) > 0)


@pytest.mark.parametrize("halo", [0, 5])
def test_one_tile_is_the_reference(halo):
    mask = touching_ellipses(8, 200)
    reference, n = reference_split(mask, **OPTIONS)
    result = tiled(mask, SHAPE, halo)
    assert result.n == n
    np.testing.assert_array_equal(result.labels, reference)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_empty_mask(chunk):
    mask = np.zeros((20, 30), bool)
    assert reference_split(mask, **OPTIONS)[1] == 0
    result = tiled(mask, chunk, 3)
    assert result.n == 0 and not result.labels.any()


def test_all_foreground_is_one_object():
    mask = np.ones((40, 50), bool)
    reference, n = reference_split(mask, **OPTIONS)
    assert n == 1 and reference.all()
    for chunk in [(40, 50), 16]:  # with the halo as large as the image, windows are the image
        np.testing.assert_array_equal(tiled(mask, chunk, 50).labels, reference)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_single_pixel_objects(chunk):
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = mask[4, 5] = mask[9, 9] = True  # corners of the image and of tiles
    reference, n = reference_split(mask, **OPTIONS)
    assert n == 3
    np.testing.assert_array_equal(tiled(mask, chunk, 2).labels, reference)
    assert reference_split(np.ones((1, 1), bool), **OPTIONS)[0].tolist() == [[1]]


def test_objects_cut_by_the_image_border():
    mask = np.zeros((80, 80), bool)
    rows, cols = np.indices(mask.shape)
    for r, c, radius in [(0, 20, 9), (0, 33, 8), (40, 0, 10), (79, 79, 11), (70, 79, 7)]:
        mask |= (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
    reference, n = reference_split(mask, **OPTIONS)
    assert n > label(mask).max()
    for chunk in [16, 30]:
        np.testing.assert_array_equal(tiled(mask, chunk, 24).labels, reference)


# ---------------------------------------------------------------------------
# The building blocks
# ---------------------------------------------------------------------------


def test_an_object_centred_on_a_core_boundary_has_one_owner():
    mask = np.zeros((16, 8), bool)
    mask[6:10, 2:6] = True  # centroid row 7.5: its floor, row 7, is in the upper tile
    whole = Window(0, 16, 0, 8)
    upper = split_tile(mask, whole, Window(0, 8, 0, 8), 0, mask.shape, **OPTIONS)
    lower = split_tile(mask, whole, Window(8, 16, 0, 8), 1, mask.shape, **OPTIONS)
    assert upper.centroid.tolist() == lower.centroid.tolist() == [[7.5, 3.5]]
    assert upper.anchor.tolist() == [[7, 3]]
    assert upper.owned.tolist() == [False, True] and lower.owned.tolist() == [False, False]


def test_neighbours_cover_the_halo():
    three, five = TileGrid((192, 192), (64, 64)), TileGrid((320, 320), (64, 64))
    assert len(three.neighbours(1, 1, 64)) == 8
    assert three.neighbours(0, 0, 10) == [(0, 1), (1, 0), (1, 1)]
    assert len(five.neighbours(2, 2, 65)) == 24
    assert three.neighbours(0, 0, 0) == []


def instance_tile(index: int, core, labels, anchors) -> SplitTile:
    """A hand-made window result covering the whole (tiny) image."""
    labels = np.asarray(labels, np.int32)
    area = np.bincount(labels.ravel())[1:]
    anchor = np.asarray(anchors, np.int64)
    return SplitTile(index, core, (0, 0), labels, area, anchor, anchor.astype(float))


LEFT, RIGHT = Window(0, 2, 0, 4), Window(0, 2, 4, 8)


def test_a_pixel_takes_the_owners_instance():
    b = instance_tile(0, LEFT, [[0, 1, 1, 1, 1, 1, 0, 0]] * 2, [[0, 4]])
    t = instance_tile(1, RIGHT, [[0, 2, 2, 1, 1, 1, 0, 0]] * 2, [[0, 5], [0, 1]])
    core = assign_core(b, [t], stride=100, image_shape=(2, 8))
    # B's instance is owned by T (anchor column 4); T says: its own 1 at columns 3..4,
    # and B's 2 at columns 1..2, which T does not own: those pixels fall back.
    assert core.provisional[0].tolist() == [0, 101, 101, 101]
    assert (core.fallback_iou, core.fallback_own) == (1, 0)


def test_without_an_owned_overlap_a_pixel_keeps_its_own_instance():
    b = instance_tile(0, LEFT, [[0, 1, 1, 1, 1, 1, 0, 0]] * 2, [[0, 4]])
    t = instance_tile(1, RIGHT, [[0, 2, 2, 2, 2, 2, 0, 1]] * 2, [[0, 7], [0, 1]])
    core = assign_core(b, [t], stride=100, image_shape=(2, 8))
    assert core.provisional[0].tolist() == [0, 1, 1, 1]
    assert (core.fallback_iou, core.fallback_own) == (0, 1)


def test_cropped_neighbours_give_the_same_result():
    mask = touching_ellipses(9, 60, (120, 120))
    shape, chunks, halo = mask.shape, (40, 40), 20
    tiles = {}
    for i in range(3):
        for j in range(3):
            core = Window(40 * i, 40 * i + 40, 40 * j, 40 * j + 40)
            outer = Window(max(40 * i - halo, 0), min(40 * i + 40 + halo, 120),
                           max(40 * j - halo, 0), min(40 * j + 40 + halo, 120))  # fmt: skip
            window = mask[outer.row_start : outer.row_stop, outer.col_start : outer.col_stop]
            tiles[i, j] = split_tile(window, outer, core, 3 * i + j, shape, **OPTIONS)
    centre = tiles[1, 1]
    others = [tiles[n] for n in TileGrid(shape, chunks).neighbours(1, 1, halo)]
    stride = split_stride(chunks, halo)
    full = assign_core(centre, others, stride=stride, image_shape=shape)
    cropped = assign_core(
        centre, [t.crop(centre.extent) for t in others], stride=stride, image_shape=shape
    )
    np.testing.assert_array_equal(full.provisional, cropped.provisional)
    assert all(t.crop(centre.extent).labels.size < t.labels.size for t in others)
