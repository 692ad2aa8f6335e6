"""Tile shapes for the input's block layout: striped (untiled) GeoTIFFs (issue 7).

GDAL reads a GeoTIFF block by block. A tiled file's blocks are small squares
(typically 256 or 512 px), so a 2048 x 2048 tile decodes about its own pixels.
A striped (untiled) file's blocks are strips of ``rows_per_strip`` rows that
span the full width of the image: GDAL reports them as ``block_shapes[0] ==
(rows_per_strip, width)``. GDAL writes 8 KB strips by default (one row per
strip for any RGBA image wider than 2048 px), and reports a large single-strip
file as one-row strips too (a 4000 x 4000 RGBA deflate one; a 2000 x 3000 one
as a single block). A square tile of a striped file decodes whole strips,
``width / tile width`` times the pixels it uses, and the tiles across a row of
tiles decode the same strips again unless GDAL's block cache (256 MB per
worker process, :data:`tiler.io.raster.GDAL_ENV`) still holds them for that
thread's dataset handle: each thread keeps its own handle, so two threads
working in the same row of tiles decode its strips twice.

:func:`plan_chunks` keeps tiled files' chunks as they are and, for a striped
file wider than a tile, chooses tiles that follow the strips, with at most as
many pixels as the requested chunk (the memory per tile stays the same):

- full-width tiles, ``chunk_rows * chunk_cols // width`` rows rounded down to
  whole strips, while that is at least ``MIN_ROWS`` (256): each strip is
  decoded by one tile (and by the halos of its neighbours);
- wider images (over 16 384 px for 2048 x 2048 chunks): ``MIN_ROWS`` rows of
  whole strips, as wide as the pixel budget allows; thinner (down to
  ``CACHED_MIN_ROWS``) when the strips of a row of tiles, ``rows * width *
  pixel_bytes``, would take more than a quarter of the block cache, so that
  they stay in it while the tiles across the row are read;
- strips taller than that: one strip per row of tiles, if a strip fits a
  quarter of the cache; otherwise nothing helps (every tile decodes its
  strips whatever its shape) and the chunks are kept.

Tile rows and columns are then evened out (8000 rows in steps of 524 become
16 rows of tiles of 500, not 15 of 524 and one of 140).

Measured with ``benchmarks/striped.py`` (``benchmarks/results/striped.md``; 2
cores, tiler's defaults, the benchmark pipeline, RGBA uint8, deflate +
predictor 2, same pixels in every file; best of 3; CPU is the process's user +
system time, less disturbed than wall time by the other work, 37-78 % of the
machine, that ran meanwhile). Ratios to the tiled file with 2048 x 2048 tiles,
wall / CPU::

    image           strips   tiles                         wall   CPU
    8000 x 8000     1 row    2048 x 2048                   1.21   1.13
                             500 x 8000    (plan_chunks)   0.94   0.91
                             2048 x 8000   (+0.5 GB RSS)   1.12   1.04
                             1024 x 4096                   1.46   1.05
                    256 rows 2048 x 2048                   1.29   1.15
                             512 x 8000    (plan_chunks)   1.08   0.98
    4096 x 32768    1 row    2048 x 2048                   1.82   2.09
                             256 x 16384   (plan_chunks)   1.00   1.05
                             512 x 8192                    1.25   1.22
                             128 x 32768   (full width)    1.04   1.03

Before that, on the 4096 x 32768 file with the same pipeline but a reach of
40 px (Gaussian sigma 6, closing and opening of radius 10), CPU s, 2 runs
each: tiled 11.6-12.1; 512 x 8192: 15.9-17.0; 256 x 16384: 15.3-15.7;
128 x 32768: 17.7-18.5 (and 2.9 GB peak RSS against 2.0-2.3: halos of 40 px
above and below 128 rows triple the rows read). With the 4 px reach of the
benchmark pipeline 128 x 32768 was the fastest by a little. So 256 rows is the
floor of full-width tiles, and the shape of wider tiles: the best or near it
for short and long reaches. On the 8000 x 8000 file with 256-row strips,
524 x 8000 tiles (not whole strips) ran like 512 x 8000 ones: the cache holds
the strip two rows of tiles share; tiles follow whole strips all the same, for
when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fewest rows (and columns) of a tile that follows the strips: the halo above and
# below a thinner tile reads (and computes) too many rows again; with a 40 px reach
# 128-row tiles were measured 15-20 % slower than 256-row ones (see above).
MIN_ROWS = 256
MIN_COLS = 256
# Thinner still (down to this) when MIN_ROWS rows of strips overflow the cache share.
CACHED_MIN_ROWS = 64
# GDAL's block cache per worker process (tiler.io.raster.GDAL_ENV: GDAL_CACHEMAX=256 MB).
DEFAULT_CACHE_BYTES = 256 * 2**20
# The decoded strips of a row of tiles may take this share of the block cache:
# each thread has its own dataset handle (two per process by default) and the
# halo strips of the next row must fit beside them.
CACHE_SHARE = 4

# What benchmarks/striped.py measured (benchmarks/results/striped.md), quoted in the warning.
MEASURED_COST = "measured 1.2-1.8x slower than the same image tiled"
MEASURED_ALIGNED = "measured 0.9-1.1x the tiled file's time"
FIX = (
    "Rewrite it tiled once to avoid this: gdal_translate -co TILED=YES "
    "-co COMPRESS=DEFLATE -co PREDICTOR=2 -co BIGTIFF=IF_SAFER SRC OUT"
)


@dataclass(frozen=True)
class ChunkPlan:
    """The tile shape to run with and, for a striped input, the warning to show."""

    chunks: tuple[int, int]  # (rows, cols)
    warning: str | None = None  # one paragraph, without the file's name
    striped: bool = False  # a striped file wider than a tile: what the warning is about


def is_striped(width: int, block_shape: tuple[int, int]) -> bool:
    """Whether blocks of ``block_shape`` (GDAL's ``(rows, cols)``) span the full width."""
    return block_shape[1] >= width


def _normalise(chunk_size: int | tuple[int, int]) -> tuple[int, int]:
    chunks = (chunk_size, chunk_size) if isinstance(chunk_size, int) else tuple(chunk_size)
    if len(chunks) != 2 or any(isinstance(c, bool) or int(c) != c or c < 1 for c in chunks):
        raise ValueError(f"chunk size: expected a positive integer or two, got {chunk_size!r}")
    return int(chunks[0]), int(chunks[1])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _even(length: int, step: int, unit: int) -> int:
    """``step`` lowered, in multiples of ``unit``, so ``length`` splits into equal parts.

    The same number of parts as ``step`` gives, without a thin last one
    (8000 rows in steps of 524: 16 of 500 rather than 15 of 524 and one of 140).
    """
    if step >= length:
        return length
    parts = _ceil_div(length, step)
    even = _ceil_div(_ceil_div(length, parts), unit) * unit
    return even if even <= step else step


def _aligned(height: int, width: int, strip: int, chunks: tuple[int, int], row_bytes: int,
             cache_bytes: int) -> tuple[int, int] | None:  # fmt: skip
    """Tiles following strips of ``strip`` rows with ``chunks``' pixels, or None if none fit."""
    rows, cols = chunks
    budget = rows * cols
    min_rows, min_cols = min(MIN_ROWS, rows), min(MIN_COLS, cols)
    full = budget // width // strip * strip  # full-width tiles of whole strips
    if full >= min(min_rows, height):
        return (_even(height, full, strip), width)
    share = cache_bytes // CACHE_SHARE
    target = min_rows
    if target * row_bytes > share:  # thinner, so a row of tiles' strips stays in the cache
        target = max(share // row_bytes, min(CACHED_MIN_ROWS, rows))
    if strip <= target:
        r = target // strip * strip
    elif strip * row_bytes <= share:
        r = strip  # one strip per row of tiles, kept in the cache across the row
    else:
        return None  # every tile would decode its (uncacheable) strip again whatever its shape
    r = _even(height, r, strip)
    c = min(budget // r, width)
    if c < min_cols:  # strips too tall to follow within the tile's pixel budget
        return None
    return (r, _even(width, c, 1))


def plan_chunks(
    height: int,
    width: int,
    block_shape: tuple[int, int],
    chunk_size: int | tuple[int, int],
    *,
    explicit: bool,
    pixel_bytes: int = 4,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> ChunkPlan:
    """The chunks (tiles) to run an image of ``height`` x ``width`` px with.

    Parameters
    ----------
    height, width : int
        The image's size in pixels.
    block_shape : (int, int)
        GDAL's block shape, ``(rows, cols)``: rasterio's ``ds.block_shapes[0]``,
        :attr:`tiler.io.raster.GeoTiffSource.block_shape`.
    chunk_size : int or (int, int)
        The requested tile size (rows, cols).
    explicit : bool
        Whether the user chose ``chunk_size``: then it is kept as it is, and
        a striped input only gets the warning.
    pixel_bytes : int
        Bytes GDAL decodes per pixel of a strip: bands x bytes per sample.
    cache_bytes : int
        GDAL's block cache per worker process.

    Returns
    -------
    ChunkPlan
        ``chunks`` unchanged and no warning for a tiled file, or a striped one
        no wider than a tile (its tiles already span the full width). For a
        wider striped file, a warning and, unless ``explicit``, tiles that
        follow the strips with the requested chunk's number of pixels (see
        the module's docstring for the rule and the measurements).
    """
    chunks = _normalise(chunk_size)
    rows_per_strip, block_cols = (int(b) for b in block_shape)
    if height < 1 or width < 1 or rows_per_strip < 1 or block_cols < 1:
        raise ValueError(f"bad image {height} x {width} or block shape {block_shape}")
    if not is_striped(width, (rows_per_strip, block_cols)) or width <= chunks[1]:
        return ChunkPlan(chunks)
    rows, cols = chunks
    strips = f"{rows_per_strip} row{'s' if rows_per_strip > 1 else ''} x {width} px"
    head = (
        f"striped (untiled) GeoTIFF, in strips of {strips}: a {rows} x {cols} tile decodes "
        f"whole strips, {width / cols:.1f}x the pixels it uses ({MEASURED_COST})"
    )
    aligned = _aligned(height, width, rows_per_strip, chunks, width * pixel_bytes, cache_bytes)
    if aligned is None:
        middle = f"the strips are too tall to follow; keeping {rows} x {cols} tiles"
    elif explicit:
        r, c = aligned
        middle = (
            f"keeping the --chunk-size you gave; without it tiler would use {r} x {c} tiles "
            f"that follow the strips ({MEASURED_ALIGNED})"
        )
    else:
        r, c = aligned
        middle = f"using {r} x {c} tiles that follow the strips ({MEASURED_ALIGNED})"
    chosen = chunks if aligned is None or explicit else aligned
    return ChunkPlan(chosen, f"{head}; {middle}. {FIX}", striped=True)
