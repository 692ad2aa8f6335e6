"""Reading GeoTIFF orthomosaics: checks on open, and windows read by path inside tasks.

A :class:`GeoTiffSource` is a small picklable value (a path and the facts
read on open); each task opens the file itself, so no dataset handle ever
crosses a process boundary. Windows are ``((row_start, row_stop),
(col_start, col_stop))``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.env import set_gdal_config
from rasterio.errors import RasterioError
from rasterio.windows import Window

from tiler.errors import InputError

WindowRC = tuple[tuple[int, int], tuple[int, int]]

# GDAL settings for reading inside dask tasks, set by the tasks themselves so
# that workers need no set-up however they were started (unless the worker's
# environment sets them): the tasks are the parallelism, and each worker
# process keeps decoded blocks for the halos of the next tiles.
GDAL_ENV = {"GDAL_NUM_THREADS": "1", "GDAL_CACHEMAX": 256}
_HANDLES = threading.local()
_MAX_HANDLES = 8


def _open_cached(path: str):
    """A dataset handle kept open by this thread (rasterio handles are not thread-safe).

    Reading a tile with its halo decodes the blocks around it, which are
    the neighbours' own blocks: a handle that lives across tasks keeps them
    in GDAL's block cache, so a worker decodes each block about once instead
    of up to 2.25 times (2048-pixel tiles over 512-pixel blocks).
    A handle is reopened when the file changes on disk.
    """
    handles = getattr(_HANDLES, "handles", None)
    if handles is None:
        handles = _HANDLES.handles = {}
        for key, value in GDAL_ENV.items():  # a worker's own environment wins
            if key not in os.environ:
                set_gdal_config(key, value)
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    ds = handles.get(key)
    if ds is None or ds.closed:
        for stale in [k for k in handles if k[0] == path]:  # the file changed
            handles.pop(stale).close()
        while len(handles) >= _MAX_HANDLES:  # dicts keep insertion order: oldest first
            handles.pop(next(iter(handles))).close()
        ds = handles[key] = rasterio.open(path, driver="GTiff")
    return ds


class RasterSource(Protocol):
    """What the tiled engine needs from an input raster."""

    name: str
    height: int
    width: int
    count: int
    alpha_bands: tuple[int, ...]
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f

    def read(self, bands: tuple[int, ...], window: WindowRC) -> tuple[np.ndarray, np.ndarray]:
        """``(image, valid)``: ``(len(bands), h, w)`` raw values and the ``(h, w)`` bool mask."""


def _gdal_reason(exc: BaseException) -> str:
    """The innermost GDAL message behind a rasterio error (not "see previous exception")."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip() or exc.__class__.__name__


def describe_window(window: WindowRC) -> str:
    (r0, r1), (c0, c1) = window
    return f"rows {r0}:{r1}, cols {c0}:{c1}"


def fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """A quick identity of a large file: its size and the SHA-256 of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            digest.update(f.read(chunk))
    return digest.hexdigest()


@dataclass(frozen=True)
class GeoTiffSource:
    """A georeferenced GeoTIFF, checked on open; read window by window in tasks."""

    path: str
    height: int
    width: int
    count: int
    dtype: str
    alpha_bands: tuple[int, ...]
    nodata: float | None
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    block_shape: tuple[int, int]

    @property
    def name(self) -> str:
        return self.path

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def read(self, bands: tuple[int, ...], window: WindowRC) -> tuple[np.ndarray, np.ndarray]:
        (r0, r1), (c0, c1) = window
        win = Window(c0, r0, c1 - c0, r1 - r0)
        try:
            return self._read(_open_cached(self.path), list(bands), win)
        except RasterioError as exc:
            reason = _gdal_reason(exc)
        # Raised outside the handler: the InputError carries no GDAL exception
        # as context, so it pickles cleanly back from a distributed worker.
        raise InputError(f"{self.path}: cannot read window {describe_window(window)}: {reason}")

    def _read(self, ds, bands: list[int], win: Window) -> tuple[np.ndarray, np.ndarray]:
        """The bands and ``dataset_mask() > 0``, decoding each block once where GDAL allows.

        GDAL's dataset mask is the alpha band itself when the file has an 8-bit
        alpha band, and all-valid when there is no alpha, nodata or internal
        mask: then the mask comes from the same read as the bands. Otherwise
        (nodata, internal masks, 16-bit alpha) GDAL computes it.
        """
        flags = ds.mask_flag_enums[0]
        if flags == [MaskFlags.all_valid]:
            image = ds.read(bands, window=win)
            return image, np.ones(image.shape[1:], dtype=bool)
        alpha = self.alpha_bands[0] if len(self.alpha_bands) == 1 else None
        if alpha is not None and MaskFlags.alpha in flags and ds.dtypes[alpha - 1] == "uint8":
            planes = ds.read(sorted(set(bands) | {alpha}), window=win)
            order = sorted(set(bands) | {alpha})
            image = planes[[order.index(b) for b in bands]]
            return image, planes[order.index(alpha)] > 0
        return ds.read(bands, window=win), ds.dataset_mask(window=win) > 0

    def read_all(self, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The whole image (for the in-memory reference only)."""
        return self.read(bands, ((0, self.height), (0, self.width)))


