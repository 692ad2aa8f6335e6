"""What a run refuses or bounds because of its tile count (not its pixels).

A run's driver pays for every tile whatever its size (see ``tiler.plan.MAX_TILES``):
a header declaring 16 777 216 x 1 px cut in 32-pixel tiles (found by the fuzzing
of issue 7) made 524 288 tiles and ran out of memory planning its first pass.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import run_tiled, write_geotiff

from tiler import executor, taskgraph
from tiler.cli import main
from tiler.config import load_pipeline
from tiler.errors import ConfigError
from tiler.executor import Executor
from tiler.io.raster import SyntheticSource
from tiler.plan import MAX_TILES, check_size
from tiler.reference import run_reference
from tiler.synthetic import SyntheticField
from tiler.tiling import TileGrid, Window, smallest_chunk

ADDRESS_SPACE = 2 << 30  # the fuzzing harness's limit (tests/fuzz_tiff.py)


def soil(height: int, width: int) -> np.ndarray:
    """Brown soil, 3 bands of uint8, with a green square (the default pipeline finds it)."""
    image = np.empty((3, height, width), np.uint8)
    image[:] = np.array([120, 90, 60], np.uint8)[:, None, None]
    image[:, height // 4 : height // 2, width // 4 : width // 2] = np.array([60, 170, 50])[
        :, None, None
    ]
    return image


def with_dimensions(data: bytes, height: int, width: int) -> bytes:
    """A classic little-endian TIFF whose first directory declares ``height`` x ``width`` px.

    ImageWidth and ImageLength become LONGs in place (their values fit in the
    entry); the strips stay as they were, as in the fuzzing's ``dims-*`` cases.
    """
    assert data[:4] == b"II*\0", "a classic little-endian TIFF"
    out = bytearray(data)
    (ifd,) = struct.unpack_from("<I", out, 4)
    (entries,) = struct.unpack_from("<H", out, ifd)
    found = 0
    for k in range(entries):
        pos = ifd + 2 + 12 * k
        (tag,) = struct.unpack_from("<H", out, pos)
        if tag in (256, 257):  # ImageWidth, ImageLength
            struct.pack_into("<HHII", out, pos, tag, 4, 1, width if tag == 256 else height)
            found += 1
    assert found == 2
    return bytes(out)


def limited(command: list[str], cwd: Path, timeout: float = 60) -> tuple:
    """``command`` under the fuzzing's 2 GiB address-space limit: (exit, stdout, stderr, s)."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    preexec = None
    if shutil.which("prlimit"):
        command = ["prlimit", f"--as={ADDRESS_SPACE}", "--", *command]
    else:

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    started = time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started


# ---------------------------------------------------------------------------
# The limit
# ---------------------------------------------------------------------------


def test_the_largest_accepted_image_fits_at_1024_and_2048():
    side = math.isqrt(200_000_000_000)  # --max-pixels' default, square
    assert len(TileGrid((side, side), (2048, 2048))) < 50_000
    assert len(TileGrid((side, side), (1024, 1024))) <= MAX_TILES
    check_size(TileGrid((side, side), (1024, 1024)), "big.tif")


def test_smallest_chunk_is_the_smallest_that_fits():
    for shape in [(16_777_216, 1), (1, 16_777_216), (447_214, 447_214), (3000, 7)]:
        c = smallest_chunk(shape, 1000)
        assert len(TileGrid(shape, (c, c))) <= 1000
        assert c == 1 or len(TileGrid(shape, (c - 1, c - 1))) > 1000


def test_check_size_message_is_one_line_naming_sizes_and_flag():
    grid = TileGrid((16_777_216, 1), (32, 32))
    with pytest.raises(ConfigError) as caught:
        check_size(grid, "dims-tall-16m.tif")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"dims-tall-16m.tif: 16777216 x 1 px in 524288 tiles of 32 x 32 px is more than the "
        f"{MAX_TILES} tiles a run handles; pass a larger --chunk-size "
        f"({smallest_chunk((16_777_216, 1), MAX_TILES)} or more)"
    )


