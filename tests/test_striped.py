"""Striped (untiled) GeoTIFF inputs (issue 7): the chunk plan, and exact runs over strips.

``plan_chunks`` is a pure function of the image size, GDAL's block shape and
the requested chunks; the end-to-end tests write real striped files with
rasterio (``tiled=False``) and check that runs with the planned chunks equal
the whole-image reference.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_run import assert_output_equals_reference

import tiler
from tiler.io.layout import CACHE_SHARE, DEFAULT_CACHE_BYTES, MIN_ROWS, ChunkPlan, plan_chunks
from tiler.io.open_raster import open_geotiff
from tiler.synthetic import SyntheticField
from tiler.tiling import Window

BUDGET = 2048 * 2048


def plan(height, width, block, chunk=2048, explicit=False, **kw) -> ChunkPlan:
    return plan_chunks(height, width, block, chunk, explicit=explicit, **kw)


# ---------------------------------------------------------------------------
# plan_chunks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("block", [(512, 512), (256, 256), (1024, 512), (16, 16)])
@pytest.mark.parametrize("explicit", [False, True])
def test_tiled_files_keep_their_chunks(block, explicit):
    for chunk, expected in ((2048, (2048, 2048)), ((1024, 4096), (1024, 4096)), (97, (97, 97))):
        result = plan(8000, 8000, block, chunk, explicit)
        assert result == ChunkPlan(expected, None, striped=False)


def test_striped_square_image_gets_full_width_tiles_and_a_warning():
    result = plan(8000, 8000, (1, 8000))
    assert result.striped
    assert result.chunks == (500, 8000)  # 8000 rows in 16 equal rows of tiles
    assert result.chunks[0] * result.chunks[1] <= BUDGET
    text = result.warning
    assert text.startswith("striped (untiled) GeoTIFF, in strips of 1 row x 8000 px:")
    assert "a 2048 x 2048 tile decodes whole strips, 3.9x the pixels it uses" in text
    assert "slower than the same image tiled" in text and "measured" in text
    assert "using 500 x 8000 tiles that follow the strips" in text
    assert "gdal_translate -co TILED=YES -co COMPRESS=DEFLATE" in text


def test_explicit_chunks_are_kept_and_only_warned_about():
    for chunk in (2048, (1024, 4096), 300):
        result = plan(8000, 8000, (1, 8000), chunk, explicit=True)
        expected = (chunk, chunk) if isinstance(chunk, int) else chunk
        assert result.chunks == expected and result.striped
        assert "keeping the --chunk-size you gave" in result.warning
        assert "tiles that follow the strips" in result.warning


def test_wide_image_gets_wide_tiles_256_rows_high():
    # full-width tiles would be 128 rows high: 256 rows, two tiles across instead
    assert plan(4096, 32768, (1, 32768)).chunks == (256, 16384)
    assert plan(20000, 20000, (1, 20000)).chunks == (254, 10000)  # 79 equal rows of tiles


def test_very_wide_images_get_thinner_tiles_whose_strips_fit_the_cache():
    # 256 rows of 100 000 RGBA px are 102 MB, above a quarter of GDAL's 256 MiB cache
    rows, cols = plan(100_000, 100_000, (1, 100_000)).chunks
    assert (rows, cols) == (167, 25000)
    assert rows * 100_000 * 4 <= DEFAULT_CACHE_BYTES // CACHE_SHARE < MIN_ROWS * 100_000 * 4
    # with 1-byte pixels 256 rows fit; with a smaller cache they do not
    assert plan(100_000, 100_000, (1, 100_000), pixel_bytes=1).chunks == (MIN_ROWS, 14286)
    small = plan(100_000, 100_000, (1, 100_000), pixel_bytes=1, cache_bytes=2**26)
    assert small.chunks == (167, 25000)
    # never thinner than 64 rows
    assert plan(100_000, 1_000_000, (1, 1_000_000)).chunks[0] == 64


@pytest.mark.parametrize("rows_per_strip", [1, 2, 3, 7, 16, 100, 256, 500])
def test_tile_rows_are_whole_strips(rows_per_strip):
    for height, width in ((8000, 8000), (7919, 5003), (4096, 32768), (3000, 20011)):
        rows, cols = plan(height, width, (rows_per_strip, width)).chunks
        assert rows % rows_per_strip == 0 or rows == height
        assert rows * cols <= BUDGET and cols <= width


def test_taller_strips_than_the_tile_give_one_strip_per_row_of_tiles():
    # 1500-row strips, 1024 x 1024 requested: tiles one strip high, as many pixels
    result = plan(6000, 4000, (1500, 4000), 1024)
    assert result.chunks == (1500, 667)
    assert result.chunks[0] * result.chunks[1] <= 1024 * 1024
    # 256-row strips under 2048-row tiles: 512 rows (two strips), the full width
    assert plan(8000, 8000, (256, 8000)).chunks == (512, 8000)
    assert plan(8000, 8000, (1000, 8000)).chunks == (1000, 4000)


def test_strips_too_tall_to_follow_keep_the_chunks_with_a_warning():
    # a strip (3000 rows x 8000 px RGBA, 96 MB) larger than the cache share; and a
    # single 8000 x 8000 strip: every tile decodes it whatever its shape
    for block in ((3000, 8000), (8000, 8000)):
        result = plan(8000, 8000, block)
        assert result.chunks == (2048, 2048) and result.striped
        assert "too tall to follow" in result.warning


def test_narrow_striped_images_need_nothing():
    # tiles already span the full width: strips cost nothing extra
    for height, width, block in ((8000, 2048, (1, 2048)), (5000, 700, (11, 700)), (9, 9, (9, 9))):
        assert plan(height, width, block) == ChunkPlan((2048, 2048))
    assert plan(100, 60, (2, 60), 64) == ChunkPlan((64, 64))


def test_tiny_images():
    assert plan(1, 5000, (1, 5000)).chunks == (1, 5000)
    assert plan(3, 3000, (1, 3000)).chunks == (3, 3000)
    assert plan(300, 500, (1, 500), 64).chunks == (60, 63)  # 5 x 8 tiles of <= 64 x 64 px
    assert plan(300, 50_000, (1, 50_000)).chunks == (150, 25000)
    assert plan(10, 3000, (10, 3000)).chunks == (10, 3000)


def test_bad_arguments_are_refused():
    for chunk in (0, (0, 5), (5,), True, (2.5, 3)):
        with pytest.raises(ValueError, match="chunk size"):
            plan(100, 100, (1, 100), chunk)
    for height, width, block in ((0, 10, (1, 10)), (10, 10, (0, 10))):
        with pytest.raises(ValueError):
            plan(height, width, block)


@settings(max_examples=300, deadline=None)
@given(
    height=st.integers(1, 200_000),
    width=st.integers(1, 200_000),
    rows_per_strip=st.integers(1, 5000),
    chunk=st.tuples(st.integers(1, 4096), st.integers(1, 4096)),
    explicit=st.booleans(),
    pixel_bytes=st.sampled_from([1, 3, 4, 8, 16]),
)
@example(height=1, width=2, rows_per_strip=1, chunk=(2, 1), explicit=False, pixel_bytes=1)
def test_plan_properties(height, width, rows_per_strip, chunk, explicit, pixel_bytes):
    rows_per_strip = min(rows_per_strip, height)
    block = (rows_per_strip, width)
    result = plan(height, width, block, chunk, explicit, pixel_bytes=pixel_bytes)
    rows, cols = result.chunks
    if width <= chunk[1]:
        assert result == ChunkPlan(chunk)
        return
    assert result.striped and "gdal_translate -co TILED=YES" in result.warning
    if explicit or "too tall" in result.warning:
        assert result.chunks == chunk
        return
    assert 1 <= rows <= height and 1 <= cols <= width
    assert rows * cols <= chunk[0] * chunk[1]
    assert rows % rows_per_strip == 0 or rows == height
    # thinner than the requested rows only for whole strips, or when evening out the rows
    assert rows >= min(MIN_ROWS, chunk[0], rows_per_strip) // 2 or rows == height or cols == width
    # a tiled file of the same size is left alone (its tiles narrower than the image: one tile
    # as wide as the image or wider is decoded whole, as a strip is, and planned as one)
    if width > 16:
        assert plan(height, width, (16, 16), chunk, explicit).chunks == chunk


# ---------------------------------------------------------------------------
# real striped files, end to end
# ---------------------------------------------------------------------------


def write_striped(path, height, width, rows_per_strip=None, compress="deflate", seed=3):
    """A synthetic RGBA field as a striped GeoTIFF (``None``: GDAL's default strip height)."""
    field = SyntheticField(height=height, width=width, seed=seed)
    profile = dict(
        driver="GTiff", height=height, width=width, count=4, dtype="uint8", crs=field.crs,
        transform=field.transform, tiled=False, photometric="RGB", alpha="YES",
    )  # fmt: skip
    if rows_per_strip is not None:
        profile["blockysize"] = rows_per_strip
    if compress:
        profile.update(compress=compress, predictor=2)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(field.read(Window(0, height, 0, width)))
    return path


def test_gdal_reports_strips_as_full_width_blocks(tmp_path):
    for rows_per_strip, expected in ((None, 2), (3, 3), (40, 40)):
        src = open_geotiff(write_striped(tmp_path / f"s{rows_per_strip}.tif", 90, 900,
                                         rows_per_strip))  # fmt: skip
        assert src.block_shape == (expected, 900)  # GDAL's default: 8 KB strips


# Pipelines with a short and a long reach (halo across rows of tiles).
LONG_REACH = {
    "preprocess": [{"index": "exg"}, {"gaussian": {"sigma": 2.5}}],
    "threshold": "otsu",
    "refine": [{"closing": {"radius": 3}}, {"opening": {"radius": 2}}, {"fill_holes": {}}],
    "connectivity": 2,
}


@pytest.mark.parametrize(
    ("shape", "chunk", "rows_per_strip", "config", "expected"),
    [
        ((181, 733), 64, None, None, (62, 62)),  # GDAL's default: 2-row strips
        ((181, 733), 64, 3, None, (63, 62)),
        ((181, 733), 64, 3, LONG_REACH, (63, 62)),
        ((181, 733), 64, 16, LONG_REACH, (64, 62)),
        ((181, 733), 64, 1, None, (61, 67)),
        ((1100, 1200), 600, None, LONG_REACH, (275, 1200)),  # full-width tiles, 1-row strips
        ((1100, 1200), 600, 7, None, (280, 1200)),
    ],
)
def test_striped_run_with_planned_chunks_equals_reference(
    tmp_path, shape, chunk, rows_per_strip, config, expected
):
    height, width = shape
    path = write_striped(tmp_path / "striped.tif", height, width, rows_per_strip)
    source = open_geotiff(path)
    result = plan_chunks(
        source.height, source.width, source.block_shape, chunk, explicit=False,
        pixel_bytes=source.count * np.dtype(source.dtype).itemsize,
    )  # fmt: skip
    assert result.striped and result.warning
    assert result.chunks == expected
    rows, cols = result.chunks
    assert rows % source.block_shape[0] == 0
    run = tiler.run(path, tmp_path / "out", config, chunk_size=result.chunks, scheduler="sync")
    assert run.n_tiles == math.ceil(height / rows) * math.ceil(width / cols) > 1
    ref = assert_output_equals_reference(tmp_path / "out", path, config)
    assert run.n_objects == int(ref.labels.max()) > 5


def test_striped_run_with_explicit_and_square_chunks_equals_reference(tmp_path):
    # strips taller than the tiles, and tiles narrower than the strips (the unplanned case)
    path = write_striped(tmp_path / "striped.tif", 150, 500, 50)
    for chunks in ((32, 32), (64, 97)):
        out = tmp_path / f"out{chunks[0]}"
        tiler.run(path, out, LONG_REACH, chunk_size=chunks, scheduler="sync")
        assert_output_equals_reference(out, path, LONG_REACH)


def test_striped_run_with_threads_equals_reference(tmp_path):
    path = write_striped(tmp_path / "striped.tif", 200, 1200, None, compress="lzw")
    source = open_geotiff(path)
    chunks = plan_chunks(source.height, source.width, source.block_shape, 96, explicit=False).chunks
    tiler.run(path, tmp_path / "out", chunk_size=chunks, scheduler="threads")
    assert_output_equals_reference(tmp_path / "out", path)


def test_the_command_line_warns_once_even_when_quiet_and_follows_the_strips(tmp_path):
    """Without --chunk-size, a striped file wider than a tile runs in tiles that follow its
    strips, with one ``tiler: warning:`` line naming it; the warning is kept in run.json."""
    from test_cli import tiler as tiler_cli

    path = write_striped(tmp_path / "wide.tif", 1700, 2600)  # over 2048² px, wider than a tile
    dst = tmp_path / "out"
    proc = tiler_cli("run", path, dst, "--scheduler", "sync", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # (the other warning line: the default pipeline's objects look merged, tiler.diagnostics)
    lines = [line for line in proc.stderr.strip().splitlines() if "median area" not in line]
    assert len(lines) == 1 and lines[0].startswith(f"tiler: warning: {path}: striped"), lines
    assert "gdal_translate -co TILED=YES" in lines[0]
    manifest = json.loads((dst / "run.json").read_text())
    rows, cols = manifest["chunking"]["chunk_shape"]
    assert cols == 2600 and rows % open_geotiff(path).block_shape[0] == 0
    assert manifest["warnings"][0] == lines[0].removeprefix("tiler: warning: ")
    assert_output_equals_reference(dst, path)
    # The same file with the chunk size given: kept, and still warned about.
    proc = tiler_cli("run", path, tmp_path / "given", "--scheduler", "sync", "-q",
                     "--chunk-size", 64, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "keeping the --chunk-size you gave" in proc.stderr
    given = json.loads((tmp_path / "given" / "run.json").read_text())
    assert given["chunking"]["chunk_shape"] == [64, 64]


PER_PIXEL = {"preprocess": [{"index": "exg"}], "threshold": "otsu"}


def test_the_api_warns_with_a_tiler_warning_and_tiled_files_do_not(tmp_path):
    from tiler.errors import TilerWarning

    path = write_striped(tmp_path / "wide.tif", 1950, 2200)
    with pytest.warns(TilerWarning, match="striped"):
        tiler.run(path, tmp_path / "out", PER_PIXEL, scheduler="sync")
    tiled = tmp_path / "tiled.tif"
    rasterio.shutil.copy(path, tiled, driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
    small = write_striped(tmp_path / "small.tif", 600, 2200)  # under 2048² px: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", TilerWarning)
        warnings.filterwarnings("ignore", ".*median area", TilerWarning)  # not about stripes
        result = tiler.run(tiled, tmp_path / "tiled-out", PER_PIXEL, scheduler="sync")
        assert result.n_tiles == 2  # 2048 x 2048 tiles over 1950 x 2200
        result = tiler.run(small, tmp_path / "small-out", PER_PIXEL, scheduler="sync")
        assert result.n_tiles == 1  # one full-width tile follows every strip, silently