# Limits on what an input may declare, checked on open from the header alone,
# before any pixel is read or allocated.
#
# Pixels: tiler is built for 1-100 gigapixel orthomosaics; 200 GP leaves twice
# that headroom, and a header declaring more is far likelier a damaged or
# forged file than a survey (a run over it would take hours before failing).
DEFAULT_MAX_PIXELS = 200_000_000_000
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


def _size_text(n: float) -> str:
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


def _check_declared_size(
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
        f"{_size_text(stored)} of {kind}, in a file of {_size_text(file_size)}: "
        f"a compression ratio of {stored / file_size:,.0f}:1, above the {max_ratio:,.0f}:1 "
        "no real image reaches; a decompression bomb, or a damaged or truncated file "
        "(an image that is nearly all nodata opens once rewritten with "
        "gdal_translate -co TILED=YES -co SPARSE_OK=TRUE, which leaves its empty blocks out)"
    )


def open_geotiff(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_ratio: float | None = MAX_COMPRESSION_RATIO,
) -> GeoTiffSource:
    """Check that ``path`` is a readable, georeferenced GeoTIFF and describe it.

    Opens the file with the GTiff driver only, and reads only its header:
    an image above ``max_pixels`` pixels (width x height), or whose stored
    blocks would decompress to more than ``max_ratio`` times the file's size,
    is refused before any pixel is read (``None`` turns a check off).

    Raises
    ------
    InputError
        With one line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a GeoTIFF")
    file_size = path.stat().st_size
    if file_size == 0:
        raise InputError(f"{path}: is an empty file, not a GeoTIFF")
    try:
        with rasterio.open(path, driver="GTiff") as ds:
            _check_declared_size(ds, path, file_size, max_pixels, max_ratio)
            if ds.crs is None or ds.transform.is_identity:
                raise InputError(
                    f"{path}: has no georeferencing (CRS and geotransform); "
                    "tiler needs both for map coordinates and areas in m²"
                )
            alpha = tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha)
            t = ds.transform
            return GeoTiffSource(
                path=str(path.resolve()),
                height=ds.height,
                width=ds.width,
                count=ds.count,
                dtype=ds.dtypes[0],
                alpha_bands=alpha,
                nodata=ds.nodata,
                crs_wkt=ds.crs.to_wkt(),
                transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                block_shape=tuple(ds.block_shapes[0]),
            )
    except RasterioError as exc:
        reason = _gdal_reason(exc)
    raise InputError(f"{path}: not a readable GeoTIFF ({reason})")


@dataclass(frozen=True, eq=False)
class ArraySource:
    """An in-memory raster with the interface of :class:`GeoTiffSource`.

    For tests and notebooks: every task receives the whole array, so keep it small.
    """

    image: np.ndarray  # (count, height, width)
    valid: np.ndarray  # (height, width) bool
    transform: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    crs_wkt: str = ""
    name: str = "<array>"
    alpha_bands: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return self.image.shape[0]

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def read(self, bands: tuple[int, ...], window: WindowRC) -> tuple[np.ndarray, np.ndarray]:
        (r0, r1), (c0, c1) = window
        planes = [b - 1 for b in bands]
        return self.image[planes, r0:r1, c0:c1], self.valid[r0:r1, c0:c1]


@dataclass(frozen=True)
class SyntheticSource:
    """A :class:`tiler.synthetic.SyntheticField` read as a raster source, never written to disk.

    Lets graphs be planned (and small ones run) over images of any size.
    """

    field: object  # tiler.synthetic.SyntheticField
    alpha_bands: tuple[int, ...] = (4,)

    @property
    def name(self) -> str:
        return f"<synthetic {self.height} x {self.width}, seed {self.field.seed}>"

    @property
    def height(self) -> int:
        return self.field.height

    @property
    def width(self) -> int:
        return self.field.width

    @property
    def count(self) -> int:
        return self.field.count

    @property
    def crs_wkt(self) -> str:
        from rasterio.crs import CRS

        return CRS.from_user_input(self.field.crs).to_wkt()

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        t = self.field.transform
        return (t.a, t.b, t.c, t.d, t.e, t.f)

    def read(self, bands: tuple[int, ...], window: WindowRC) -> tuple[np.ndarray, np.ndarray]:
        rgba = self.field.read(window)
        return rgba[[b - 1 for b in bands]], rgba[3] > 0
