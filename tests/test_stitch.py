"""Unit tests of the seam and merge logic (the property tests cover it end to end)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from tiler.kernels.label import Edges, TileStats
from tiler.stitch import renumber, seam_pairs, stitch


def edges(top=(), bottom=(), left=(), right=()) -> Edges:
    return Edges(*(np.asarray(x, dtype=np.int32) for x in (top, bottom, left, right)))


def test_facing_pixels_pair_under_4_connectivity():
    a = edges(bottom=[1, 0, 2], right=[0, 0])
    below = edges(top=[3, 3, 0])
    pairs = seam_pairs((0, a), None, (1, below), None, stride=10, connectivity=1)
    assert pairs.tolist() == [[1, 13]]


def test_diagonals_pair_under_8_connectivity():
    a = edges(bottom=[1, 0, 2])
    below = edges(top=[0, 3, 0])
    pairs = seam_pairs((0, a), None, (1, below), None, stride=10, connectivity=2)
    assert pairs.tolist() == [[1, 13], [2, 13]]
    assert seam_pairs((0, a), None, (1, below), None, stride=10, connectivity=1).tolist() == []


def test_four_tile_corners_pair_only_under_8_connectivity():
    # 2x2 pixels around a four-tile corner; only the diagonal pixels are set.
    #   tile 0 | tile 1        5 | 0
    #   -------+-------        --+--
    #   tile 2 | tile 3        0 | 9
    t0, t1 = edges(bottom=[0, 5], right=[0, 5]), edges(bottom=[0, 0], left=[0, 0])
    t2, t3 = edges(top=[0, 0], right=[0, 0]), edges(top=[9, 0], left=[9, 0])
    pairs = seam_pairs((0, t0), (1, t1), (2, t2), (3, t3), stride=100, connectivity=2)
    assert pairs.tolist() == [[5, 309]]
    assert seam_pairs((0, t0), (1, t1), (2, t2), (3, t3), stride=100, connectivity=1).size == 0
    # The anti-diagonal: tile 1's bottom-left pixel and tile 2's top-right one.
    t0, t1 = edges(bottom=[0, 0], right=[0, 0]), edges(bottom=[7, 0], left=[0, 7])
    t2, t3 = edges(top=[0, 8], right=[0, 8]), edges(top=[0, 0], left=[0, 0])
    pairs = seam_pairs((0, t0), (1, t1), (2, t2), (3, t3), stride=100, connectivity=2)
    assert pairs.tolist() == [[107, 208]]


def test_everything_around_a_corner():
    t0, t1 = edges(bottom=[0, 5], right=[0, 5]), edges(bottom=[7, 0], left=[0, 7])
    t2, t3 = edges(top=[0, 8], right=[0, 8]), edges(top=[9, 0], left=[9, 0])
    pairs = seam_pairs((0, t0), (1, t1), (2, t2), (3, t3), stride=100, connectivity=2)
    assert pairs.tolist() == [[5, 107], [5, 208], [5, 309], [107, 208]]
    pairs = seam_pairs((0, t0), (1, t1), (2, t2), (3, t3), stride=100, connectivity=1)
    assert pairs.tolist() == [[5, 107], [5, 208]]


def test_provisional_ids_of_huge_images_do_not_overflow():
    stride = 4096 * 4096 + 1
    index = 98 * 98 - 2  # the last tiles of a 200 000 px square in 4096 px tiles
    t0 = edges(bottom=[0, 2**31 - 1], right=[0, 1])
    t3 = edges(top=[1, 0])
    pairs = seam_pairs((index, t0), None, None, (index + 1, t3), stride=stride, connectivity=2)
    assert pairs.dtype == np.uint64
    assert pairs.tolist() == [[index * stride + 2**31 - 1, (index + 1) * stride + 1]]


def stats(*rows) -> TileStats:
    """TileStats from rows of (count, sum_row, sum_col, min/max row/col, first, border[, flag])."""
    rows = [row if len(row) == 10 else (*row, 0) for row in rows]
    columns = np.array(rows, dtype=np.int64).reshape(-1, 10).T
    return TileStats(*columns)


def test_stitch_merges_statistics_and_numbers_by_first_pixel():
    # Tile 0: labels 1, 2; tile 1: label 1 joins tile 0's label 2.
    t0 = stats((3, 3, 6, 0, 1, 1, 3, 1, 1), (2, 10, 2, 5, 1, 5, 1, 51, 0))
    t1 = stats((4, 26, 4, 6, 1, 7, 1, 61, 0, 1))  # flagged: the merged object is
    result = stitch([t0, t1], [np.array([[2, 11]], dtype=np.uint64)], stride=10)
    assert result.n_objects == 2
    assert result.stats["count"].tolist() == [3, 6]
    assert result.stats["sum_row"].tolist() == [3, 36]
    assert result.stats["min_row"].tolist() == [0, 5]
    assert result.stats["max_row"].tolist() == [1, 7]
    assert result.stats["first"].tolist() == [1, 51]
    assert result.stats["border"].tolist() == [1, 0]
    assert result.stats["flag"].tolist() == [0, 1]
    assert result.tile_lut(0, np.array([10, 20])).tolist() == [0, 10, 20]
    assert result.tile_lut(1, np.array([10, 20])).tolist() == [0, 20]


def test_stitch_of_nothing():
    result = stitch([TileStats.empty(), TileStats.empty()], [], stride=5)
    assert result.n_objects == 0
    assert result.tile_lut(1, np.zeros(0, dtype=np.int64)).tolist() == [0]


def test_renumber_keeps_order():
    assert renumber(np.array([True, False, True, True])).tolist() == [1, 0, 2, 3]


def dotted_tiles(n_tiles: int, per_tile: int, width: int) -> tuple[list[TileStats], list]:
    """Tiles in one row of ``per_tile`` one-pixel objects each, as the label tasks send them;
    the last label of each tile is joined to the first of the next across the seam."""
    tiles = []
    for t in range(n_tiles):
        first = np.arange(per_tile, dtype=np.int64) * 7 + t * 3
        row, col = np.divmod(first, width)
        ones = np.ones(per_tile, dtype=np.int64)
        tiles.append(TileStats(ones, row, col, row, col, row, col, first, 0 * ones, 0 * ones))
    stride = per_tile + 1
    pairs = [
        np.array([[t * stride + per_tile, (t + 1) * stride + 1]], dtype=np.uint64)
        for t in range(n_tiles - 1)
    ]
    return [tile.compact() for tile in tiles], pairs


def test_stitch_that_releases_the_tiles_gives_the_same_objects():
    tiles, pairs = dotted_tiles(5, 40, 97)
    kept = stitch(list(tiles), pairs, stride=41)
    released = list(tiles)
    result = stitch(released, pairs, stride=41, release=True)
    assert released == [None] * 5
    assert result.n_objects == kept.n_objects == 5 * 40 - 4
    np.testing.assert_array_equal(result.object_of, kept.object_of)
    for name, values in kept.stats.items():
        np.testing.assert_array_equal(result.stats[name], values, err_msg=name)


def test_stitch_memory_per_object():
    """What stitching allocates in the driver beyond the tiles' statistics, per object: what it
    keeps (the objects' statistics, 34 bytes here as all fit in int32 and the flags in int8,
    and 4 bytes of object index per label: 38 measured; 88 before) and, at its peak, less
    than 30 bytes more (2 measured; 312 in all before it gathered tile by tile)."""
    n_tiles, per_tile = 20, 20_000
    tiles, pairs = dotted_tiles(n_tiles, per_tile, 10**6)
    tracemalloc.start()
    try:
        result = stitch(tiles, pairs, stride=per_tile + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    n = result.n_objects
    kept = sum(v.nbytes for v in result.stats.values()) + result.object_of.nbytes
    assert kept / n < 40
    assert peak / n < kept / n + 30, peak / n
