"""Bad and unusual input files (issue 7, "Inputs"), each made for real in the test.

The contract (DESIGN.md section 5, "Fails loudly"): a bad input gives exit
status 2, exactly one ``tiler: error:`` line on stderr naming the file and
the problem, and nothing in DST that looks complete; an unusual but valid
input (BigTIFF, 16-bit, float32 with NaN nodata, a sparse file) runs and
equals the whole-image reference.

The catalogue, and where each case is tested:

==============================  =================================================
case                            tested
==============================  =================================================
missing path, directory,        ``tiler run``: test_cli.py (BAD_INPUTS);
empty file, text named .tif     ``tiler validate``: here (CATALOGUE)
PNG / JPEG / georeferenced PNG  ``tiler run``: test_cli.py (BAD_INPUTS)
named .tif
VRT named .tif                  here, run and validate (GTiff driver only)
no CRS, identity transform      ``tiler run``: test_cli.py; validate: here
truncated TIFF (tiled,          run: here and test_cli.py (names a bad window);
striped, BigTIFF)               validate: here (lists every bad block, only them)
a corrupt block in the middle   here: run names it, validate lists it alone
(a band of a planar file,
the internal mask)
decompression bomb (a header    here, run and validate: refused from the header,
forged to 100000 x 120000 px)   in milliseconds and without memory growth
above --max-pixels              here, run (250 GP header) and validate
                                (``--max-pixels``), and ``open_geotiff``
ZSTD file of constant blocks    here: refused; its SPARSE_OK rewrite opens
sparse 12-gigapixel file        here: opens
BigTIFF, uint16, float32 with   here: run equals the reference
NaN nodata
band out of range, NDVI         test_cli.py (BAD_PIPELINES, through the CLI) and
without NIR, unknown step,      test_config.py (the messages); here: the
wrong parameter type            pipeline is refused before the input is read
==============================  =================================================
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from conftest import write_geotiff
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from test_cli import (
    BLOBS,
    TRANSFORM,
    assert_not_complete,
    assert_one_line_error,
    field_image,
    tiler,
)
from test_run import assert_output_equals_reference

import tiler as tiler_api
from tiler.config import load_pipeline, parse_pipeline
from tiler.errors import InputError
from tiler.io.open_raster import open_geotiff
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS, MAX_COMPRESSION_RATIO
from tiler.io.validate import validate
from tiler.reference import run_reference
from tiler.tiling import Window as TWindow

BLOBS_OF_FIELD = BLOBS  # the default pipeline finds one object per blob

RUN = ("run", "--scheduler", "sync", "--chunk-size", 64, "-q")

# ---------------------------------------------------------------------------
# TIFF structure, parsed with struct (classic TIFF and BigTIFF)
# ---------------------------------------------------------------------------

TYPES = {3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}  # SHORT, LONG, LONG8
WIDTH, LENGTH, ROWS_PER_STRIP, SUBFILE = 256, 257, 278, 254
STRIP_OFFSETS, STRIP_COUNTS, TILE_WIDTH, TILE_LENGTH = 273, 279, 322, 323
TILE_OFFSETS, TILE_COUNTS, PLANAR = 324, 325, 284


def profile(height: int, width: int, *, count=3, dtype="uint8", block=64, **options) -> dict:
    """A tiled deflate GeoTIFF's creation options in UTM 11N, with any others added."""
    return dict(
        driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs="EPSG:32611",
        transform=TRANSFORM, tiled=True, blockxsize=block, blockysize=block, compress="deflate",
        **options,
    )  # fmt: skip


def tiff_ifds(path: Path) -> list[dict[int, tuple[int, ...]]]:
    """Every image file directory: tag -> values (integer tags only; others empty)."""
    data = path.read_bytes()
    bo = {b"II": "<", b"MM": ">"}[data[:2]]
    big = struct.unpack(bo + "H", data[2:4])[0] == 43
    head, count_fmt, entry, inline, next_fmt = (8, "Q", 20, 8, "Q") if big else (4, "H", 12, 4, "I")
    offset = struct.unpack(bo + ("Q" if big else "I"), data[head : head + (8 if big else 4)])[0]
    ifds = []
    while offset:
        (n,) = struct.unpack_from(bo + count_fmt, data, offset)
        start = offset + struct.calcsize(count_fmt)
        tags = {}
        for i in range(n):
            e = start + i * entry
            tag, typ = struct.unpack_from(bo + "HH", data, e)
            count = struct.unpack_from(bo + ("Q" if big else "I"), data, e + 4)[0]
            if typ not in TYPES:
                tags[tag] = ()
                continue
            fmt, size = TYPES[typ]
            at = e + (12 if big else 8)
            if count * size > inline:
                at = struct.unpack_from(bo + ("Q" if big else "I"), data, at)[0]
            tags[tag] = struct.unpack_from(f"{bo}{count}{fmt}", data, at)
        ifds.append(tags)
        (offset,) = struct.unpack_from(bo + next_fmt, data, start + n * entry)
    return ifds


