"""Reading GeoTIFF orthomosaics: windows read by path inside tasks.

Opening one, with its checks, is :mod:`tiler.io.open_raster`.

A :class:`GeoTiffSource` is a small picklable value (a path and the facts
read on open); each task opens the file itself, so no dataset handle ever
crosses a process boundary. Windows are :class:`tiler.tiling.Window`.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.env import set_gdal_config
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window as RioWindow

from tiler.errors import InputError
from tiler.io import blocks, remote
from tiler.tiling import Window

# GDAL settings for reading inside dask tasks, set by the tasks themselves so
# that workers need no set-up however they were started (unless the worker's
# environment sets them): the tasks are the parallelism. The blocks that
# neighbouring tiles share are kept by tiler.io.blocks, as GDAL decodes reads
# of several blocks past its cache; GDAL's cache serves the rest.
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

    for lib in _loaded_libraries("libtiff"):
        for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
            setter = getattr(lib, name)
            setter.restype = ctypes.c_void_p
            setter.argtypes = [ctypes.c_void_p]
            setter(None)


def _loaded_libraries(name: str) -> list:
    """The shared libraries whose file name holds ``name`` that this process has loaded (Linux)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if name in line.rsplit("/", 1)[-1]}
    except OSError:  # not Linux
        return []
    return [ctypes.CDLL(path) for path in sorted(paths)]


_VERSIONS: dict[str, str] = {}  # the version of each URL this process last opened
_VERSIONS_LOCK = threading.Lock()


def note_version(url: str, version: str) -> None:
    """Before opening ``url``: if this process read another version of it, forget that one.

    GDAL keeps an object's size, header and byte ranges per URL for the
    life of the process (its /vsicurl/ cache), so an object replaced at the
    same URL reads as the old one, or fails, until that cache is cleared.
    """
    with _VERSIONS_LOCK:
        before = _VERSIONS.get(url)
        _VERSIONS[url] = version
    if before is None or before == version:
        return
    for lib in _loaded_libraries("libgdal"):
        lib.VSICurlClearCache()  # all URLs' (VSICurlPartialClearCache left this one's size)


def _open_cached(path: str, driver: str = "GTiff", version: str = "") -> tuple[Any, tuple]:
    """This thread's dataset handle (rasterio's are not thread-safe) and its key.

    A handle is reopened when the file changes on disk; the key (the path,
    and a file's modification time and size or a URL's ``version``) also
    names the file's decoded blocks in :mod:`tiler.io.blocks`.
    """
    handles = getattr(_HANDLES, "handles", None)
    if handles is None:
        handles = _HANDLES.handles = {}
        _quiet_gdal()
    if remote.is_url(path):  # read by ranges; the run checked its identity as it began
        key: tuple = (path, version)
        if (ds := handles.get(key)) is None or ds.closed:
            note_version(path, version)
            ds = handles[key] = rasterio.open(remote.gdal_path(path), driver=driver)
        return ds, key
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    ds = handles.get(key)
    if ds is None or ds.closed:
        for stale in [k for k in handles if k[0] == path]:  # the file changed
            handles.pop(stale).close()
        while len(handles) >= _MAX_HANDLES:  # dicts keep insertion order: oldest first
            handles.pop(next(iter(handles))).close()
        ds = handles[key] = rasterio.open(path, driver=driver)
    return ds, key


def _gdal_reason(exc: BaseException) -> str:
    """The innermost GDAL message behind a rasterio error (not "see previous exception")."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return str(exc).strip() or exc.__class__.__name__


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
    # An object's fingerprint (tiler.io.remote.identity) when the path is a URL: its decoded
    # blocks and dataset handles are kept under it, never mixed with another object's.
    version: str = ""

    @property
    def name(self) -> str:
        """The path, or the URL without credentials or a signature (:func:`remote.public_url`)."""
        return remote.public_url(self.path) if remote.is_url(self.path) else self.path

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
        """The bands and valid mask of ``window``, from blocks decoded once (:mod:`.blocks`)."""
        try:
            with remote.reading(self.path):  # a URL's GDAL options, set on the worker
                ds, identity = _open_cached(self.path, self.driver, self.version)
                decode = lambda region: self._read(ds, list(bands), RioWindow(*region.xywh))  # noqa: E731
                if self.driver == "GTiff":  # a VRT's blocks are its sources' reads, not decodes
                    key = (identity, self.mask, tuple(bands))
                    shapes = (self.block_shape, self.shape)
                    image, valid = blocks.read_window(key, window, *shapes, decode)
                else:
                    image, valid = decode(window)
        except RasterioError as exc:
            reason = remote.scrub(_gdal_reason(exc))
        else:
            return zero_invalid_non_finite(image, valid), valid
        # Raised outside the handler: the InputError carries no GDAL exception
        # as context, so it pickles cleanly back from a distributed worker.
        raise InputError(f"{self.name}: cannot read window {window}: {reason}")

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
