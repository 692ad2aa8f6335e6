"""Read every block of a GeoTIFF and report the ones that do not decode.

``tiler run`` stops at the first tile it cannot read; ``tiler validate`` reads
the whole file first, by the file's own blocks (tiles, or strips), every band
and the dataset mask, in a pool of threads, and lists every bad block with its
window and GDAL's reason. It checks that the file decodes, not what the pixels
mean: a corrupted block of an uncompressed file reads as wrong values.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from tiler.errors import InputError
from tiler.io import remote
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import _gdal_reason
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS, block_layout, size_text
from tiler.progress import Progress
from tiler.tiling import Window

# Blocks handed to a thread at a time (whole rows of blocks, at least this
# many): few enough tasks for a 100-gigapixel file, and a steady progress bar.
_BATCH_BLOCKS = 64


@dataclass(frozen=True)
class BadBlock:
    """A block that did not decode: its window and GDAL's reason (per band, or the mask)."""

    window: Window
    reason: str

    def describe(self) -> str:
        return f"bad block {self.window}: {self.reason}"


@dataclass(frozen=True)
class ValidationReport:
    """What :func:`validate` read, and every block that failed."""

    path: str
    height: int
    width: int
    count: int
    dtype: str
    layout: str  # "tiled 512 x 512" or "strips of 16 rows"
    compression: str
    interleave: str
    file_size: int
    blocks: int
    bad: tuple[BadBlock, ...]
    bytes_decoded: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.bad

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_decoded / 1e6 / max(self.seconds, 1e-9)

    def summary(self) -> str:
        h, w = self.height, self.width
        return (
            f"{self.path}: {h} x {w} px ({h * w / 1e6:.1f} MP), {self.count} band(s) of "
            f"{self.dtype}, {self.layout}, {self.compression}, {self.interleave}-interleaved, "
            f"{size_text(self.file_size)}; {self.blocks - len(self.bad)} of {self.blocks} "
            f"blocks read ({size_text(self.bytes_decoded)} decoded) in {self.seconds:.2f} s, "
            f"{self.megabytes_per_second:.1f} MB/s"
        )

    def error(self) -> InputError:
        """The one-line error of a file with bad blocks."""
        return InputError(f"{self.path}: {len(self.bad)} of {self.blocks} blocks unreadable")


class _Reader:
    """One dataset handle per thread (rasterio handles are not thread-safe), closed at the end."""

    def __init__(self, path: str):
        self.path = path
        self.local = threading.local()
        self.lock = threading.Lock()
        self.handles: list = []

    def dataset(self):
        ds = getattr(self.local, "ds", None)
        if ds is None:
            # Each thread decodes its own blocks: GDAL's own threads would only compete.
            opened = remote.gdal_path(self.path) if remote.is_url(self.path) else self.path
            with rasterio.Env(GDAL_NUM_THREADS="1"):
                ds = self.local.ds = rasterio.open(opened, driver="GTiff")
            with self.lock:
                self.handles.append(ds)
        return ds

    def close(self) -> None:
        for ds in self.handles:
            ds.close()

    def read(self, windows: list[RioWindow]) -> tuple[list[BadBlock], int]:
        """Decode ``windows`` (every band, then the mask); the bad ones and the bytes decoded."""
        with remote.reading(self.path):  # a URL's GDAL options are this thread's own
            return self._read(windows)

    def _read(self, windows: list[RioWindow]) -> tuple[list[BadBlock], int]:
        ds = self.dataset()
        planar = block_layout(ds)[2] > 1
        itemsize = np.dtype(ds.dtypes[0]).itemsize
        masked = ds.mask_flag_enums[0] != [MaskFlags.all_valid]
        bad, decoded = [], 0
        for win in windows:
            reasons = []
            # A planar file stores each band in its own blocks: read and blame
            # them one by one. Otherwise one block holds every band.
            for bands in [[b] for b in ds.indexes] if planar else [list(ds.indexes)]:
                try:
                    ds.read(bands, window=win)
                    decoded += len(bands) * win.height * win.width * itemsize
                except RasterioError as exc:
                    what = f"band {bands[0]}" if planar else "bands"
                    reasons.append(f"{what}: {_gdal_reason(exc)}")
            if masked and not reasons:  # a nodata mask of a bad block fails the same way
                try:
                    ds.dataset_mask(window=win)
                except RasterioError as exc:
                    reasons.append(f"mask: {_gdal_reason(exc)}")
            if reasons:
                r0, c0 = int(win.row_off), int(win.col_off)
                window = Window(r0, r0 + int(win.height), c0, c0 + int(win.width))
                bad.append(BadBlock(window, "; ".join(reasons)))
        return bad, decoded


