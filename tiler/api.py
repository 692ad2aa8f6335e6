"""The Python API: ``run``, ``open_labels``, ``read_objects``."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tiler import cache as value_cache
from tiler import diagnostics, presets, reach, resolution, resumption
from tiler.cluster import check_scheduler, executor_for, in_this_process, on_this_machine
from tiler.config import Pipeline, load_pipeline, parse_pipeline
from tiler.errors import ConfigError, OutputError, TileError, TilerWarning
from tiler.executor import Executor
from tiler.io import destination, label_store, objects_table, output, run_record
from tiler.io.finished import check_complete, complete_manifest
from tiler.io.input_identity import fingerprint
from tiler.io.layout import plan_chunks
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import GeoTiffSource
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS
from tiler.journal import Journal, describe_change
from tiler.passes import PassRunner, Segmentation, segment, write_labels
from tiler.plan import check_size
from tiler.progress import Progress
from tiler.source import RasterSource
from tiler.tiling import TileGrid

DEFAULT_CHUNK_SIZE = 2048
# A striped input, or a halo that multiplies the work (tiler.reach), is warned
# about above one default tile's pixels: below, a run takes seconds whatever the
# layout or halo, and the warning would be noise (its tiles follow the strips
# all the same).
WARN_PIXELS = WARN_STRIPED_PIXELS = DEFAULT_CHUNK_SIZE * DEFAULT_CHUNK_SIZE


@dataclass(frozen=True)
class RunResult:
    """What a run wrote and measured."""

    dst: Path
    labels: Path
    objects: Path
    manifest: Path
    n_objects: int
    threshold: float
    shape: tuple[int, int]
    n_tiles: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def megapixels_per_second(self) -> float:
        return self.shape[0] * self.shape[1] / 1e6 / self.seconds if self.seconds else float("inf")


def _pipeline(config: str | os.PathLike | dict | Pipeline | None) -> Pipeline:
    if isinstance(config, Pipeline):
        return config
    if isinstance(config, dict):
        return parse_pipeline(config)
    return load_pipeline(config)


def _chunks(chunk_size: int | tuple[int, int]) -> tuple[int, int]:
    chunks = (chunk_size, chunk_size) if isinstance(chunk_size, int) else tuple(chunk_size)
    if len(chunks) != 2 or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in chunks
    ):
        raise ConfigError(f"chunk size: expected a positive integer, got {chunk_size!r}")
    return chunks  # type: ignore[return-value]


# Values kept in memory for the Otsu passes at most (9 bytes per pixel: 2 GiB is
# about 230 megapixels); larger images use tmpfs, or recompute.
MEMORY_CACHE_BYTES = 2 * 2**30


def choose_value_cache(grid: TileGrid, executor: Executor, workdir: Path) -> str:
    """Where the Otsu passes keep each tile's values (see :mod:`tiler.cache`).

    In memory when every task runs in this process and the values (9 bytes
    per pixel) fit both ``MEMORY_CACHE_BYTES`` and a quarter of the free
    memory: the arrays are kept as computed, at no cost. Otherwise on
    /dev/shm when every worker is on this machine and they fit a quarter of
    the free memory. Otherwise, with workers on this machine, the histogram
    pass keeps compressed bin codes in DST's work folder (writing the values
    themselves there is slower than recomputing them: 1.07 gigapixels took
    72 s with such a file cache, 59 s recomputing; with the codes, see
    benchmarks/README.md). Remote workers recompute.
    """
    estimate = 9 * grid.shape[0] * grid.shape[1] * 1.1
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if in_this_process(executor) and estimate <= min(MEMORY_CACHE_BYTES, 0.25 * available):
        return value_cache.memory_cache()
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and on_this_machine(executor):
        if estimate < 0.25 * min(shutil.disk_usage(shm).free, available):
            return tempfile.mkdtemp(prefix="tiler-values-", dir=shm)
    if on_this_machine(executor):
        return value_cache.codes_cache(workdir / "codes")
    return value_cache.NONE


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
    scheduler: str = "local",
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
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> RunResult:
    """Segment a GeoTIFF in tiles and write labels, objects and the manifest to ``dst``.

    Parameters
    ----------
    src : path or RasterSource
        A georeferenced GeoTIFF (opened with the GTiff driver only).
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
    scheduler : str
        ``local`` (a LocalCluster on 127.0.0.1), ``threads``, ``sync``,
        ``tcp://HOST:PORT`` / ``tls://HOST:PORT``, or ``slurm`` / ``pbs``
        (dask-jobqueue); see :mod:`tiler.cluster`.
    workers, threads_per_worker, memory_limit : optional
        The local cluster's worker processes (default: one worker whose
        threads, one per core, run in this process), threads per worker and
        memory limit per worker (``"4GiB"``); for ``slurm``/``pbs``, the
        number of workers to start.
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
    dst = Path(dst)
    if preset is not None:
        if config is not None:
            raise ConfigError("give a config or a preset, not both")
        config = presets.load(preset)
    given = resumption.Settings(config, chunk_size, driver, mask, assume_crs, pixel_only)
    before = resumption.recorded(dst) if resume else None
    settings = given.completed(before)  # resuming: what is left out is the run's
    pipeline = _pipeline(settings.config)
    chunk_size = settings.chunk_size
    chunks = _chunks(DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size)
    if isinstance(src, (str, os.PathLike)):
        source = open_geotiff(
            src,
            max_pixels=max_pixels,
            driver=settings.driver or "GTiff",
            mask=settings.mask or "dataset",
            assume_crs=settings.assume_crs,
            pixel_only=bool(settings.pixel_only),
        )
    else:
        source = src
    pipeline = resolution.resolve(pipeline, source)  # bands, and ground units in pixels
    src_path = Path(source.path) if isinstance(source, GeoTiffSource) else None
    target = client if client is not None else scheduler
    check_scheduler(target)
    if performance_report is not None and target in ("sync", "threads"):
        raise ConfigError(f"--performance-report needs a distributed scheduler, not {target!r}")
    warned: list[str] = []
    if isinstance(source, GeoTiffSource):
        plan = plan_chunks(
            source.height,
            source.width,
            source.block_shape,
            chunks,
            explicit=chunk_size is not None,
            pixel_bytes=source.count * np.dtype(source.dtype).itemsize,
        )
        chunks = plan.chunks
        if plan.warning is not None and source.height * source.width > WARN_STRIPED_PIXELS:
            warned.append(f"{source.name}: {plan.warning}")
    grid = TileGrid((source.height, source.width), chunks)
    check_size(grid, source.name)  # before DST is touched
    warned.extend(
        reach.check(pipeline, grid.shape, chunks, source.name, _pixel_m(source), WARN_PIXELS)
    )
    for message in warned:
        (warn or _warn)(message)
    identity = _identity(source, pipeline, chunks)
    if before is not None:
        resumption.check(dst, before, given, identity)  # an option given that differs
    if resume and (done := _finished(dst, identity)) is not None:
        log(f"{dst}: already complete; nothing to resume")
        if (dst / output.WORKDIR).exists():  # killed between run.json and removing its work
            lock = destination.lock_destination(dst, src_path)
            lock.mark_complete()
            try:
                shutil.rmtree(dst / output.WORKDIR, ignore_errors=True)
            finally:
                lock.release()
        return done
    created = not dst.exists()
    # Held until run() returns or raises; a second run into dst is refused here, touching nothing.
    lock = destination.lock_destination(dst, src_path)
    try:
        workdir = destination.prepare_destination(dst, src_path, overwrite=overwrite, resume=resume)
        log(f"{source.name}: {grid.shape[0]} x {grid.shape[1]} px, {len(grid)} tile(s) of {chunks}")
        journal = Journal.start(workdir, identity, resume=resume)  # refusing touches nothing
    except BaseException as exc:
        if destination.disk_error(exc) is not None:  # a full disk: remove all, as below
            destination.discard_partial(dst, created=created)
        lock.release(remove_dst=created)
        destination.raise_for_write_error(dst, exc)
        raise
    cache = None
    try:
        for stale in journal.stale_caches:
            value_cache.drop(stale)
        if journal.attempt > 1:
            log(f"resuming: attempt {journal.attempt}")
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
            cache = choose_value_cache(grid, executor, workdir)
            journal.note_cache(cache)
            runner = PassRunner(
                source, grid, executor, workdir, log, cache, journal, Progress(progress)
            )
            segmentation = segment(runner, pipeline)
            array = label_store.create_label_store(
                dst, grid.shape, chunks, segmentation.dtype, source.crs_wkt, source.transform
            )
            write_labels(runner, segmentation, array)
        # Finishing is inside the try: a full disk here is reported and cleaned up as anywhere.
        labels = label_store.finish_label_store(dst)
        columns = objects_table.object_columns(
            segmentation.object_stats(),
            source.transform,
            source.crs_wkt,
            georeferenced=getattr(source, "georeferencing", "file") != "none",
        )
        objects = objects_table.write_objects(dst, columns, source.crs_wkt)
        seconds = time.perf_counter() - started
        record = _manifest(
            source,
            pipeline,
            grid,
            segmentation,
            seconds,
            scheduler if client is None else "client",
            journal.summary(),
            warned,
            identity,
        )
        for message in diagnostics.check(
            columns["area_px"],
            record,
            candidate_areas=segmentation.stitched.stats["count"],
            split_presets=presets.splitting(),
        ):
            warned.append(message)  # record["warnings"] is this list
            (warn or _warn)(message)
        manifest = run_record.write_manifest(dst, record)
        # Complete from here on. The journal went only now, so that a run killed while
        # finishing can be resumed; failing to remove it must not undo a complete run.
        lock.mark_complete()  # a complete DST keeps no lock file
        shutil.rmtree(workdir, ignore_errors=True)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, TileError)) and destination.disk_error(exc) is None:
            # Interrupted, or a tile's workers died: keep what is done for --resume.
            if (workdir / "journal").exists():
                log(f"{dst}: unfinished; run again with --resume to continue")
            raise
        # Anything else, a full disk included (in a tile or not): remove what was written.
        destination.discard_partial(dst, created=created)
        destination.raise_for_write_error(dst, exc)  # a full disk: one line, no traceback
        raise
    finally:
        if cache is not None:
            value_cache.drop(cache)
        lock.release(remove_dst=created)
    return RunResult(
        dst=dst,
        labels=labels,
        objects=objects,
        manifest=manifest,
        n_objects=segmentation.n_objects,
        threshold=segmentation.threshold,
        shape=grid.shape,
        n_tiles=len(grid),
        seconds=seconds,
        timings=dict(segmentation.timings),
    )


