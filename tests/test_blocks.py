"""Reading windows from decoded blocks shared across tiles (tiler.io.blocks).

The pixels must be GDAL's own for any window, mask rule and cache size; the
point of the cache is that each block is decoded once when the tiles run in
the order the graphs give them.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window as RioWindow

from tiler.executor import Executor
from tiler.io import blocks
from tiler.io.open_raster import open_geotiff
from tiler.taskgraph import STRIP_PIXELS, Builder
from tiler.tiling import TileGrid, Window, expand

H, W, BLOCK = 150, 170, 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same RGBA image with alpha, with nodata, and with no mask; 32 x 32 blocks."""
    from tests.conftest import write_geotiff

    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (4, H, W), dtype=np.uint8)
    image[3] = np.where(rng.random((H, W)) < 0.1, 0, 255)
    image[:3, :5, :] = 0  # a nodata border
    folder = tmp_path_factory.mktemp("blocks")
    return {
        "alpha": write_geotiff(folder / "alpha.tif", image, alpha=True, blocksize=BLOCK),
        "nodata": write_geotiff(folder / "nodata.tif", image[:3], nodata=0, blocksize=BLOCK),
        "none": write_geotiff(folder / "none.tif", image[:3], blocksize=BLOCK),
    }


def gdal_window(path, bands, window: Window, mask: str) -> tuple[np.ndarray, np.ndarray]:
    """GDAL's own read of ``window``: the bands, and its dataset mask (or all valid)."""
    with rasterio.open(path) as ds:
        image = ds.read(list(bands), window=RioWindow(*window.xywh))
        if mask == "none":
            return image, np.ones(image.shape[1:], dtype=bool)
        return image, ds.dataset_mask(window=RioWindow(*window.xywh)) > 0


windows = st.tuples(
    st.integers(0, H - 1), st.integers(1, H), st.integers(0, W - 1), st.integers(1, W)
).map(lambda t: Window(t[0], min(H, t[0] + t[1]), t[2], min(W, t[2] + t[3])))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["alpha", "nodata", "none"]),
    reads=st.lists(windows, min_size=1, max_size=6),
    budget=st.sampled_from([0, 5000, 40_000, 1 << 30]),
    bands=st.sampled_from([(1, 2, 3), (2,), (3, 1)]),
)
def test_windows_are_gdals_pixels_for_any_cache(files, kind, reads, budget, bands, monkeypatch):
    cache = blocks.BlockCache(budget)
    monkeypatch.setattr(blocks, "CACHE", cache)
    source = open_geotiff(files[kind], mask="dataset" if kind != "none" else "none")
    for window in reads:
        image, valid = source.read(bands, window)
        expected, expected_valid = gdal_window(files[kind], bands, window, source.mask)
        np.testing.assert_array_equal(valid, expected_valid)
        np.testing.assert_array_equal(image, expected)
    assert cache.size <= budget


def test_tiles_in_strip_order_decode_each_block_once(files, monkeypatch):
    """A pass over tiles with halos, run on threads in the graph's order: one decode a block."""
    cache = blocks.BlockCache()
    monkeypatch.setattr(blocks, "CACHE", cache)
    source = open_geotiff(files["alpha"])
    grid = TileGrid((H, W), (40, 48))  # tiles not aligned to the blocks
    builder = Builder("read", grid)
    keys = [
        builder.add(f"tile-{t}", source.read, (1, 2, 3), expand(w, 3, (H, W))[0], tile=(t, w))
        for t, _, _, w in grid
    ]
    Executor("threads", 1).compute(builder.graph(keys))
    n_blocks = -(-H // BLOCK) * -(-W // BLOCK)
    assert cache.decoded == n_blocks
    cold = blocks.BlockCache(0)  # nothing kept: every window decodes its blocks again
    monkeypatch.setattr(blocks, "CACHE", cold)
    Executor("threads", 1).compute(builder.graph(keys))
    assert cold.decoded > 2 * n_blocks


def test_a_changed_file_is_decoded_again(tmp_path):
    from tests.conftest import write_geotiff

    image = np.full((3, 64, 64), 10, dtype=np.uint8)
    path = write_geotiff(tmp_path / "a.tif", image, blocksize=16)
    window = Window(0, 64, 0, 64)
    assert open_geotiff(path).read((1,), window)[0].max() == 10
    write_geotiff(path, image + 5, blocksize=16)
    assert open_geotiff(path).read((1,), window)[0].max() == 15


def test_striped_files_are_read_in_one_piece(tmp_path, monkeypatch):
    from tests.conftest import write_geotiff

    cache = blocks.BlockCache()
    monkeypatch.setattr(blocks, "CACHE", cache)
    image = np.arange(3 * 40 * 90, dtype=np.uint32).astype(np.uint8).reshape(3, 40, 90)
    path = write_geotiff(tmp_path / "s.tif", image, tiled=False, blockysize=4)
    got, _ = open_geotiff(path).read((1, 2, 3), Window(3, 30, 5, 70))
    np.testing.assert_array_equal(got, image[:, 3:30, 5:70])
    assert cache.decoded == 0


def test_strip_order_is_a_permutation_run_in_order():
    grid = TileGrid((3 * 100, 100 * 100), (100, 100))
    order = grid.in_strips(300)
    assert sorted(order) == list(range(len(grid)))
    assert order[:7] == [0, 1, 2, 100, 101, 102, 200]  # three columns a strip, row by row
    ran: list[int] = []
    lock = threading.Lock()

    def note(t: int) -> int:
        with lock:
            ran.append(t)
        return t

    builder = Builder("order", grid)
    keys = [builder.add(f"tile-{t}", note, t, tile=(t, w)) for t, _, _, w in grid]
    Executor("threads", 1).compute(builder.graph(keys))
    assert ran == grid.in_strips(STRIP_PIXELS) != list(range(len(grid)))