def test_cli_refuses_too_many_tiles_before_touching_dst(tmp_path, capsys):
    side = math.isqrt(MAX_TILES) + 1  # one more tile row and column than fits at 1 px
    src = write_geotiff(tmp_path / "small.tif", soil(side, side))
    dst = tmp_path / "out"
    code = main(["run", str(src), str(dst), "--chunk-size", "1", "--scheduler", "sync", "-q"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tiler: error: {src}: {side} x {side} px in {side * side} tiles")
    assert "--chunk-size" in lines[0]
    assert not dst.exists()
    # The size it suggests runs.
    suggested = int(lines[0].rsplit("(", 1)[1].split()[0])
    assert len(TileGrid((side, side), (suggested, suggested))) <= MAX_TILES


@pytest.mark.parametrize("height, width", [(16_777_216, 1), (1, 16_777_216)])
def test_fuzzed_16m_pixel_header_ends_in_one_clean_line(tmp_path, height, width):
    """The fuzzing's dims-tall-16m.tif / dims-wide-16m.tif, rebuilt: a 96 x 80 px striped
    uncompressed file (23 KB) whose header then declares 16 777 216 x 1 (or 1 x 16 777 216)
    px: 2 100 times its size, below the decompression-bomb check, so it opens."""
    base = write_geotiff(tmp_path / "b.tif", soil(80, 96), tiled=False, blockysize=8, compress=None)
    src = tmp_path / f"dims-{height}x{width}.tif"
    src.write_bytes(with_dimensions(base.read_bytes(), height, width))
    with rasterio.open(src) as ds:
        assert (ds.height, ds.width) == (height, width)
    dst = tmp_path / "out"
    command = [sys.executable, "-m", "tiler.cli", "run", str(src), str(dst)]
    command += ["--chunk-size", "32", "--scheduler", "sync", "-q"]
    code, out, err, seconds = limited(command, tmp_path)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err and "MemoryError" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tiler: error: {src}: {height} x {width} px in 524288 tiles")
    assert "--chunk-size" in lines[0]
    assert not dst.exists()
    assert seconds < 30  # about 3 s, most of it importing


def test_thin_image_runs():
    """A one-pixel-tall image is a valid image: nothing refuses its shape."""
    image = soil(1, 600)
    image[:, 0, 100:140] = np.array([60, 170, 50])[:, None]
    from tiler.io.raster import ArraySource

    source = ArraySource(image, np.ones((1, 600), bool))
    pipeline = load_pipeline().resolve_bands(3, ())
    labels, seg, _ = run_tiled(source, pipeline, (32, 32))
    ref = run_reference(image, np.ones((1, 600), bool), pipeline)
    np.testing.assert_array_equal(labels, ref.labels)


# ---------------------------------------------------------------------------
# Local schedulers run a pass in batches
# ---------------------------------------------------------------------------

PIPELINE = load_pipeline().resolve_bands(4, (4,))


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_batches_of_a_few_tiles_run_exactly_like_one(monkeypatch, scheduler):
    """Batches smaller than a tile row: seams need tiles of the next batch, computed once."""
    field = SyntheticField(height=200, width=230, seed=5)
    source = SyntheticSource(field)
    rgba = field.read(Window(0, 200, 0, 230))
    ref = run_reference(rgba[:3], rgba[3] > 0, PIPELINE)
    calls: list[int] = []
    real = executor.run_batches

    def counting(tasks, keys, size, get):
        calls.append(len(keys))
        return real(tasks, keys, size, get)

    monkeypatch.setattr(executor, "BATCH", 3)
    monkeypatch.setattr(executor, "run_batches", counting)
    labels, seg, _ = run_tiled(source, PIPELINE, (48, 40), scheduler=scheduler)
    assert seg.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels)
    assert calls and max(calls) == 5 * 6  # every pass went through the batches


def test_batches_run_each_task_once_and_report_each_key_once(monkeypatch):
    runs: list[str] = []

    def task(name, *parts):
        runs.append(name)
        return name + "".join(parts)

    # A chain and a fan-in across batches, and a wanted key ("k-e") that a batch
    # before its own needs.
    tasks = {
        "k-a": (task, "a"),
        "k-b": (task, "b", "k-a"),
        "k-c": (task, "c", "k-a", "k-b"),
        "k-d": (task, "d", "k-e"),
        "k-e": (task, "e"),
        "k-f": (task, "f", "k-a", "k-e"),
    }
    keys = ["k-b", "k-c", "k-d", "k-e", "k-f"]
    seen: list[str] = []
    for size in (1, 2, 3, 100):
        monkeypatch.setattr(executor, "BATCH", size)
        runs.clear()
        seen.clear()
        values = Executor("sync").compute(
            taskgraph.Graph(tasks, keys), None, lambda key, value: seen.append(key)
        )
        assert values == ["ba", "caba", "de", "e", "fae"], size
        assert sorted(runs) == ["a", "b", "c", "d", "e", "f"], size
        assert sorted(seen) == keys, size
