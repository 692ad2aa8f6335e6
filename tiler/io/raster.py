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


def open_geotiff(path: str | os.PathLike) -> GeoTiffSource:
    """Check that ``path`` is a readable, georeferenced GeoTIFF and describe it.

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
    if path.stat().st_size == 0:
        raise InputError(f"{path}: is an empty file, not a GeoTIFF")
    try:
        with rasterio.open(path, driver="GTiff") as ds:
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