def _batches(ds, threads: int) -> Iterator[list[RioWindow]]:
    """The file's own block windows (``block_windows(1)``), whole rows of them per batch.

    Up to ``_BATCH_BLOCKS`` blocks a batch, and at least four batches a thread
    when the file has the rows for it.
    """
    rows, cols, _, _ = block_layout(ds)
    rows_per_batch = max(1, min(_BATCH_BLOCKS // cols, rows // (4 * threads)))
    batch: list[RioWindow] = []
    for (i, j), win in ds.block_windows(1):
        if j == 0 and batch and i % rows_per_batch == 0:
            yield batch
            batch = []
        batch.append(win)
    if batch:
        yield batch


def validate(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    progress: bool | Progress | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    assume_crs: str | None = None,
    pixel_only: bool = False,
) -> ValidationReport:
    """Open ``path`` as ``tiler run`` does, then decode every block of it.

    Parameters
    ----------
    threads
        Threads reading blocks, each with its own dataset handle [one per core].
    progress
        ``True`` (or a :class:`tiler.progress.Progress`) shows a bar of blocks read.
    max_pixels, assume_crs, pixel_only
        As :func:`tiler.io.open_raster.open_geotiff` (and ``tiler run``).

    Raises
    ------
    InputError
        When the file does not open as ``tiler run`` needs it (one line naming
        it). Bad blocks do not raise: they are in the report's ``bad``, in
        raster order.
    """
    source = open_geotiff(path, max_pixels=max_pixels, assume_crs=assume_crs, pixel_only=pixel_only)
    threads = threads or os.cpu_count() or 1
    if not isinstance(progress, Progress):
        progress = Progress(enabled=bool(progress))
    started = time.perf_counter()
    reader = _Reader(source.path)
    bad: list[BadBlock] = []
    decoded = blocks = 0
    try:
        with remote.open_dataset(source.path) as ds:
            rows, cols, _, _ = block_layout(ds)
            bh, bw = ds.block_shapes[0]
            tiled = bool(ds.profile.get("tiled")) or (bw < ds.width)
            layout = f"tiled {bh} x {bw}" if tiled else f"strips of {bh} row(s)"
            compression = ds.compression.name.upper() if ds.compression else "uncompressed"
            interleave = ds.interleaving.name.lower() if ds.interleaving else "pixel"
            file_size = (
                remote.identity(source.path)[0]
                if remote.is_url(source.path)
                else Path(source.path).stat().st_size
            )
            batches = _batches(ds, threads)
            total = rows * cols
            with (
                progress.bar("validate", total, 0, source.height * source.width / 1e6) as bar,
                ThreadPoolExecutor(threads, thread_name_prefix="tiler-validate") as pool,
            ):
                pending: dict[Future, int] = {}

                def submit() -> bool:
                    batch = next(batches, None)
                    if batch is not None:
                        pending[pool.submit(reader.read, batch)] = len(batch)
                    return batch is not None

                while len(pending) < 2 * threads and submit():
                    pass
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        n = pending.pop(future)
                        found, nbytes = future.result()
                        bad.extend(found)
                        decoded += nbytes
                        blocks += n
                        for _ in range(n):
                            bar.update()
                        submit()
    finally:
        reader.close()
    bad.sort(key=lambda b: b.window)
    return ValidationReport(
        path=source.name if remote.is_url(source.path) else str(path),
        height=source.height,
        width=source.width,
        count=source.count,
        dtype=source.dtype,
        layout=layout,
        compression=compression,
        interleave=interleave,
        file_size=file_size,
        blocks=blocks,
        bad=tuple(bad),
        bytes_decoded=decoded,
        seconds=time.perf_counter() - started,
    )
