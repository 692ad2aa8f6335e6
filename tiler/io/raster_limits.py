"""Limits on what an input may declare, checked on open from the header alone.

Before any pixel is read or allocated: too many pixels, or stored blocks that
would decompress to far more than any real image (a decompression bomb, or a
damaged or truncated file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiler.defaults import DEFAULT_MAX_PIXELS  # noqa: F401 - a limit checked here
from tiler.errors import InputError

# Compression: the uncompressed bytes of the blocks a file stores, over the
# file's size. Real imagery compresses at most ~50:1 (lossy JPEG or JPEG XL at
# low quality; lossless codecs 2-4:1). Blocks of one constant value stored in
# full (nodata around a survey, written without SPARSE_OK) reach, for 512 x 512
# RGB blocks measured with GDAL 3.10: PackBits 64:1, JPEG 470:1, LZW 490:1,
# deflate 960:1, WebP 1 460:1, LZMA 3 200:1, LERC 9 800:1, LERC_ZSTD 11 700:1,
# ZSTD 15 600:1. So a whole file above 10 000:1 is either (a) a forged or
# damaged header (a decompression bomb: a few kB declaring gigapixels, or a
# truncated file), or (b) a ZSTD/LERC file in which imagery covers under about
# 0.01 % of the area (at 3:1 for the imagery), a file with nothing to segment.
# Blocks GDAL reports as absent (SPARSE_OK files: offset 0, read as nodata) are
# not counted, so (b) rewritten with SPARSE_OK=TRUE opens, as does any
# legitimately sparse file however large its canvas.
MAX_COMPRESSION_RATIO = 10_000
# TIFF stores an offset and a byte count for every block, even an absent one
# (both 0), each at least a 16-bit SHORT: a file smaller than 4 bytes per block
# cannot hold its own block index, so its header lies about its size, and
# GDAL's "absent" for those blocks (libtiff ignores an index of the wrong
# length) is not trusted.
_MIN_INDEX_BYTES_PER_BLOCK = 4


def size_text(n: float) -> str:
    """``431 bytes``, ``50.6 kB``, ``36.0 GB`` (decimal units)."""
    if n < 1000:
        return f"{int(n)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def block_layout(ds) -> tuple[int, int, int, int]:
    """``(block_rows, block_cols, planes, bytes_per_block)`` of an open GTiff dataset.

    A pixel-interleaved file has one plane of blocks holding every band; a
    band-interleaved (planar) one has a plane of single-band blocks per band.
    """
    from rasterio.enums import Interleaving

    bh, bw = ds.block_shapes[0]
    itemsize = np.dtype(ds.dtypes[0]).itemsize
    if ds.count > 1 and ds.interleaving == Interleaving.band:
        return -(-ds.height // bh), -(-ds.width // bw), ds.count, bh * bw * itemsize
    return -(-ds.height // bh), -(-ds.width // bw), 1, bh * bw * itemsize * ds.count


def _stored_bytes(ds, limit: int | None = None) -> int:
    """Uncompressed bytes of the blocks GDAL reports stored; stops once above ``limit``.

    GDAL reports ``BLOCK_OFFSET_x_y`` (metadata domain ``TIFF``) for every
    block present in the file, and nothing for an absent (sparse) one.
    """
    rows, cols, planes, per_block = block_layout(ds)
    stored = 0
    for band in range(1, planes + 1):
        for y in range(rows):
            for x in range(cols):
                if ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=band) is not None:
                    stored += per_block
                    if limit is not None and stored > limit:
                        return stored
    return stored


def check_declared_size(
    ds, path: Path, file_size: int, max_pixels: int | None, max_ratio: float | None
) -> None:
    """Refuse, from the header alone, an image too large or too compressed to be real."""
    h, w = ds.height, ds.width
    if max_pixels is not None and h * w > max_pixels:
        raise InputError(
            f"{path}: {h} x {w} px ({h * w / 1e9:.1f} gigapixels) is above --max-pixels "
            f"{max_pixels:.0f}; pass --max-pixels to raise the limit"
        )
    if max_ratio is None:
        return
    rows, cols, planes, per_block = block_layout(ds)
    n_blocks = rows * cols * planes
    declared = n_blocks * per_block
    limit = int(max_ratio * file_size)
    if declared <= limit:
        return
    if n_blocks > 1 and file_size < n_blocks * _MIN_INDEX_BYTES_PER_BLOCK:
        stored = declared  # the header lies: do not trust GDAL's absent blocks
    elif _stored_bytes(ds, limit) <= limit:
        return
    else:
        stored = _stored_bytes(ds)  # all of them, for the message
    kind = "pixels" if stored == declared else "pixels in the blocks it stores"
    raise InputError(
        f"{path}: {h} x {w} px x {ds.count} band(s) of {ds.dtypes[0]}, "
        f"{size_text(stored)} of {kind}, in a file of {size_text(file_size)}: "
        f"a compression ratio of {stored / file_size:,.0f}:1, above the {max_ratio:,.0f}:1 "
        "no real image reaches; a decompression bomb, or a damaged or truncated file "
        "(an image that is nearly all nodata opens once rewritten with "
        "gdal_translate -co TILED=YES -co SPARSE_OK=TRUE, which leaves its empty blocks out)"
    )
