"""The labels of a finished run (or a uint8 object mask) as a Cloud-Optimized GeoTIFF.

This is the route into GDAL-based tools (QGIS, ``rioxarray.open_rasterio``,
``gdalinfo``): the GDAL that rasterio bundles (3.10) does not read Zarr v3
arrays written with the ``bytes`` codec, which every Zarr v3 array has.

>>> from tiler.io.export_raster import export_cog
>>> export_cog("out/", "out/labels.tif")            # doctest: +SKIP
PosixPath('out/labels.tif')
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tiler.io import output, run_record, stores
from tiler.io.export_files import partial_name, replacing, target
from tiler.io.finished import FinishedRun, open_run
from tiler.tiling import TileGrid, Window

COG_SUFFIXES = (".tif", ".tiff")
BLOCK = 512  # COG tile size and overview target (GDAL's default)
MASK_NODATA = 255
WINDOW_BYTES = 32 * 2**20  # at most this much label data read per window
READ_AHEAD = 2  # windows read (decompressed) ahead of the one being written


def overview_factors(shape: tuple[int, int], block: int = BLOCK) -> list[int]:
    """Decimation factors 2, 4, 8, ... until the smallest overview fits in one ``block``.

    GDAL's rule for COGs; an image that fits one block gets none.

    >>> overview_factors((1100, 900))
    [2, 4]
    >>> overview_factors((512, 300))
    []
    """
    factors, size = [], max(shape)
    while size > block:
        factors.append(2 ** (len(factors) + 1))
        size = -(-size // 2)
    return factors


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def cog_windows(shape: tuple[int, int], chunks: tuple[int, int], itemsize: int) -> list[Window]:
    """The windows the COG is written in, in row-major order.

    Rows go by chunk-rows rounded up to whole 512-pixel blocks, and columns by
    chunk widths rounded up likewise, as many as fit ``WINDOW_BYTES``: each
    window covers whole GeoTIFF blocks (none is written twice) and, when the
    chunks are multiples of 512 (tiler's default 2048 is), whole Zarr chunks.
    """
    rows = _round_up(chunks[0], BLOCK)
    step = _round_up(chunks[1], BLOCK)
    cols = max(1, WINDOW_BYTES // (rows * step * itemsize)) * step
    return [window for *_, window in TileGrid(shape, (rows, cols))]


def _input_of(dst: Any):
    """The run's input, opened once as the run opened it (``--mask``, ``--driver``)."""
    manifest = dst / output.MANIFEST
    if stores.is_remote(manifest):  # no modification time to the nanosecond: the object's tag
        info = manifest.fs.info(manifest.path)
        return _reopen(dst, str(info.get("ETag") or info.get("LastModified")))
    return _reopen(dst, manifest.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _reopen(dst: Any, manifest_stamp: int | str):  # the stamp: a new run in dst opens afresh
    from tiler.io.input_identity import reopen

    return reopen(run_record.read_manifest(dst)["input"], why="--mask reads its nodata mask")


def _read_window(run: FinishedRun, window: Window, mask: bool) -> np.ndarray:
    labels = stores.open_array(run.store, path="labels", mode="r")[window.slices]
    if not mask:
        return labels
    out = (labels != 0).view(np.uint8)
    if run.source is not None:  # the mask the run used (--mask), read as the run read it
        _, valid = _input_of(run.dst).read((1,), window)
        out[~valid] = MASK_NODATA
    return out


def _read_ahead(read: Callable[[Any], np.ndarray], items: list) -> Iterator[tuple[Any, np.ndarray]]:
    """``(item, read(item))`` in order, the next ``READ_AHEAD`` reads running meanwhile."""
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        pending: deque = deque()
        todo = iter(items)
        for item in todo:
            pending.append((item, pool.submit(read, item)))
            if len(pending) > READ_AHEAD:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def export_cog(
    dst: str | os.PathLike,
    path: str | os.PathLike,
    *,
    mask: bool = False,
    compress: str = "deflate",
) -> Path:
    """Write the labels of the run in ``dst`` as a Cloud-Optimized GeoTIFF.

    Parameters
    ----------
    dst : path
        A complete run.
    path : path
        The GeoTIFF to write (``.tif`` or ``.tiff``); replaced if it exists.
    mask : bool
        Write a uint8 mask instead of the labels: 1 object, 0 background,
        255 (the nodata value) where the input's GDAL dataset mask is 0 (the
        input must still be where the run read it).
    compress : str
        The COG's compression (GDAL's ``COMPRESS``), with the horizontal predictor.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The labels (uint32, or uint64 as stored) or the mask are streamed from
    Zarr into a temporary tiled GeoTIFF (512-pixel blocks, ZSTD level 1,
    BigTIFF if needed) in windows of whole blocks; GDAL builds nearest-
    neighbour overviews on it (2, 4, ... until the smallest fits 512 pixels:
    nearest keeps overview pixels real label values); GDAL's COG driver then
    copies it, overviews included (``OVERVIEWS=FORCE_USE_EXISTING``), into the
    COG layout: IFDs first, then the overviews' tiles smallest first, then the
    full-resolution tiles. Memory stays at a few windows of ``WINDOW_BYTES``.
    The labels carry no nodata value (0 is background, a real value).
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.windows import Window as RioWindow

    run = open_run(dst)
    path = target(path, COG_SUFFIXES, "a COG", run)
    if mask and run.source is not None:
        _input_of(run.dst)  # the very file the run read (or one line why not), before writing
    dtype = np.dtype(np.uint8) if mask else run.dtype
    height, width = run.shape
    profile = dict(
        driver="GTiff", height=height, width=width, count=1, dtype=dtype.name,
        crs=rasterio.crs.CRS.from_wkt(run.crs_wkt) if run.crs_wkt else None,
        transform=run.transform, nodata=MASK_NODATA if mask else None,
        tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="zstd", zstd_level=1,
        predictor=2, BIGTIFF="IF_SAFER", num_threads="ALL_CPUS",
    )  # fmt: skip
    staging = partial_name(path, "tiled")
    overviews = dict(
        GDAL_TIFF_OVR_BLOCKSIZE=BLOCK, COMPRESS_OVERVIEW="ZSTD", ZSTD_LEVEL_OVERVIEW=1,
        PREDICTOR_OVERVIEW=2, GDAL_NUM_THREADS="ALL_CPUS",
    )  # fmt: skip
    try:
        with rasterio.Env(**overviews), replacing(path) as partial:
            with rasterio.open(staging, "w", **profile) as ds:
                windows = cog_windows(run.shape, run.chunks, dtype.itemsize)
                for window, block in _read_ahead(
                    lambda window: _read_window(run, window, mask), windows
                ):
                    ds.write(block, 1, window=RioWindow(*window.xywh))
                if factors := overview_factors(run.shape):
                    ds.build_overviews(factors, Resampling.nearest)
            rasterio.shutil.copy(
                staging, partial, driver="COG", COMPRESS=compress.upper(), PREDICTOR="YES",
                BLOCKSIZE=BLOCK, OVERVIEWS="FORCE_USE_EXISTING", OVERVIEW_RESAMPLING="NEAREST",
                BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
            )  # fmt: skip
    finally:
        staging.unlink(missing_ok=True)
    return path