def blocks(ifd: dict) -> list[tuple[int, int, int, tuple[tuple[int, int], tuple[int, int]]]]:
    """``(offset, byte_count, plane, window)`` of every block of an IFD, in file order."""
    h, w = ifd[LENGTH][0], ifd[WIDTH][0]
    if TILE_OFFSETS in ifd:
        bh, bw = ifd[TILE_LENGTH][0], ifd[TILE_WIDTH][0]
        offsets, counts = ifd[TILE_OFFSETS], ifd[TILE_COUNTS]
    else:
        bh, bw = min(ifd.get(ROWS_PER_STRIP, (h,))[0], h), w
        offsets, counts = ifd[STRIP_OFFSETS], ifd[STRIP_COUNTS]
    across, down = -(-w // bw), -(-h // bh)
    out = []
    for k, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
        plane, index = divmod(k, across * down)
        r, c = divmod(index, across)
        window = TWindow(r * bh, min(h, (r + 1) * bh), c * bw, min(w, (c + 1) * bw))
        out.append((offset, count, plane, window))
    return out


def set_dimensions(path: Path, height: int, width: int, rows_per_strip: int | None = None) -> None:
    """Rewrite the first IFD's ImageLength / ImageWidth (and RowsPerStrip) in place."""
    data = bytearray(path.read_bytes())
    bo = {b"II": "<", b"MM": ">"}[bytes(data[:2])]
    big = struct.unpack(bo + "H", data[2:4])[0] == 43
    offset = struct.unpack_from(bo + ("Q" if big else "I"), data, 8 if big else 4)[0]
    (n,) = struct.unpack_from(bo + ("Q" if big else "H"), data, offset)
    start = offset + (8 if big else 2)
    values = {LENGTH: height, WIDTH: width, ROWS_PER_STRIP: rows_per_strip}
    for i in range(n):
        e = start + i * (20 if big else 12)
        (tag,) = struct.unpack_from(bo + "H", data, e)
        if values.get(tag) is not None:
            if big:  # LONG8, one value, inline
                struct.pack_into(bo + "HQQ", data, e + 2, 16, 1, values[tag])
            else:  # LONG, one value, inline
                struct.pack_into(bo + "HII", data, e + 2, 4, 1, values[tag])
    path.write_bytes(bytes(data))


def random_field(height: int, width: int, bands: int = 3, dtype=np.uint8, seed: int = 0):
    """Noise over the field image: blocks that compress to distinct, realistic sizes."""
    rng = np.random.default_rng(seed)
    image = field_image(height, width, bands).astype(dtype)
    noise = rng.integers(0, 8, image.shape).astype(dtype)
    return image + noise


def window_of(line: str) -> TWindow:
    m = re.search(r"rows (\d+):(\d+), cols (\d+):(\d+)", line)
    assert m, line
    return TWindow(*map(int, m.groups()))


def overlaps(a, b) -> bool:
    return a.intersection(b).size > 0


# ---------------------------------------------------------------------------
# Files that must be refused on open, by `tiler run` and `tiler validate`
# ---------------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "missing.tif"


def _directory(tmp_path):
    (tmp_path / "folder.tif").mkdir()
    return tmp_path / "folder.tif"


def _empty(tmp_path):
    (tmp_path / "empty.tif").touch()
    return tmp_path / "empty.tif"


def _text(tmp_path):
    (tmp_path / "notes.tif").write_text("this is not a raster\n")
    return tmp_path / "notes.tif"


def _vrt(tmp_path):
    """A VRT (XML that can point GDAL at any file) renamed .tif: the GTiff driver refuses it."""
    real = write_geotiff(tmp_path / "real.tif", field_image(), transform=TRANSFORM)
    rasterio.shutil.copy(real, tmp_path / "real.vrt", driver="VRT")
    path = tmp_path / "mosaic.tif"
    path.write_text((tmp_path / "real.vrt").read_text())
    assert path.read_text().startswith("<VRTDataset")
    return path


def _no_crs(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return write_geotiff(tmp_path / "no-crs.tif", field_image(), crs=None, transform=TRANSFORM)


def _identity(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return write_geotiff(
            tmp_path / "pixels-only.tif", field_image(), transform=Affine.identity()
        )


def _bomb(tmp_path, name="bomb.tif", **profile):
    """A valid 64 x 64 GeoTIFF whose header is rewritten to 100000 x 120000 px (36 GB RGB)."""
    kwargs = dict(transform=TRANSFORM, blocksize=64)
    kwargs.update(profile)
    path = write_geotiff(tmp_path / name, np.zeros((3, 64, 64), np.uint8), **kwargs)
    set_dimensions(path, 100_000, 120_000, 2**32 - 1 if not kwargs.get("tiled", True) else None)
    return path


def _bomb_striped(tmp_path):
    """The same, one strip: GDAL would see a single 36 GB strip."""
    return _bomb(tmp_path, "bomb-strip.tif", tiled=False)


def _above_max_pixels(tmp_path):
    """A header declaring 500000 x 500000 px: 250 gigapixels, above the default limit."""
    path = write_geotiff(
        tmp_path / "huge.tif", np.zeros((3, 64, 64), np.uint8), transform=TRANSFORM
    )
    set_dimensions(path, 500_000, 500_000)
    return path


def _bigtiff_bomb(tmp_path):
    path = tmp_path / "bomb-bigtiff.tif"
    with rasterio.open(path, "w", **profile(64, 64, bigtiff="YES")) as ds:
        ds.write(np.zeros((3, 64, 64), np.uint8))
    assert path.read_bytes()[2:4] == b"\x2b\x00"  # BigTIFF
    set_dimensions(path, 100_000, 120_000)
    return path


BOMB = ["decompression bomb", "100000 x 120000 px", "36.0 GB", "compression ratio"]
# name -> (factory, commands, substrings of the one error line besides the file name)
CATALOGUE = {
    "missing": (_missing, ["validate"], ["no such file"]),
    "directory": (_directory, ["validate"], ["is a directory"]),
    "empty": (_empty, ["validate"], ["empty file"]),
    "text-named-tif": (_text, ["validate"], ["not a readable GeoTIFF"]),
    "vrt-named-tif": (_vrt, ["run", "validate"], ["not a readable GeoTIFF", "not recognized"]),
    "no-crs": (_no_crs, ["validate"], ["geotransform but no CRS", "--assume-crs EPSG:"]),
    "identity-transform": (_identity, ["validate"], ["no geotransform", "--pixel-only"]),
    "bomb-tiled": (_bomb, ["run", "validate"], BOMB),
    "bomb-one-strip": (_bomb_striped, ["run", "validate"], BOMB),
    "bomb-bigtiff": (_bigtiff_bomb, ["run", "validate"], BOMB),
    "above-max-pixels": (
        _above_max_pixels,
        ["run", "validate"],
        [
            "500000 x 500000 px (250.0 gigapixels) is above --max-pixels 200000000000",
            "pass --max-pixels to raise the limit",
        ],
    ),
}
CASES = [(name, command) for name, (_, commands, _) in CATALOGUE.items() for command in commands]


@pytest.mark.parametrize(("case", "command"), CASES, ids=[f"{c}-{m}" for c, m in CASES])
def test_bad_input_is_refused_on_open_in_one_line(case, command, tmp_path):
    make, _, expected = CATALOGUE[case]
    src = make(tmp_path)
    dst = tmp_path / "out"
    args = (*RUN[:1], src, dst, *RUN[1:]) if command == "run" else ("validate", src)
    proc = tiler(*args, cwd=tmp_path)
    assert_one_line_error(proc, src.name, *expected)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert not dst.exists()


BOMB_PROBE = """
import json, resource, sys, time
from tiler.errors import InputError
from tiler.io.open_raster import open_geotiff
from tiler.io.validate import validate

results = []
for path in sys.argv[1:]:
    for call in (open_geotiff, validate):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        try:
            call(path)
            message = None
        except InputError as exc:
            message = str(exc)
        seconds = time.perf_counter() - started
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        results.append([path, call.__name__, message, seconds, growth])
print(json.dumps(results))
"""


def test_bombs_are_refused_from_the_header_without_allocating(tmp_path):
    """Each refusal takes milliseconds and no memory (a 36 GB image; 250 GP for max-pixels)."""
    paths = [
        _bomb(tmp_path),
        _bomb_striped(tmp_path),
        _bigtiff_bomb(tmp_path),
        _above_max_pixels(tmp_path),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(proc.stdout)
    assert len(results) == 2 * len(paths)
    for path, call, message, seconds, growth_kib in results:
        assert message is not None and message.startswith(path), (path, call)
        assert seconds < 0.5, (path, call, seconds)
        assert growth_kib < 16 * 1024, (path, call, growth_kib)  # peak RSS grew < 16 MiB


# ---------------------------------------------------------------------------
# Size limits that a legitimate file must pass
# ---------------------------------------------------------------------------


def sparse_file(path: Path, height: int, width: int, blocks_written: int = 1) -> Path:
    """A SPARSE_OK GeoTIFF of 512-px deflate tiles: only ``blocks_written`` tiles stored."""
    with rasterio.open(
        path, "w", **profile(height, width, block=512, sparse_ok=True, nodata=0)
    ) as ds:
        for k in range(blocks_written):
            tile = random_field(512, 512, seed=k)
            ds.write(tile, window=Window(512 * k, 512, 512, 512))
    return path


def test_large_sparse_file_opens_and_max_pixels_limits_it(tmp_path):
    """12 gigapixels in a file under 1 MB: the ratio counts only the blocks GDAL says are stored."""
    path = sparse_file(tmp_path / "sparse.tif", 100_000, 120_000)
    assert path.stat().st_size < 1_000_000
    with rasterio.open(path) as ds:  # GDAL: one block stored, the others absent
        assert ds.get_tag_item("BLOCK_OFFSET_0_1", "TIFF", bidx=1) is not None  # x 0, y 1
        assert ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) is None
        assert ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1) is None
    assert 100_000 * 120_000 * 3 / path.stat().st_size > MAX_COMPRESSION_RATIO
    source = open_geotiff(path)
    assert source.shape == (100_000, 120_000)
    assert DEFAULT_MAX_PIXELS == 200_000_000_000

    with pytest.raises(InputError) as refused:
        open_geotiff(path, max_pixels=10_000_000_000)
    assert str(refused.value) == (
        f"{path}: 100000 x 120000 px (12.0 gigapixels) is above --max-pixels 10000000000; "
        "pass --max-pixels to raise the limit"
    )
    proc = tiler("validate", path, "--max-pixels", 10_000_000_000, cwd=tmp_path)
    assert_one_line_error(proc, "sparse.tif", "12.0 gigapixels", "--max-pixels 10000000000")
    assert proc.returncode == 2


def test_sparse_file_validates_and_runs(tmp_path):
    """Absent blocks read as nodata: validate reads them, a run equals the reference."""
    path = sparse_file(tmp_path / "sparse.tif", 1024, 2048, blocks_written=2)
    report = validate(path, threads=2)
    assert report.ok and report.blocks == 8
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "--scheduler", "sync", "--chunk-size", 512, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_output_equals_reference(dst, path)


def test_constant_zstd_file_is_refused_until_rewritten_sparse(tmp_path):
    """Blocks of zeros stored with ZSTD reach 15 000:1; SPARSE_OK=TRUE drops them, then it opens."""
    path = tmp_path / "zeros-zstd.tif"
    zstd = profile(8192, 8192, block=512) | {"compress": "zstd"}
    zeros = np.zeros((3, 512, 512), np.uint8)
    with rasterio.open(path, "w", **zstd) as ds:
        for r in range(0, 8192, 512):
            for c in range(0, 8192, 512):
                ds.write(zeros, window=Window(c, r, 512, 512))
    ratio = 8192 * 8192 * 3 / path.stat().st_size
    assert ratio > MAX_COMPRESSION_RATIO
    with pytest.raises(InputError) as refused:
        open_geotiff(path)
    message = str(refused.value)
    assert f"{ratio:,.0f}:1, above the 10,000:1" in message
    assert "SPARSE_OK=TRUE" in message
    assert open_geotiff(path, max_ratio=None).shape == (8192, 8192)

    sparse = tmp_path / "zeros-sparse.tif"
    rasterio.shutil.copy(path, sparse, driver="GTiff", tiled=True, compress="zstd", sparse_ok=True)
    assert open_geotiff(sparse).shape == (8192, 8192)


def test_ordinary_compression_passes_the_ratio_check(tmp_path):
    """Deflate on blocks of zeros tops out near 1 000:1, far under the limit."""
    path = write_geotiff(tmp_path / "zeros.tif", np.zeros((3, 2048, 2048), np.uint8), blocksize=512)
    assert 2048 * 2048 * 3 / path.stat().st_size > 500
    assert open_geotiff(path).shape == (2048, 2048)


# ---------------------------------------------------------------------------
# Truncated and corrupt files: validate lists every bad block; run names one
# ---------------------------------------------------------------------------


def bad_windows(report) -> set:
    return {b.window for b in report.bad}


def cut_file(path: Path, keep: int, name: str) -> Path:
    out = path.with_name(name)
    out.write_bytes(path.read_bytes()[:keep])
    return out


def expected_after_cut(path: Path, keep: int) -> set:
    return {
        window for offset, count, _, window in blocks(tiff_ifds(path)[0]) if offset + count > keep
    }


@pytest.mark.parametrize(
    "profile",
    [
        dict(blocksize=64),
        dict(tiled=False),
        dict(blocksize=64, compress=None),
    ],
    ids=["tiled-deflate", "striped-deflate", "tiled-uncompressed"],
)
def test_validate_lists_every_block_cut_off_and_only_those(profile, tmp_path):
    full = write_geotiff(
        tmp_path / "full.tif", random_field(300, 260), transform=TRANSFORM, **profile
    )
    keep = full.stat().st_size - 40_000  # cut the last 40 kB
    truncated = cut_file(full, keep, "truncated.tif")
    expected = expected_after_cut(full, keep)
    total = len(blocks(tiff_ifds(full)[0]))
    assert 1 < len(expected) < total

    report = validate(truncated, threads=4)
    assert not report.ok
    assert report.blocks == total
    assert bad_windows(report) == expected
    assert [b.window for b in report.bad] == sorted(expected)  # raster order
    for bad in report.bad:
        assert "bands: " in bad.reason and "previous exception" not in bad.reason
    assert validate(full, threads=4).ok


def test_validate_command_prints_every_bad_block_then_one_error_line(tmp_path):
    full = write_geotiff(tmp_path / "full.tif", random_field(300, 260), transform=TRANSFORM)
    keep = full.stat().st_size - 30_000
    truncated = cut_file(full, keep, "truncated.tif")
    expected = expected_after_cut(full, keep)

    proc = tiler("validate", truncated.name, "--threads", 3, cwd=tmp_path)  # named as given
    line = assert_one_line_error(proc, "truncated.tif")
    assert line == f"tiler: error: truncated.tif: {len(expected)} of 25 blocks unreadable"
    assert proc.returncode == 2
    summary, *listed = proc.stdout.strip().splitlines()
    assert summary.startswith("truncated.tif: 300 x 260 px (0.1 MP), 3 band(s) of uint8, ")
    assert "tiled 64 x 64, DEFLATE, pixel-interleaved" in summary
    assert f"{25 - len(expected)} of 25 blocks read" in summary
    assert re.search(r"in \d+\.\d\d s, \d+\.\d MB/s$", summary), summary
    assert len(listed) == len(expected)
    assert {window_of(item) for item in listed} == expected
    for item in listed:
        assert item.startswith("bad block rows ") and "TIFFFillTile" in item, item

    ok = tiler("validate", full.name, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    assert ok.stdout.count("\n") == 1 and "25 of 25 blocks read (234.0 kB decoded)" in ok.stdout


def test_run_on_a_truncated_file_names_a_bad_window(tmp_path):
    full = write_geotiff(tmp_path / "full.tif", random_field(300, 260), transform=TRANSFORM)
    keep = full.stat().st_size - 30_000
    truncated = cut_file(full, keep, "truncated.tif")
    expected = expected_after_cut(full, keep)
    dst = tmp_path / "out"
    proc = tiler("run", truncated, dst, *RUN[1:], cwd=tmp_path)
    line = assert_one_line_error(proc, "truncated.tif", "cannot read window rows")
    assert proc.returncode == 2
    assert any(overlaps(window_of(line), bad) for bad in expected), line
    assert_not_complete(dst)


def corrupt(path: Path, name: str, ifd: int, block: int) -> tuple[Path, tuple]:
    """A copy of ``path`` with one block's compressed bytes overwritten by 0xFF."""
    offset, count, _, window = blocks(tiff_ifds(path)[ifd])[block]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    out = path.with_name(name)
    out.write_bytes(bytes(data))
    return out, window


def test_a_corrupt_block_in_the_middle_is_listed_alone_and_run_names_it(tmp_path):
    full = write_geotiff(tmp_path / "full.tif", random_field(300, 260), transform=TRANSFORM)
    bad, window = corrupt(full, "corrupt.tif", 0, 12)  # 5 x 5 tiles: the centre one
    assert window == TWindow(128, 192, 128, 192)
    report = validate(bad, threads=4)
    assert bad_windows(report) == {window}
    assert report.blocks == 25
    (found,) = report.bad
    assert found.describe().startswith("bad block rows 128:192, cols 128:192: bands: ")
    assert "Decod" in found.reason or "decod" in found.reason, found.reason

    dst = tmp_path / "out"
    proc = tiler("run", bad, dst, *RUN[1:], cwd=tmp_path)
    line = assert_one_line_error(proc, "corrupt.tif", "cannot read window")
    assert overlaps(window_of(line), window), line
    assert_not_complete(dst)


def test_validate_blames_the_band_of_a_planar_file(tmp_path):
    path = tmp_path / "planar.tif"
    image = random_field(128, 192)
    with rasterio.open(path, "w", **profile(128, 192, interleave="band")) as ds:
        ds.write(image)
    assert tiff_ifds(path)[0][PLANAR] == (2,)
    # 6 tiles per band: block 6 + 4 is band 2's tile at row 1, col 1
    bad, window = corrupt(path, "planar-bad.tif", 0, 10)
    assert window == TWindow(64, 128, 64, 128)
    report = validate(bad, threads=2)
    assert report.blocks == 6
    (found,) = report.bad
    assert found.window == window
    assert found.reason.startswith("band 2: ") and "band 1" not in found.reason
    assert report.bytes_decoded == 3 * 128 * 192 - 64 * 64  # all but the bad band's block


def test_validate_reads_the_internal_mask(tmp_path):
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", **profile(128, 128)) as ds:
            ds.write(random_field(128, 128))
            mask = np.full((128, 128), 255, np.uint8)
            mask[:20, :] = 0
            mask[70:, 90:] = 0
            ds.write_mask(mask)
    ifds = tiff_ifds(path)
    assert [ifd.get(SUBFILE, (0,))[0] for ifd in ifds] == [0, 4]  # image, then its mask
    assert validate(path).ok
    bad, window = corrupt(path, "mask-bad.tif", 1, 3)
    assert window == TWindow(64, 128, 64, 128)
    report = validate(bad, threads=2)
    (found,) = report.bad
    assert found.window == window
    assert found.reason.startswith("mask: "), found.reason


def test_validate_a_truncated_bigtiff(tmp_path):
    path = tmp_path / "big.tif"
    image = random_field(256, 256)
    with rasterio.open(path, "w", **profile(256, 256, bigtiff="YES")) as ds:
        ds.write(image)
    keep = path.stat().st_size - 20_000
    expected = expected_after_cut(path, keep)
    assert 1 < len(expected) < 16
    report = validate(cut_file(path, keep, "big-cut.tif"), threads=4)
    assert bad_windows(report) == expected


# ---------------------------------------------------------------------------
# Unusual but valid inputs: the run equals the whole-image reference
# ---------------------------------------------------------------------------


def test_bigtiff_runs_and_equals_the_reference(tmp_path):
    path = tmp_path / "big.tif"
    image = field_image(120, 140)
    with rasterio.open(path, "w", **profile(120, 140, block=32, bigtiff="YES")) as ds:
        ds.write(image)
    assert path.read_bytes()[2:4] == b"\x2b\x00"
    assert validate(path).ok
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_output_equals_reference(dst, path)


def test_uint16_runs_and_equals_the_reference(tmp_path):
    image = field_image(120, 140).astype(np.uint16) * 257 + 3
    image[:, 100:, :30] = 0
    path = write_geotiff(tmp_path / "u16.tif", image, nodata=0, transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ref = assert_output_equals_reference(dst, path)
    assert int(ref.labels.max()) == 4


def nan_field(path: Path) -> Path:
    image = field_image(120, 140).astype(np.float32) / 255
    image[:, :12, :] = np.nan  # a strip of nodata across the top
    image[:, 60:, 110:] = np.nan
    return write_geotiff(path, image, nodata=float("nan"), transform=TRANSFORM)


PER_PIXEL = {"preprocess": [{"index": "exg"}], "threshold": "otsu", "connectivity": 2}


def test_float32_with_nan_nodata_runs_and_equals_the_reference(tmp_path):
    """NaN nodata is invalid in GDAL's mask: no NaN reaches the threshold or the objects."""
    path = nan_field(tmp_path / "f32.tif")
    dst = tmp_path / "out"
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(PER_PIXEL))  # JSON is YAML
    proc = tiler("run", path, dst, "-c", config, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ref = assert_output_equals_reference(dst, path, PER_PIXEL)
    assert np.isfinite(ref.threshold)
    manifest = json.loads((dst / "run.json").read_text())
    assert np.isfinite(manifest["threshold"]["value"])
    assert manifest["object_count"] >= 3


def independent_reference(
    path: Path, config=None, *, valid=None, zero_nan=True, alpha_is_mask=True
):
    """The whole-image reference from the file read by rasterio here, not by tiler's reader.

    ``valid`` defaults to GDAL's dataset mask; non-finite values at invalid
    pixels read as 0 (README, "What tiler refuses and why").
    """
    pipeline = parse_pipeline(config) if isinstance(config, dict) else load_pipeline(config)
    with rasterio.open(path) as ds:
        alpha = tuple(i + 1 for i, c in enumerate(ds.colorinterp) if c.name == "alpha")
        pipeline = pipeline.resolve_bands(ds.count, alpha, alpha_is_mask=alpha_is_mask)
        image = ds.read(list(pipeline.bands))
        if valid is None:
            valid = ds.dataset_mask() > 0
    if zero_nan and image.dtype.kind == "f":
        image = np.where(~np.isfinite(image) & ~valid, 0, image)
    return valid, run_reference(image, valid, pipeline)


def test_float32_nan_nodata_under_a_filter_equals_the_reference(tmp_path):
    """A Gaussian reads NaN nodata beside valid pixels: it reads as 0, so nothing spreads.

    (Until issue 7 the run refused: "preprocessed values are not finite at valid pixels".)
    """
    path = nan_field(tmp_path / "f32.tif")
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    valid, ref = independent_reference(path)
    labels = tiler_api.open_labels(dst).values
    np.testing.assert_array_equal(labels, ref.labels)
    assert not labels[~valid].any()
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["threshold"]["value"] == ref.threshold
    assert np.isfinite(ref.threshold)
    objects = tiler_api.read_objects(dst)
    assert len(objects) == int(ref.labels.max()) >= 3
    assert np.isfinite(objects[["area_m2", "x", "y", "centroid_row"]].to_numpy()).all()
    # Without the zeroing, the reference itself would be poisoned: the rule matters.
    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match="not finite"):
        independent_reference(path, zero_nan=False)  # Otsu over NaN spread by the Gaussian


def test_nan_at_valid_pixels_is_refused_naming_the_file(tmp_path):
    """NaN that is not nodata (no nodata declared): refused, not thresholded."""
    image = field_image(120, 140).astype(np.float32) / 255
    image[:, 30:40, 30:40] = np.nan
    path = write_geotiff(tmp_path / "nan-valid.tif", image, transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "nan-valid.tif", "not finite at valid pixels")
    assert_not_complete(dst)


# ---------------------------------------------------------------------------
# --mask: which pixels are valid
# ---------------------------------------------------------------------------


def nir_tagged_alpha(path: Path) -> tuple[Path, np.ndarray]:
    """Four bands, R G B and NIR, the NIR band tagged alpha; nodata 0 at the right edge.

    NIR is 0 in a block (dark water, say): GDAL's dataset mask takes the
    "alpha" band as the mask and drops it, which is wrong for this file.
    """
    image = field_image(120, 140, bands=4)
    image[3] = 180
    image[3, 70:100, 20:60] = 0  # NIR 0: "transparent" to GDAL
    image[:, :, 125:] = 0  # nodata: every band 0
    with rasterio.open(
        path, "w", **profile(120, 140, count=4, photometric="RGB", alpha="YES", nodata=0)
    ) as ds:
        ds.write(image)
        assert ds.colorinterp[3] == ColorInterp.alpha
    return path, image


NDVI = {"bands": [1, 2, 3, 4], "preprocess": [{"index": "ndvi", "red": 1, "nir": 4}]}
# While band 4 is the mask (--mask dataset or alpha), it takes no spectral role.
RGB = {"bands": [1, 2, 3], "preprocess": [{"index": "exg"}]}


@pytest.mark.parametrize("mode", ["dataset", "alpha", "nodata", "none"])
def test_mask_modes_equal_the_reference_with_that_mask(mode, tmp_path):
    path, image = nir_tagged_alpha(tmp_path / "rgbn.tif")
    expected_valid = {
        "dataset": image[3] > 0,  # GDAL: the alpha band
        "alpha": image[3] > 0,
        "nodata": (image != 0).any(axis=0),  # valid unless every band is nodata
        "none": np.ones(image.shape[1:], bool),
    }[mode]
    alpha_is_mask = mode in ("dataset", "alpha")
    pipeline = RGB if alpha_is_mask else NDVI
    config = tmp_path / "pipeline.yaml"
    config.write_text(json.dumps(pipeline))
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "-c", config, "--mask", mode, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    valid, ref = independent_reference(
        path, pipeline, valid=expected_valid, alpha_is_mask=alpha_is_mask
    )
    labels = tiler_api.open_labels(dst).values
    np.testing.assert_array_equal(labels, ref.labels)
    assert not labels[~valid].any(), "nodata became an object"
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["input"]["options"]["mask"] == mode
    assert manifest["threshold"]["valid_pixels"] == int(valid.sum())


def test_mask_nodata_rescues_nir_tagged_as_alpha(tmp_path):
    """The water block is lost under GDAL's mask and kept under --mask nodata.

    NDVI on the "alpha" band under GDAL's mask is refused, naming that way through.
    """
    path, _ = nir_tagged_alpha(tmp_path / "rgbn.tif")
    rgb, ndvi = tmp_path / "rgb.yaml", tmp_path / "ndvi.yaml"
    rgb.write_text(json.dumps(RGB))
    ndvi.write_text(json.dumps(NDVI))
    counts = {}
    for mode in ("dataset", "nodata"):
        dst = tmp_path / mode
        proc = tiler("run", path, dst, "-c", rgb, "--mask", mode, *RUN[1:], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        counts[mode] = json.loads((dst / "run.json").read_text())["threshold"]["valid_pixels"]
    assert counts["nodata"] - counts["dataset"] == 30 * 40  # the block, and nothing else
    dst = tmp_path / "ndvi"
    proc = tiler("run", path, dst, "-c", ndvi, *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "rgbn.tif", "band 4 is the file's alpha band", "--mask nodata")
    assert not dst.exists()
    proc = tiler("run", path, dst, "-c", ndvi, "--mask", "nodata", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_exported_mask_and_report_follow_the_runs_mask_mode(tmp_path):
    """`tiler export --mask` marks nodata by the mask the run used, not GDAL's default."""
    path, image = nir_tagged_alpha(tmp_path / "rgbn.tif")
    config = tmp_path / "ndvi.yaml"
    config.write_text(json.dumps(NDVI))
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "-c", config, "--mask", "nodata", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cog = tmp_path / "mask.tif"
    proc = tiler("export", dst, "--cog", cog, "--mask", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(cog) as ds:
        exported = ds.read(1)
    valid = (image != 0).any(axis=0)
    np.testing.assert_array_equal(exported == 255, ~valid)
    proc = tiler("report", dst, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fields = pd.read_parquet(dst / "report" / "fields.parquet")  # full precision
    assert fields["imaged_pct"].iloc[0] == pytest.approx(100 * valid.mean(), abs=1e-10)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("nodata", ["has no nodata value", "--mask nodata"]), ("alpha", ["no alpha band"])],
)
def test_mask_mode_the_file_cannot_serve_is_refused(mode, expected, tmp_path):
    path = write_geotiff(tmp_path / "rgb.tif", field_image(), transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "--mask", mode, *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "rgb.tif", *expected)
    assert not dst.exists()


# ---------------------------------------------------------------------------
# Georeferencing: --assume-crs, --pixel-only, CRS units
# ---------------------------------------------------------------------------


def _without_crs(path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return write_geotiff(path, field_image(120, 140), **kwargs)


def test_assume_crs_fills_in_a_missing_crs(tmp_path):
    path = _without_crs(tmp_path / "no-crs.tif", crs=None, transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "--assume-crs", "EPSG:32633", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["input"]["options"]["georeferencing"] == "assumed"
    assert rasterio.crs.CRS.from_wkt(manifest["input"]["crs_wkt"]).to_epsg() == 32633
    objects = tiler_api.read_objects(dst)
    assert objects.crs.to_epsg() == 32633
    np.testing.assert_allclose(objects["area_m2"], objects["area_px"] * 0.05**2, rtol=1e-12)
    assert len(objects) == len(BLOBS_OF_FIELD)


def test_assume_crs_is_refused_when_the_file_has_one_or_it_is_not_a_crs(tmp_path):
    path = write_geotiff(tmp_path / "utm.tif", field_image(), transform=TRANSFORM)
    proc = tiler("run", path, tmp_path / "a", "--assume-crs", "EPSG:4326", *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "utm.tif", "already has a CRS", "EPSG:32611")
    bare = _without_crs(tmp_path / "no-crs.tif", crs=None, transform=TRANSFORM)
    proc = tiler("run", bare, tmp_path / "b", "--assume-crs", "EPSG:0", *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "--assume-crs", "'EPSG:0' is not a CRS")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_validate_takes_the_same_georeferencing_options_as_run(tmp_path):
    bare = _without_crs(tmp_path / "no-crs.tif", crs=None, transform=TRANSFORM)
    proc = tiler("validate", bare, "--assume-crs", "EPSG:32633", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    pixels = _without_crs(tmp_path / "pixels.tif", crs=None, transform=Affine.identity())
    proc = tiler("validate", pixels, cwd=tmp_path)
    assert_one_line_error(proc, "pixels.tif", "--pixel-only")
    proc = tiler("validate", pixels, "--pixel-only", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_pixel_only_gives_pixels_and_never_square_metres(tmp_path):
    path = _without_crs(tmp_path / "pixels.tif", crs=None, transform=Affine.identity())
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, "--pixel-only", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, ref = independent_reference(path)
    np.testing.assert_array_equal(tiler_api.open_labels(dst).values, ref.labels)
    table = pq.read_table(dst / "objects.parquet")
    assert table.num_rows == int(ref.labels.max()) == len(BLOBS_OF_FIELD)
    for name in ("area_m2", "x", "y", "geometry"):
        assert table.column(name).null_count == table.num_rows, name
    assert table.column("area_px").null_count == 0
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["input"]["options"]["georeferencing"] == "none"
    proc = tiler("report", dst, cwd=tmp_path)
    assert_one_line_error(proc, "out", "--pixel-only run has no map coordinates")


@pytest.mark.parametrize(
    ("crs", "transform", "metres_per_unit"),
    [
        ("EPSG:2263", Affine(0.25, 0, 980000, 0, -0.25, 200000), 0.3048006096012192),  # US ft
        ("EPSG:32633", TRANSFORM, 1.0),
    ],
)
def test_area_m2_is_in_square_metres_whatever_the_crs_unit(
    crs, transform, metres_per_unit, tmp_path
):
    path = write_geotiff(tmp_path / "f.tif", field_image(), crs=crs, transform=transform)
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objects = tiler_api.read_objects(dst)
    pixel = abs(transform.a * transform.e) * metres_per_unit**2
    np.testing.assert_allclose(objects["area_m2"], objects["area_px"] * pixel, rtol=1e-9)


def footprint(transform: Affine, height: int, width: int) -> tuple[list, list]:
    """The image's corners (lons, lats), for pyproj's polygon area."""
    corners = [transform * (c, r) for c, r in ((0, 0), (width, 0), (width, height), (0, height))]
    return [x for x, _ in corners], [y for _, y in corners]


def test_area_m2_of_a_geographic_crs_is_geodesic(tmp_path):
    """EPSG:4326 at 60° N: each object's area against pyproj's geodesic area of its pixels."""
    from pyproj import Geod

    step = 2e-6  # degrees: about 22 cm north-south, 11 cm east-west at 60° N
    transform = Affine(step, 0, 10.0, 0, -step, 60.0)
    path = write_geotiff(
        tmp_path / "wgs84.tif", field_image(), crs="EPSG:4326", transform=transform
    )
    dst = tmp_path / "out"
    proc = tiler("run", path, dst, *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objects = tiler_api.read_objects(dst)
    labels = tiler_api.open_labels(dst).values
    geod = Geod(ellps="WGS84")
    assert len(objects) == len(BLOBS_OF_FIELD)
    for row in objects.itertuples():
        rows, _ = np.nonzero(labels == row.label)
        total = 0.0
        for r in rows:  # the geodesic area of each pixel, exactly, summed
            north, south = 60.0 - r * step, 60.0 - (r + 1) * step
            area, _ = geod.polygon_area_perimeter(
                [10, 10 + step, 10 + step, 10], [south, south, north, north]
            )
            total += abs(area)
        assert row.area_m2 == pytest.approx(total, rel=1e-6)
        assert row.area_m2 != pytest.approx(row.area_px * step * step, rel=0.5)  # not degrees²
    # The report's footprint field: its pixels cover it (pixel areas in m² there too).
    proc = tiler("report", dst, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fields = pd.read_parquet(dst / "report" / "fields.parquet")  # full precision
    assert fields["imaged_pct"].iloc[0] == pytest.approx(100.0, rel=1e-4)
    assert fields["area_ha"].iloc[0] * 1e4 == pytest.approx(
        sum(abs(geod.polygon_area_perimeter(*box)[0]) for box in [footprint(transform, 60, 70)]),
        rel=1e-9,
    )


# ---------------------------------------------------------------------------
# --driver: another GDAL format, only when asked
# ---------------------------------------------------------------------------


def test_driver_opens_a_vrt_only_when_asked(tmp_path):
    tif = write_geotiff(tmp_path / "base.tif", field_image(120, 140), transform=TRANSFORM)
    vrt = tmp_path / "mosaic.tif"  # a VRT named .tif
    rasterio.shutil.copy(tif, vrt, driver="VRT")
    proc = tiler("run", vrt, tmp_path / "refused", *RUN[1:], cwd=tmp_path)
    assert_one_line_error(proc, "mosaic.tif", "not a readable GeoTIFF")
    proc = tiler("run", vrt, tmp_path / "vrt", "--driver", "VRT", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = tiler("run", tif, tmp_path / "tif", *RUN[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(
        tiler_api.open_labels(tmp_path / "vrt").values,
        tiler_api.open_labels(tmp_path / "tif").values,
    )
    manifest = json.loads((tmp_path / "vrt" / "run.json").read_text())
    assert manifest["input"]["options"]["driver"] == "VRT"


# ---------------------------------------------------------------------------
# The pipeline file is checked before the input is read
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("preprocess:\n  - index: exg\n  - blur: {radius: 2}\n", ["preprocess[1]", "'blur'"]),
        (
            "preprocess:\n  - index: exg\n  - gaussian: {sigma: abc}\n",
            ["preprocess[1].gaussian.sigma", "'abc'"],
        ),
        ("bands: [1, 2, 9]\n", ["bands", "band 9", "3 band(s)"]),
        ("preprocess:\n  - index: ndvi\n", ["preprocess[0].nir", "band 4"]),
    ],
    ids=["unknown-step", "wrong-type", "band-out-of-range", "ndvi-without-nir"],
)
def test_pipeline_is_refused_before_the_input_is_read(content, expected, tmp_path):
    """On a truncated input, the pipeline's error comes first and DST is never created."""
    full = write_geotiff(tmp_path / "full.tif", random_field(300, 260), transform=TRANSFORM)
    src = cut_file(full, full.stat().st_size // 2, "truncated.tif")
    config = tmp_path / "pipeline.yaml"
    config.write_text(content)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "-c", config, *RUN[1:], cwd=tmp_path)
    line = assert_one_line_error(proc, *expected)
    assert "window" not in line
    assert proc.returncode == 2
    assert not dst.exists()


def test_max_pixels_flag_lowers_and_raises_the_limit(tmp_path):
    """`tiler run --max-pixels N` refuses a larger input before anything is written;
    the same input runs with the default limit."""
    src = write_geotiff(tmp_path / "field.tif", field_image(), transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "--scheduler", "sync", "--max-pixels", 4000, "-q", cwd=tmp_path)
    assert_one_line_error(proc, "field.tif", "60 x 70 px", "above --max-pixels 4000")
    assert not dst.exists()
    proc = tiler("run", src, dst, "--scheduler", "sync", "--max-pixels", 4200, "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
