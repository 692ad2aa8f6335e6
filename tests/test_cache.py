"""The Otsu value cache: memory or files, and a miss only costs time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import run_tiled

from tiler import cache
from tiler.config import load_pipeline
from tiler.io.raster import ArraySource
from tiler.tiling import Window
from tiler.values import cache_values, cached_values


@pytest.fixture(params=["memory", "directory"])
def store(request, tmp_path):
    name = cache.memory_cache() if request.param == "memory" else str(tmp_path)
    yield name
    cache.drop(name)


def test_put_get_drop(store):
    window = Window(0, 3, 5, 9)
    values, valid = np.arange(12.0).reshape(3, 4), np.eye(3, 4, dtype=bool)
    assert cache.get(store, window) is None
    cache.put(store, window, values, valid)
    got_values, got_valid = cache.get(store, window)
    np.testing.assert_array_equal(got_values, values)
    np.testing.assert_array_equal(got_valid, valid)
    assert cache.get(store, Window(0, 3, 5, 8)) is None
    cache.drop(store)
    assert cache.get(store, window) is None


def test_a_miss_recomputes_the_same_values(store):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, (3, 40, 50)).astype(np.uint8)
    valid = rng.random((40, 50)) > 0.1
    source = ArraySource(image, valid)
    pipeline = load_pipeline().resolve_bands(3)
    window = Window(10, 30, 20, 50)
    lo, hi, n = cache_values(source, pipeline, window, 3, store)
    outer = Window(7, 33, 17, 50)
    cached = cache.get(store, outer)
    assert cached is not None
    assert n == valid[10:30, 20:50].sum()
    assert lo == cached[0][3:23, 3:][valid[10:30, 20:50]].min()
    assert hi == cached[0][3:23, 3:][valid[10:30, 20:50]].max()
    cache.drop(store)
    again = cached_values(source, pipeline, outer, store)
    np.testing.assert_array_equal(again[0], cached[0])
    np.testing.assert_array_equal(again[1], cached[1])


def test_the_none_cache_keeps_nothing():
    window = Window(0, 2, 0, 2)
    cache.put(cache.NONE, window, np.zeros((2, 2)), np.ones((2, 2), bool))
    assert cache.get(cache.NONE, window) is None
    cache.drop(cache.NONE)


@dataclass(frozen=True, eq=False)
class CountingSource(ArraySource):
    """An in-memory raster that counts the windows read from it."""

    reads: list = field(default_factory=list)

    def read(self, bands, window):
        self.reads.append(window)
        return super().read(bands, window)


@pytest.mark.parametrize(
    ("kind", "reads_per_tile"),
    [
        ("memory", 1),
        ("directory", 1),
        ("codes", 2),
        ("codes+memory", 1),
        ("codes+pixels", 1),
        ("none", 3),
    ],
)
def test_how_often_each_kind_reads_the_raster(kind, reads_per_tile):
    """Values are read once, and so are the pixels that codes are made from if kept."""
    rng = np.random.default_rng(9)
    image = rng.integers(0, 255, (3, 30, 44)).astype(np.uint8)
    source = CountingSource(image, rng.random((30, 44)) > 0.1)
    pipeline = load_pipeline().resolve_bands(3)  # ExG, Gaussian, Otsu, closing, opening
    reference = run_tiled(ArraySource(image, source.valid), pipeline, (8, 16))[0]
    labels, _, _ = run_tiled(source, pipeline, (8, 16), cache_kind=kind)
    np.testing.assert_array_equal(labels, reference)
    assert len(source.reads) == reads_per_tile * 4 * 3


def test_codes_are_kept_compressed_and_dropped(tmp_path):
    name = cache.codes_cache(tmp_path / "codes")
    cache.prepare(name)
    window = Window(2, 5, 0, 4)
    codes = np.arange(12, dtype=np.uint16).reshape(3, 4)
    cache.put(name, window, np.zeros((3, 4)), np.ones((3, 4), bool))
    assert cache.get(name, window) is None  # a codes cache keeps no values
    assert cache.get_codes(name, window) is None
    cache.put_codes(name, window, codes)
    np.testing.assert_array_equal(cache.get_codes(name, window), codes)
    assert not list((tmp_path / "codes").glob("*.partial"))
    cache.drop(name)
    assert not (tmp_path / "codes").exists()
    assert cache.get_codes(name, window) is None


@pytest.mark.parametrize("kind", ["directory", "codes"])
def test_concurrent_writers_of_one_window(kind, tmp_path):
    """Tiles smaller than the halo grow into the same window; their writes must not collide."""
    name = str(tmp_path / "v") if kind == "directory" else cache.codes_cache(tmp_path / "c")
    cache.prepare(name)
    window = Window(0, 1, 0, 2)
    values, valid = np.ones((1, 2)), np.ones((1, 2), bool)
    codes = np.array([[3, 4]], dtype=np.uint16)

    def write(_):
        cache.put(name, window, values, valid)
        cache.put_codes(name, window, codes)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(200)))
    if kind == "directory":
        np.testing.assert_array_equal(cache.get(name, window)[0], values)
    else:
        np.testing.assert_array_equal(cache.get_codes(name, window), codes)
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.parametrize("memory", [0, 600, 1 << 20])
def test_pixels_kept_in_memory_then_files_and_dropped(memory, tmp_path):
    """Pixels go to memory up to the budget, then to files; drop_pixels frees both, not codes."""
    name = cache.codes_cache(tmp_path / "codes", memory=memory, files=True)
    cache.prepare(name)
    rng = np.random.default_rng(3)
    tiles = {
        Window(0, 10, 10 * k, 10 * k + 10): (
            rng.integers(0, 255, (3, 10, 10), dtype=np.uint8),
            rng.random((10, 10)) > 0.3,
        )
        for k in range(3)
    }
    for window, (image, valid) in tiles.items():
        cache.put_pixels(name, window, image, valid)
    for window, (image, valid) in tiles.items():
        got_image, got_valid = cache.get_pixels(name, window)
        np.testing.assert_array_equal(got_image, image)
        np.testing.assert_array_equal(got_valid, valid)
    files = len(list((tmp_path / "codes").glob("*.pixels")))
    assert files == {0: 3, 600: 2, 1 << 20: 0}[memory]  # a tile is 400 bytes
    cache.put_codes(name, Window(0, 1, 0, 1), np.ones((1, 1), np.uint16))
    cache.drop_pixels(name)
    assert all(cache.get_pixels(name, w) is None for w in tiles)
    assert cache.get_codes(name, Window(0, 1, 0, 1)) is not None
    assert not list((tmp_path / "codes").glob("*.pixels"))
    cache.drop(name)


def test_other_caches_keep_no_pixels(tmp_path):
    for name in (cache.memory_cache(), str(tmp_path), cache.NONE):
        cache.put_pixels(name, Window(0, 1, 0, 1), np.ones((3, 1, 1)), np.ones((1, 1), bool))
        assert cache.get_pixels(name, Window(0, 1, 0, 1)) is None
        cache.drop(name)


def test_without_files_pixels_beyond_memory_are_not_kept(tmp_path):
    name = cache.codes_cache(tmp_path / "codes", memory=500)
    cache.prepare(name)
    image, valid = np.ones((3, 10, 10), np.uint8), np.ones((10, 10), bool)
    cache.put_pixels(name, Window(0, 10, 0, 10), image, valid)
    cache.put_pixels(name, Window(0, 10, 10, 20), image, valid)  # over the budget
    assert cache.get_pixels(name, Window(0, 10, 0, 10)) is not None
    assert cache.get_pixels(name, Window(0, 10, 10, 20)) is None
    assert not list((tmp_path / "codes").iterdir())
    cache.drop(name)


@pytest.mark.parametrize(("remote_input", "prefix"), [(False, "codes:"), (True, "codes+pixels:")])
def test_a_large_run_keeps_pixels_in_memory_and_spills_only_a_remote_input(
    remote_input, prefix, tmp_path
):
    """Past memory and tmpfs: pixels in memory (tasks in this process), files for a URL input."""
    from tiler.api.workspace import choose_value_cache
    from tiler.executor import Executor
    from tiler.tiling import TileGrid

    grid = TileGrid((200_000, 200_000), (2048, 2048))  # 360 GB of values: no memory or tmpfs
    name = choose_value_cache(grid, Executor("threads"), tmp_path, remote_input)
    try:
        assert name == f"{prefix}{tmp_path / 'codes'}"
        image, valid = np.ones((3, 4, 4), np.uint8), np.ones((4, 4), bool)
        cache.put_pixels(name, Window(0, 4, 0, 4), image, valid)
        assert name in cache._pixels and cache.get_pixels(name, Window(0, 4, 0, 4)) is not None
    finally:
        cache.drop(name)
