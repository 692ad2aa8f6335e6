"""Reading GeoTIFF orthomosaics: checks on open, and windows read by path inside tasks.

A :class:`GeoTiffSource` is a small picklable value (a path and the facts
read on open); each task opens the file itself, so no dataset handle ever
crosses a process boundary. Windows are :class:`tiler.tiling.Window`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.env import set_gdal_config
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from tiler.errors import InputError
from tiler.tiling import Window

# GDAL settings for reading inside dask tasks, set by the tasks themselves so
# that workers need no set-up however they were started (unless the worker's
# environment sets them): the tasks are the parallelism, and each worker
# process keeps decoded blocks for the halos of the next tiles.
#
# GDAL's own messages go to CPL_LOG instead of stderr: a damaged file makes
# libtiff print warnings and errors ("Nonstandard tile width", "Can not read
# TIFF directory count") from inside the tasks' reads, where rasterio has no
# error handler of its own installed. Every failure also raises, and becomes
# one error line naming the file, window and GDAL's reason; the warnings are
# noise beside it. A CPL_LOG set by the user keeps their log.
GDAL_ENV = {"GDAL_NUM_THREADS": "1", "GDAL_CACHEMAX": 256, "CPL_LOG": os.devnull}
# tiler checks georeferencing itself, with its own message (or --pixel-only
# says it is absent on purpose): rasterio's warning on opening such a file,
# on the driver and in every task, would only add lines before that message.
# A filter, not catch_warnings(), which is not thread-safe.
# Likewise rasterio's NodataShadowWarning: which mask wins is tiler's
# documented rule (--mask), not a surprise to warn about on every tile.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
warnings.filterwarnings("ignore", category=NodataShadowWarning)
_HANDLES = threading.local()
_MAX_HANDLES = 8


def _quiet_gdal() -> None:
    """Apply :data:`GDAL_ENV` in this process (a worker's own environment wins).

    Called on opening an input and by each task thread's first read; cheap to repeat.
    """
    for key, value in GDAL_ENV.items():
        if key not in os.environ:
            set_gdal_config(key, value)
    if "CPL_LOG" not in os.environ:
        _quiet_libtiff()


@functools.cache
def _quiet_libtiff() -> None:
    """Turn off libtiff's process-wide message handlers, which print straight to stderr.

    GDAL (3.10, with libtiff >= 4.5) routes libtiff's messages about an open
    file through per-file handlers into its own error system (and CPL_LOG);
    libtiff reports the few errors it has no file handle for, such as a
    failed seek to a forged block offset ("_tiffSeekProc: Invalid
    argument."), to its global handlers, whose default writes to stderr
    (see OSGeo/gdal#6659, openslide#569). The read fails and is reported
    anyway. Done only for the libtiff the process has loaded (rasterio's
    wheel bundles one); without one, nothing is changed.
    """
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libtiff" in line.rsplit("/", 1)[-1]}
    except OSError:  # not Linux: leave libtiff as it is
        return
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
            setter = getattr(lib, name)
            setter.restype = ctypes.c_void_p
            setter.argtypes = [ctypes.c_void_p]
            setter(None)


def _open_cached(path: str, driver: str = "GTiff"):
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
        _quiet_gdal()
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    ds = handles.get(key)
    if ds is None or ds.closed:
        for stale in [k for k in handles if k[0] == path]:  # the file changed
            handles.pop(stale).close()
        while len(handles) >= _MAX_HANDLES:  # dicts keep insertion order: oldest first
            handles.pop(next(iter(handles))).close()
        ds = handles[key] = rasterio.open(path, driver=driver)
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

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(image, valid)``: ``(len(bands), h, w)`` raw values and the ``(h, w)`` bool mask."""


def _gdal_reason(exc: BaseException) -> str:
    """The innermost GDAL message behind a rasterio error (not "see previous exception")."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip() or exc.__class__.__name__


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


# How a pixel is told valid (``--mask``). GDAL's dataset mask is the default:
# an internal mask if the file has one, else its alpha band, else its nodata
# value ("valid unless every band is nodata"), else every pixel.
MASK_MODES = ("dataset", "nodata", "alpha", "none")


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
    driver: str = "GTiff"
    mask: str = "dataset"
    # How the georeferencing was obtained: "file", "assumed" (--assume-crs) or
    # "none" (--pixel-only: no CRS, identity transform, no map coordinates).
    georeferencing: str = "file"

    @property
    def name(self) -> str:
        return self.path

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def alpha_is_mask(self) -> bool:
        """Whether the alpha band (if any) is read as the validity mask (``--mask``)."""
        return self.mask in ("dataset", "alpha")

    @property
    def options(self) -> dict:
        """How the file was opened: what a later reader of the run opens it with again."""
        return {
            "driver": self.driver,
            "mask": self.mask,
            "georeferencing": self.georeferencing,
            "crs_wkt": self.crs_wkt,
        }

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        win = RioWindow(*window.xywh)
        try:
            image, valid = self._read(_open_cached(self.path, self.driver), list(bands), win)
        except RasterioError as exc:
            reason = _gdal_reason(exc)
        else:
            return zero_invalid_non_finite(image, valid), valid
        # Raised outside the handler: the InputError carries no GDAL exception
        # as context, so it pickles cleanly back from a distributed worker.
        raise InputError(f"{self.path}: cannot read window {window}: {reason}")

    def _read(self, ds, bands: list[int], win: RioWindow) -> tuple[np.ndarray, np.ndarray]:
        """The bands and the valid mask, decoding each block once where GDAL allows."""
        if self.mask == "none":
            image = ds.read(bands, window=win)
            return image, np.ones(image.shape[1:], dtype=bool)
        if self.mask == "nodata":
            return self._read_nodata(ds, bands, win)
        if self.mask == "alpha":
            return self._read_with_band(ds, bands, self.alpha_bands[0], win)
        # GDAL's dataset mask is the alpha band itself when the file has an
        # 8-bit alpha band, and all-valid when there is no alpha, nodata or
        # internal mask: then the mask comes from the same read as the bands.
        # Otherwise (nodata, internal masks, 16-bit alpha) GDAL computes it.
        flags = ds.mask_flag_enums[0]
        if flags == [MaskFlags.all_valid]:
            image = ds.read(bands, window=win)
            return image, np.ones(image.shape[1:], dtype=bool)
        alpha = self.alpha_bands[0] if len(self.alpha_bands) == 1 else None
        if alpha is not None and MaskFlags.alpha in flags and ds.dtypes[alpha - 1] == "uint8":
            return self._read_with_band(ds, bands, alpha, win)
        return ds.read(bands, window=win), ds.dataset_mask(window=win) > 0

    @staticmethod
    def _read_with_band(ds, bands: list[int], alpha: int, win: RioWindow):
        """The bands, and ``alpha > 0`` from the same read."""
        order = sorted(set(bands) | {alpha})
        planes = ds.read(order, window=win)
        return planes[[order.index(b) for b in bands]], planes[order.index(alpha)] > 0

    def _read_nodata(self, ds, bands: list[int], win: RioWindow):
        """The bands, and GDAL's nodata rule: valid unless every band of the file is nodata."""
        planes = ds.read(window=win)
        nodata = self.nodata
        if nodata is not None and np.isnan(nodata):
            invalid = np.isnan(planes).all(axis=0)
        else:
            invalid = (planes == planes.dtype.type(nodata)).all(axis=0)
        return planes[[b - 1 for b in bands]], ~invalid

    def read_all(self, bands: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The whole image (for the in-memory reference only)."""
        return self.read(bands, Window(0, self.height, 0, self.width))


def zero_invalid_non_finite(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``image`` with NaN and infinite values at invalid pixels read as 0.

    Float orthomosaics mark nodata with NaN. Invalid pixels never become
    objects and never enter a statistic, but neighbourhood steps (Gaussian,
    median, local thresholds) read them near the valid area's edge, and a NaN
    there would spread into valid pixels. So they read as 0, in tiles and in
    the whole-image reference alike (both read through here). Non-finite
    values at valid pixels are kept: the run refuses them, naming the file.
    """
    if image.dtype.kind != "f" or valid.all():
        return image
    bad = ~np.isfinite(image) & ~valid
    if not bad.any():
        return image
    image = image.copy()
    image[bad] = 0
    return image


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
    driver: str = "GTiff",
    mask: str = "dataset",
    assume_crs: str | None = None,
    pixel_only: bool = False,
) -> GeoTiffSource:
    """Check that ``path`` is a readable, georeferenced GeoTIFF and describe it.

    Opens the file with the GTiff driver only (another GDAL ``driver`` if
    asked), and reads only its header: an image above ``max_pixels`` pixels
    (width x height), or whose stored blocks would decompress to more than
    ``max_ratio`` times the file's size, is refused before any pixel is read
    (``None`` turns a check off; the ratio is checked for GeoTIFFs only).

    Parameters
    ----------
    mask : {"dataset", "nodata", "alpha", "none"}
        How valid pixels are told (see :data:`MASK_MODES`).
    assume_crs : str, optional
        A CRS (``EPSG:32633``, WKT, PROJ) for a file that has a geotransform
        but no CRS. A file that has a CRS keeps it.
    pixel_only : bool
        Open a file without georeferencing anyway: objects get pixel
        coordinates only (no ``area_m2``, ``x``, ``y`` or geometry).

    Raises
    ------
    InputError
        With one line naming the file and the problem.
    """
    path = Path(path)
    _quiet_gdal()
    if mask not in MASK_MODES:
        raise InputError(f"--mask: {mask!r} is not one of {', '.join(MASK_MODES)}")
    if assume_crs is not None and pixel_only:
        raise InputError("use --assume-crs or --pixel-only, not both")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a GeoTIFF")
    file_size = path.stat().st_size
    if file_size == 0:
        raise InputError(f"{path}: is an empty file, not a GeoTIFF")
    try:
        with rasterio.open(path, driver=driver) as ds:
            _check_declared_size(
                ds, path, file_size, max_pixels, max_ratio if driver == "GTiff" else None
            )
            crs_wkt, transform, georeferencing = _georeferencing(ds, path, assume_crs, pixel_only)
            alpha = tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha)
            _check_mask_mode(mask, path, ds.nodata, alpha)
            return GeoTiffSource(
                path=str(path.resolve()),
                height=ds.height,
                width=ds.width,
                count=ds.count,
                dtype=ds.dtypes[0],
                alpha_bands=alpha,
                nodata=ds.nodata,
                crs_wkt=crs_wkt,
                transform=transform,
                block_shape=tuple(ds.block_shapes[0]),
                driver=driver,
                mask=mask,
                georeferencing=georeferencing,
            )
    except RasterioError as exc:
        reason = _gdal_reason(exc)
    if driver == "GTiff" and (advice := _other_format_advice(path, assume_crs, pixel_only)):
        raise InputError(f"{path}: {advice}")
    kind = "GeoTIFF" if driver == "GTiff" else f"{driver} raster"
    raise InputError(f"{path}: not a readable {kind} ({reason})")


# Plain image formats that a file refused by the GTiff driver is tried with, only
# to name it: each is a single self-contained file (no VRT, which points at
# other files, and no format that opens a network or a database).
IMAGE_DRIVERS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "JP2OpenJPEG")


def _other_format_advice(path: Path, assume_crs: str | None, pixel_only: bool) -> str | None:
    """What a plain image that is not a GeoTIFF is, and the options that run it; else ``None``."""
    for name in IMAGE_DRIVERS:
        try:
            with rasterio.open(path, driver=name) as ds:
                georeferenced = not ds.transform.is_identity
                has_crs = ds.crs is not None
        except RasterioError:
            continue
        options = [f"--driver {name}"]
        if not georeferenced and not pixel_only:
            options.append("--pixel-only")
            why = "; it has no georeferencing, so positions and areas come in pixels only"
        elif georeferenced and not has_crs and assume_crs is None and not pixel_only:
            options.append("--assume-crs EPSG:XXXX")
            why = "; it has a geotransform but no CRS: give the CRS you know"
        else:
            why = ""
        return (
            f"a {name} image, not a GeoTIFF (inputs are opened as GeoTIFFs unless told); "
            f"to run it anyway, pass {' '.join(options)}{why}"
        )
    return None


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _georeferencing(ds, path: Path, assume_crs: str | None, pixel_only: bool):
    """``(crs_wkt, transform, how)`` of an open dataset, or one line saying what is missing.

    Areas in m² and map coordinates are never made up: a file without a
    geotransform is refused unless ``pixel_only``, and one without a CRS
    unless it is assumed.
    """
    if pixel_only:
        return "", IDENTITY, "none"
    if ds.transform.is_identity:
        what = "ground control points but no geotransform" if ds.gcps[0] else "no geotransform"
        fix = "gdalwarp it onto a grid first" if ds.gcps[0] else "georeference it first"
        raise InputError(
            f"{path}: has {what} (pixel size and position), so no areas in m² or map "
            f"coordinates; {fix}, or pass --pixel-only for results in pixels only"
        )
    t = ds.transform
    transform = (t.a, t.b, t.c, t.d, t.e, t.f)
    if ds.crs is not None:
        if assume_crs is not None:
            raise InputError(
                f"{path}: already has a CRS ({ds.crs.to_string()}); "
                "--assume-crs only fills in a missing one"
            )
        return ds.crs.to_wkt(), transform, "file"
    if assume_crs is None:
        raise InputError(
            f"{path}: has a geotransform but no CRS; pass --assume-crs EPSG:XXXX "
            "if you know it, or --pixel-only for results in pixels only"
        )
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(assume_crs).to_wkt(), transform, "assumed"
    except CRSError as exc:
        raise InputError(f"--assume-crs: {assume_crs!r} is not a CRS ({exc})") from None


def _check_mask_mode(mask: str, path: Path, nodata, alpha: tuple[int, ...]) -> None:
    if mask == "nodata" and nodata is None:
        raise InputError(
            f"{path}: has no nodata value, which --mask nodata needs "
            "(set one with gdal_edit.py -a_nodata VALUE)"
        )
    if mask == "alpha" and len(alpha) != 1:
        raise InputError(
            f"{path}: has {len(alpha) or 'no'} alpha band(s); --mask alpha needs exactly one"
        )


def check_moved_input(path: Path, inputs: dict) -> None:
    """Refuse ``path`` as a run's moved input unless its size and fingerprint are run.json's."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (given as the run's input, {inputs['path']})")
    if "fingerprint_sha256" not in inputs or "size_bytes" not in inputs:
        raise InputError(
            f"{path}: run.json holds no size and fingerprint of the run's input to check it against"
        )
    size = path.stat().st_size
    if size != inputs["size_bytes"]:
        raise InputError(
            f"{path}: not the run's input: {size} bytes, where {inputs['path']} had "
            f"{inputs['size_bytes']}"
        )
    if fingerprint(path) != inputs["fingerprint_sha256"]:
        raise InputError(
            f"{path}: not the run's input: same size as {inputs['path']}, but its fingerprint "
            "(SHA-256 of its first and last MiB) differs"
        )


def reopen(inputs: dict, moved_to: str | os.PathLike | None = None) -> GeoTiffSource:
    """A finished run's input, opened again as the run opened it (from run.json's ``input``).

    ``moved_to``: where the input is now, accepted only as the very file the
    run read (:func:`check_moved_input`).
    """
    options = inputs.get("options", {})
    how = options.get("georeferencing", "file")
    if moved_to is not None:
        check_moved_input(Path(moved_to), inputs)
    return open_geotiff(
        inputs["path"] if moved_to is None else moved_to,
        max_pixels=None,  # the run accepted it
        max_ratio=None,
        driver=options.get("driver", "GTiff"),
        mask=options.get("mask", "dataset"),
        assume_crs=options.get("crs_wkt") if how == "assumed" else None,
        pixel_only=how == "none",
    )


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

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        planes = [b - 1 for b in bands]
        valid = self.valid[window.slices]
        return zero_invalid_non_finite(self.image[(planes, *window.slices)], valid), valid


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

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        rgba = self.field.read(window)
        return rgba[[b - 1 for b in bands]], rgba[3] > 0
