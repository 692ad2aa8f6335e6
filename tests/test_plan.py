"""Graphs grow linearly with the number of tiles, and planning never touches the pixels."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tiled

from tiler.config import load_pipeline
from tiler.io.raster import SyntheticSource
from tiler.masks import RasterMask
from tiler.passes.segmentation import MaskState
from tiler.plan import histogram_graph, label_graph, range_graph, task_count, write_graph
from tiler.reference import run_reference
from tiler.synthetic import SyntheticField
from tiler.tiling import TileGrid, Window

PIPELINE = load_pipeline().resolve_bands(4, (4,))


def plan_every_pass(size: int, chunk: int) -> tuple[TileGrid, dict[str, int]]:
    """Build (without computing) the graph of every kind of pass over a size x size field."""
    source = SyntheticSource(SyntheticField(height=size, width=size))
    grid = TileGrid((size, size), (chunk, chunk))
    state = MaskState(RasterMask(source, PIPELINE, 0.1), connectivity=2)
    lut = np.zeros(1, dtype=np.uint32)
    counts = {
        "range": task_count(range_graph(source, PIPELINE, grid, 4, "unused")),
        "histogram": task_count(histogram_graph(source, PIPELINE, grid, 4, "unused", 0.0, 1.0)),
        "label": task_count(
            label_graph(state.recipe, grid, background=False, connectivity=2, store="unused")
        ),
        "write": task_count(
            write_graph(state.recipe, lambda t: lut, grid, connectivity=2, path="unused")
        ),
    }
    return grid, counts


def test_plan_for_a_200000_pixel_square_is_linear_and_small():
    tracemalloc.start()
    started = time.perf_counter()
    grid, counts = plan_every_pass(200_000, 2048)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tiles = len(grid)
    assert tiles == 98 * 98
    # A few tasks per tile and pass: no per-face, per-seam-pair or per-label tasks.
    assert counts["range"] <= 1.1 * tiles
    assert counts["histogram"] <= 1.1 * tiles
    assert counts["label"] == 2 * tiles
    assert counts["write"] == tiles
    # 40 gigapixels planned with well under 1 GB on the driver (the image would be 160 GB).
    assert peak < 600e6, f"planning peak {peak / 1e6:.0f} MB"
    assert seconds < 120


def test_task_count_is_proportional_to_tiles():
    small_grid, small = plan_every_pass(20_000, 1000)
    large_grid, large = plan_every_pass(40_000, 1000)
    assert len(large_grid) == 4 * len(small_grid)
    for name in small:
        assert large[name] / small[name] == pytest.approx(4, rel=0.05), name


def test_synthetic_source_runs_exactly_like_the_reference():
    """The procedural source is a real source: a small field runs and matches the reference."""
    field = SyntheticField(height=300, width=260, seed=3)
    source = SyntheticSource(field)
    rgba = field.read(Window(0, 300, 0, 260))
    ref = run_reference(rgba[:3], rgba[3] > 0, PIPELINE)
    labels, seg, _ = run_tiled(source, PIPELINE, (128, 100))
    assert seg.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.n_objects > 20


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, bool])
def test_a_chunk_is_stored_only_while_it_holds_a_value(tmp_path, dtype):
    """write_chunk skips zarr's own test for an all-zero chunk when the tile has a value, and
    leaves it to zarr otherwise: an empty tile leaves no chunk file, or removes a stale one."""
    from tiler.io.label_store import create_label_store
    from tiler.masks import write_chunk

    path = create_label_store(tmp_path, (6, 8), (3, 4), np.dtype(dtype), "", (1, 0, 0, 0, -1, 0))
    chunks = Path(path) / "c"
    values = np.zeros((3, 4), dtype)
    values[1, 2] = 1
    write_chunk(path, Window(3, 6, 4, 8), values)
    write_chunk(path, Window(0, 3, 0, 4), np.zeros((3, 4), dtype))
    assert sorted(p.relative_to(chunks).as_posix() for p in chunks.rglob("*")) == ["1", "1/1"]
    write_chunk(path, Window(3, 6, 4, 8), np.zeros((3, 4), dtype))
    assert not (chunks / "1" / "1").exists()
    import zarr

    assert not zarr.open_array(path, mode="r")[:].any()
