"""The Python API: ``run``, ``open_labels``, ``read_objects``.

:func:`run` reads as the list of its passes: the job prepared
(:mod:`tiler.api.job`), DST held while the run writes it
(:mod:`tiler.api.workspace`), the passes run by one runner
(:mod:`tiler.passes`), then the object table and ``run.json``
(:mod:`tiler.api.record`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tiler import presets, resumption
from tiler.api.job import DEFAULT_CHUNK_SIZE, WARN_PIXELS, prepare
from tiler.api.record import RunResult, diagnose, manifest, write_objects
from tiler.api.workspace import already_complete, workspace
from tiler.cluster import default_scheduler, executor_for
from tiler.config import Pipeline
from tiler.errors import ConfigError, TilerWarning
from tiler.io import finished, label_store, output, run_record, stores
from tiler.io.finished import check_complete
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS
from tiler.passes import PassRunner, segment, write_labels
from tiler.progress import Progress
from tiler.source import RasterSource

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "WARN_PIXELS",
    "RunResult",
    "open_labels",
    "read_objects",
    "run",
]


@contextlib.contextmanager
def _small_pages() -> Iterator[None]:
    """Turn off NumPy's transparent-huge-page advice for large arrays while a run lasts.

    On the virtual machines we run on, faulting in huge pages for each new
    tile-sized array costs more than it saves: a 64-megapixel run took 2.6 s
    without the advice against 2.8-3.1 s with it (PERF-NOTES: fresh large
    allocations are slow here). A user who sets ``NUMPY_MADVISE_HUGEPAGE``
    keeps their choice; the previous setting is restored afterwards.
    """
    toggle = getattr(np._core.multiarray, "_set_madvise_hugepage", None)
    if toggle is None or "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    previous = toggle(False)
    try:
        yield
    finally:
        toggle(previous)


def run(
    src: str | os.PathLike | RasterSource,
    dst: str | os.PathLike,
    config: str | os.PathLike | dict | Pipeline | None = None,
    *,
    preset: str | None = None,
    chunk_size: int | tuple[int, int] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    security: Any = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    performance_report: str | os.PathLike | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    driver: str | None = None,
    mask: str | None = None,
    assume_crs: str | None = None,
    pixel_only: bool | None = None,
    device: str | None = None,
    asset: str | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Segment a GeoTIFF in tiles and write labels, objects and the manifest to ``dst``.

    Parameters
    ----------
    src : path or RasterSource
        A georeferenced GeoTIFF (opened with the GTiff driver only), or a
        mosaic of GeoTIFFs read as one image (:mod:`tiler.io.mosaic`): a
        directory, a glob pattern, ``@LIST`` (a text file of paths), a
        ``.vrt``, or a STAC ItemCollection ``.json`` (with ``asset``).
    dst : path
        Output directory; must be empty or absent unless ``overwrite`` or ``resume``.
    config : path, dict or Pipeline, optional
        The pipeline; ``None`` runs the default plant pipeline (resuming: the run's).
    preset : str, optional
        A shipped pipeline by name instead of ``config`` (as ``tiler run --preset``;
        :func:`tiler.presets.names` lists them).
    chunk_size : int or (int, int), optional
        Tile size in pixels; tiles are also the Zarr chunks. Default 2048 x
        2048, or for a striped (untiled) GeoTIFF tiles of as many pixels that
        follow its strips (:func:`tiler.io.layout.plan_chunks`); a striped
        input is warned about either way.
    client : distributed.Client, optional
        Run on this client (takes precedence over ``scheduler``).
    scheduler : str, optional
        ``threads``, ``sync``, ``local`` (a LocalCluster on 127.0.0.1, with
        its dashboard), ``tcp://HOST:PORT`` / ``tls://HOST:PORT``, or
        ``slurm`` / ``pbs`` (dask-jobqueue); see :mod:`tiler.cluster`.
        Default: ``threads``, or ``local`` when ``workers`` > 1, a
        ``memory_limit`` or a ``performance_report`` asks for a cluster
        (:func:`tiler.cluster.default_scheduler`).
    workers, threads_per_worker, memory_limit : optional
        The local cluster's worker processes (default: one worker whose
        threads, one per core, run in this process), threads per worker (or
        the ``threads`` scheduler's threads) and memory limit per worker
        (``"4GiB"``); for ``slurm``/``pbs``, the number of workers to start.
    security : distributed.Security, optional
        TLS for a ``tls://`` scheduler (see :func:`tiler.cluster.security`).
    overwrite : bool
        Replace a non-empty ``dst``.
    resume : bool
        Continue an unfinished run in ``dst``: tiles it finished are not
        computed again. The pipeline, chunk size and input options left out
        (``None``) are the run's, as its journal recorded them; one given
        that differs is refused, naming it (:mod:`tiler.resumption`), as is
        a changed input. A ``dst`` holding the same run, complete, is
        returned as it is.
    progress : bool
        Draw a progress bar per pass on stderr.
    performance_report : path, optional
        Write dask's performance report (HTML) there; distributed schedulers only.
    max_pixels : int, optional
        Refuse inputs declaring more pixels (checked on the header, before
        anything is read); ``None``: no limit.
    driver : str, optional
        The GDAL driver to open ``src`` with (default ``GTiff``): only GeoTIFFs unless told.
    mask : {"dataset", "nodata", "alpha", "none"}, optional
        How valid pixels are told: GDAL's dataset mask (default), the
        nodata value, the alpha band, or every pixel valid.
    assume_crs : str, optional
        The CRS of an input that has a geotransform but no CRS.
    pixel_only : bool
        Accept an input without georeferencing: objects get pixel positions
        and areas only (``area_m2``, ``x``, ``y`` and geometry are null).
    device : {"auto", "cpu", "cuda"}, optional
        Where an ONNX model runs (``model: {onnx}``), in place of its ``device:``.
    asset : str, optional
        The asset key of a STAC JSON ``src`` whose files make the mosaic.
    log : callable, optional
        Receives progress lines.
    warn : callable, optional
        Receives warnings (also written to run.json); default: Python's
        ``warnings.warn`` with :class:`tiler.errors.TilerWarning`.

    Returns
    -------
    RunResult
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    warn = warn or _warn
    if preset is not None:
        if config is not None:
            raise ConfigError("give a config or a preset, not both")
        config = presets.load(preset)
    given = resumption.Settings(config, chunk_size, driver, mask, assume_crs, pixel_only)
    if scheduler is None:
        scheduler = default_scheduler(workers, memory_limit, performance_report=performance_report)
    target = client if client is not None else scheduler
    job = prepare(
        src,
        dst,
        given,
        target,
        performance_report,
        resume=resume,
        max_pixels=max_pixels,
        warn=warn,
        device=device,
        asset=asset,
    )
    if resume and (done := already_complete(job, log)) is not None:
        return done
    source, grid = job.source, job.grid
    with workspace(job, overwrite=overwrite, resume=resume, log=log) as space:
        with (
            _small_pages(),
            executor_for(
                target,
                workers=workers,
                threads_per_worker=threads_per_worker,
                memory_limit=memory_limit,
                security=security,
                log=log,
            ) as executor,
            _performance_report(performance_report),
        ):
            cache = space.value_cache(grid, executor, job.remote_input)
            runner = PassRunner(
                source, grid, executor, space.workdir, log, cache, space.journal, Progress(progress)
            )
            segmentation = segment(runner, job.pipeline)  # statistics, mask, labels, stitching
            array = label_store.create_label_store(
                job.dst,
                grid.shape,
                grid.chunks,
                segmentation.dtype,
                source.crs_wkt,
                source.transform,
            )
            write_labels(runner, segmentation, array)
        # Finishing is in the workspace: a full disk here is reported and cleaned up as anywhere.
        labels = label_store.finish_label_store(job.dst)
        objects, areas = write_objects(job, segmentation)
        seconds = time.perf_counter() - started
        ran_on = scheduler if client is None else "client"
        record = manifest(job, segmentation, seconds, ran_on, space.journal.summary())
        diagnose(job, segmentation, areas, record, warn)  # warnings about odd results
        written = run_record.write_manifest(job.dst, record)
        space.complete()
    return RunResult(
        dst=job.dst,
        labels=labels,
        objects=objects,
        manifest=written,
        n_objects=segmentation.n_objects,
        threshold=segmentation.threshold,
        shape=grid.shape,
        n_tiles=len(grid),
        seconds=seconds,
        timings=dict(segmentation.timings),
    )


@contextlib.contextmanager
def _performance_report(path: str | os.PathLike | None) -> Iterator[None]:
    """dask's performance report of the run, written to ``path`` (distributed only)."""
    if path is None:
        yield
        return
    from distributed import performance_report

    with performance_report(filename=str(path)):
        yield