def _pixel_m(source: RasterSource) -> float | None:
    """The pixel's side in metres, for messages; ``None`` for a --pixel-only input."""
    if getattr(source, "georeferencing", "file") == "none":
        return None
    return reach.pixel_size_m(source.crs_wkt, source.transform, source.height)


def _identity(source: RasterSource, pipeline: Pipeline, chunks: tuple[int, int]) -> dict:
    """What a run is of: ``--resume`` continues only the same run (see :mod:`tiler.journal`)."""
    from tiler import __version__

    inputs: dict[str, Any] = {
        "path": str(source.name),
        "height": source.height,
        "width": source.width,
    }
    if isinstance(source, GeoTiffSource):
        path = Path(source.path)
        inputs.update(
            size_bytes=path.stat().st_size,
            fingerprint_sha256=fingerprint(path),
            options=source.options,
        )
    return {
        "input": inputs,
        "pipeline": pipeline.to_dict(),
        "chunks": list(chunks),
        "tiler_version": __version__,
    }


def _finished(dst: Path, identity: dict) -> RunResult | None:
    """The result already in ``dst`` if it holds this very run, complete; else ``None``."""
    if (manifest := complete_manifest(dst)) is None:
        return None
    inputs = manifest.get("input", {})
    if difference := describe_change(resumption.manifest_identity(manifest), identity):
        raise OutputError(
            f"{dst}: holds a complete run, but {difference}; pass --overwrite to replace it"
        )
    threshold = manifest.get("threshold", {}).get("value")
    chunking = manifest["chunking"]
    return RunResult(
        dst=dst,
        labels=dst / output.LABELS,
        objects=dst / output.OBJECTS,
        manifest=dst / output.MANIFEST,
        n_objects=int(manifest["object_count"]),
        threshold=tuple(threshold) if isinstance(threshold, list) else threshold,
        shape=(int(inputs["height"]), int(inputs["width"])),
        n_tiles=int(chunking["tiles"]),
        seconds=float(manifest.get("timings_seconds", {}).get("total", 0.0)),
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
    warnings.warn(message, TilerWarning, stacklevel=3)


def _manifest(
    source, pipeline, grid, segmentation, seconds, scheduler, journal, warned, identity
) -> dict[str, Any]:
    from tiler import __version__

    inputs: dict[str, Any] = {
        "path": source.name,
        "height": source.height,
        "width": source.width,
        "count": source.count,
        "crs_wkt": source.crs_wkt,
        "transform": list(source.transform),
    }
    if isinstance(source, GeoTiffSource):
        recorded = identity["input"]  # hashed once, as the run began (the journal checks it)
        inputs.update(
            size_bytes=recorded["size_bytes"],
            fingerprint_sha256=recorded["fingerprint_sha256"],
            dtype=source.dtype,
            nodata=source.nodata,
            options=source.options,
        )
    value = segmentation.threshold
    threshold: dict[str, Any] = {"value": list(value) if isinstance(value, tuple) else value}
    threshold.update((pipeline.model or pipeline.threshold).record())
    if segmentation.value_range is not None:
        vmin, vmax, n_valid = segmentation.value_range
        threshold.update(range=[vmin, vmax], valid_pixels=n_valid)
    return {
        "tiler_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "input": inputs,
        "config": pipeline.to_dict(),  # in pixels; "units": what was written in ground units
        "units": pipeline.units,
        "chunking": {
            "chunk_shape": list(grid.chunks),
            "grid": list(grid.grid),
            "tiles": len(grid),
            "halo": pipeline.preprocess_reach
            + pipeline.threshold_reach
            + pipeline.stages()[0].reach,
        },
        "scheduler": str(scheduler),
        "threshold": threshold,
        "labels": {"path": output.LABELS + "/labels", "dtype": str(segmentation.dtype)},
        "object_count": segmentation.n_objects,
        **_split_summary(pipeline, segmentation),
        "resume": journal,
        "warnings": warned,
        "timings_seconds": {
            **{k: round(v, 4) for k, v in segmentation.timings.items()},
            "total": round(seconds, 4),
        },
        "complete": True,
    }


def _split_summary(pipeline: Pipeline, segmentation: Segmentation) -> dict[str, Any]:
    """How instances were made across tiles (watershed split or a model's labels), if so."""
    if pipeline.split is not None:
        method, halo = "watershed", pipeline.split.halo
    elif pipeline.model is not None and pipeline.model.output == "labels":
        method, halo = f"model {pipeline.model.function}", pipeline.model.halo
    else:
        return {}
    return {
        "split": {
            "method": method,
            "approximate": True,
            "halo": halo,
            "objects_decided_by_fallback": segmentation.split_fallbacks,
        }
    }


def open_labels(dst: str | os.PathLike):
    """The labels of a finished run as a lazy ``xarray.DataArray`` with CRS and transform.

    Its ``.rio`` accessor is ready (``da.rio.crs``, ``da.rio.transform()``):
    rioxarray is imported here, which registers it. GDAL-based tools (QGIS,
    ``rioxarray.open_rasterio``, ``gdalinfo``) cannot open ``labels.zarr``: the
    GDAL that rasterio bundles (3.10) does not read Zarr v3's ``bytes`` codec.
    ``tiler export DST --cog labels.tif`` (or :func:`tiler.export.export_cog`)
    writes the labels as a Cloud-Optimized GeoTIFF that they open.
    """
    import rioxarray  # noqa: F401 - registers the .rio accessor
    import xarray as xr

    dst = Path(dst)
    check_complete(dst)
    dataset = xr.open_zarr(dst / output.LABELS, consolidated=False, mask_and_scale=False)
    return dataset["labels"]


def read_objects(dst: str | os.PathLike):
    """The object table of a finished run as a ``geopandas.GeoDataFrame``."""
    import geopandas as gpd

    dst = Path(dst)
    check_complete(dst)
    return gpd.read_parquet(dst / output.OBJECTS)