def _warn(message: str) -> None:
    """Python's warning (TilerWarning), shown at the line that called :func:`run`."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code is not run.__code__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, TilerWarning, stacklevel=level + 1)


def open_labels(dst: str | os.PathLike):
    """The labels of a finished run as a lazy ``xarray.DataArray`` with CRS and transform.

    ``dst`` is a folder, or a run's URL in object storage (``s3://bucket/out/``,
    read with the credentials of the environment, :mod:`tiler.io.stores`).
    Its ``.rio`` accessor is ready (``da.rio.crs``, ``da.rio.transform()``):
    rioxarray is imported here, which registers it. GDAL-based tools (QGIS,
    ``rioxarray.open_rasterio``, ``gdalinfo``) cannot open ``labels.zarr``: the
    GDAL that rasterio bundles (3.10) does not read Zarr v3's ``bytes`` codec.
    ``tiler export DST --cog labels.tif`` (or :func:`tiler.export.export_cog`)
    writes the labels as a Cloud-Optimized GeoTIFF that they open.
    """
    import rioxarray  # noqa: F401 - registers the .rio accessor
    import xarray as xr

    check_complete(dst)
    with finished.storage_errors(dst):
        store = stores.store(stores.folder(dst) / output.LABELS, read_only=True)
        dataset = xr.open_zarr(store, consolidated=False, mask_and_scale=False)
    return dataset["labels"]


def read_objects(dst: str | os.PathLike):
    """The object table of a finished run (a folder or a URL) as a ``geopandas.GeoDataFrame``."""
    check_complete(dst)
    return finished.read_objects(dst)
