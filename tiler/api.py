"""The Python API: ``run``, ``open_labels``, ``read_objects``."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tiler import cache as value_cache
from tiler.config import (
    CannyEdges,
    Grow,
    LocalThreshold,
    MultiOtsu,
    Percentile,
    Pipeline,
    load_pipeline,
    parse_pipeline,
)
from tiler.engine import Passes, Segmentation
from tiler.errors import ConfigError
from tiler.io import output
from tiler.io.raster import GeoTiffSource, RasterSource, fingerprint, open_geotiff
from tiler.plan import Executor, TileGrid

DEFAULT_CHUNK_SIZE = 2048
SCHEDULERS = ("local", "threads", "sync")


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


def check_scheduler(scheduler: Any) -> None:
    """Refuse an unknown scheduler name before anything is written."""
    if (
        isinstance(scheduler, str)
        and scheduler not in SCHEDULERS
        and not scheduler.startswith(("tcp://", "tls://", "inproc://"))
    ):
        allowed = ", ".join(SCHEDULERS)
        raise ConfigError(
            f"scheduler: expected one of {allowed} or tcp://HOST:PORT, got {scheduler!r}"
        )


@contextlib.contextmanager
def executor_for(
    scheduler: Any = "local",
    *,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Executor]:
    """An :class:`Executor` for a scheduler name, a ``tcp://`` address or a distributed ``Client``.

    ``local`` starts a LocalCluster whose worker threads run in this process
    (one per core, or ``workers``), with its dashboard on 127.0.0.1 and no
    other listening socket, and closes it afterwards. tiler's kernels (GDAL,
    OpenCV, numba, NumPy, the Zarr codecs) release the GIL, so threads use
    every core, start in milliseconds instead of seconds, share one GDAL block
    cache per thread's handle, and let the Otsu passes keep values in memory.
    """
    log = log or (lambda message: None)
    if scheduler in ("sync", "threads"):
        yield Executor(scheduler)
        return
    if not isinstance(scheduler, str):  # a distributed Client
        yield Executor(scheduler)
        return
    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with (
            LocalCluster(
                n_workers=1,
                threads_per_worker=n,
                processes=False,
                dashboard_address="127.0.0.1:0",
                worker_dashboard_address="127.0.0.1:0",
                silence_logs=logging.CRITICAL,
            ) as cluster,
            Client(cluster) as client,
        ):
            port = urlsplit(client.dashboard_link).port
            log(f"local cluster: {n} worker thread(s), dashboard http://127.0.0.1:{port}/status")
            yield Executor(client)
        return
    check_scheduler(scheduler)
    with Client(scheduler, timeout="30s") as client:
        log(f"connected to {scheduler}, dashboard {client.dashboard_link}")
        yield Executor(client)


def _worker_addresses(executor: Executor) -> set[str]:
    return set(executor.scheduler.scheduler_info().get("workers", {}))


def _in_this_process(executor: Executor) -> bool:
    """Whether every task runs in this process (so an in-memory cache is seen by all)."""
    if isinstance(executor.scheduler, str):
        return True
    addresses = _worker_addresses(executor)
    return bool(addresses) and all(a.startswith("inproc://") for a in addresses)


def _on_this_machine(executor: Executor) -> bool:
    """Whether every worker shares this machine's memory (so a tmpfs cache is visible to all)."""
    if _in_this_process(executor):
        return True
    hosts = {a.split("://")[-1].rsplit(":", 1)[0] for a in _worker_addresses(executor)}
    return bool(hosts) and hosts <= {"127.0.0.1", "localhost", "[::1]", socket.gethostname()}


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
    if _in_this_process(executor) and estimate <= min(MEMORY_CACHE_BYTES, 0.25 * available):
        return value_cache.memory_cache()
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and _on_this_machine(executor):
        if estimate < 0.25 * min(shutil.disk_usage(shm).free, available):
            return tempfile.mkdtemp(prefix="tiler-values-", dir=shm)
    if _on_this_machine(executor):
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
    chunk_size: int | tuple[int, int] = DEFAULT_CHUNK_SIZE,
    client: Any = None,
    scheduler: str = "local",
    workers: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Segment a GeoTIFF in tiles and write labels, objects and the manifest to ``dst``.

    Parameters
    ----------
    src : path or RasterSource
        A georeferenced GeoTIFF (opened with the GTiff driver only).
    dst : path
        Output directory; must be empty or absent unless ``overwrite``.
    config : path, dict or Pipeline, optional
        The pipeline; ``None`` runs the default plant pipeline.
    chunk_size : int or (int, int)
        Tile size in pixels; tiles are also the Zarr chunks.
    client : distributed.Client, optional
        Run on this client (takes precedence over ``scheduler``).
    scheduler : str
        ``local`` (a LocalCluster on 127.0.0.1), ``threads``, ``sync`` or ``tcp://HOST:PORT``.
    workers : int, optional
        Worker processes of the local cluster (default: one per core).

    Returns
    -------
    RunResult
    """
    started = time.perf_counter()
    log = log or (lambda message: None)
    pipeline = _pipeline(config)
    chunks = _chunks(chunk_size)
    source = src if not isinstance(src, (str, os.PathLike)) else open_geotiff(src)
    pipeline = pipeline.resolve_bands(source.count, source.alpha_bands, source=source.name)
    src_path = Path(source.path) if isinstance(source, GeoTiffSource) else None
    check_scheduler(client if client is not None else scheduler)
    dst = Path(dst)
    created = not dst.exists()
    workdir = output.prepare_destination(dst, src_path, overwrite=overwrite)
    grid = TileGrid((source.height, source.width), chunks)
    log(f"{source.name}: {grid.shape[0]} x {grid.shape[1]} px, {len(grid)} tile(s) of {chunks}")
    cache = None
    try:
        with (
            _small_pages(),
            executor_for(
                client if client is not None else scheduler, workers=workers, log=log
            ) as executor,
        ):
            cache = choose_value_cache(grid, executor, workdir)
            passes = Passes(source, pipeline, grid, executor, workdir, log, cache)
            segmentation = passes.segment()
            array = output.create_label_store(
                dst, grid.shape, chunks, segmentation.dtype, source.crs_wkt, source.transform
            )
            passes.write(segmentation, array)
    except BaseException:
        output.discard_partial(dst, created=created)
        raise
    finally:
        if cache is not None:
            value_cache.drop(cache)

    labels = output.finish_label_store(dst)
    columns = output.object_columns(segmentation.object_stats(), source.transform)
    objects = output.write_objects(dst, columns, source.crs_wkt)
    shutil.rmtree(workdir)
    seconds = time.perf_counter() - started
    manifest = output.write_manifest(
        dst,
        _manifest(
            source, pipeline, grid, segmentation, seconds, scheduler if client is None else "client"
        ),
    )
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


def _manifest(source, pipeline, grid, segmentation, seconds, scheduler) -> dict[str, Any]:
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
        path = Path(source.path)
        inputs.update(
            size_bytes=path.stat().st_size,
            fingerprint_sha256=fingerprint(path),
            dtype=source.dtype,
            nodata=source.nodata,
        )
    step = pipeline.threshold
    value = segmentation.threshold
    threshold: dict[str, Any] = {"value": list(value) if isinstance(value, tuple) else value}
    if segmentation.value_range is not None:
        vmin, vmax, n_valid = segmentation.value_range
        if isinstance(step, Percentile):
            threshold.update(method="percentile", q=step.q)
        else:
            threshold.update(method="otsu", bins=256)
            if isinstance(step, MultiOtsu):
                threshold.update(method="multi_otsu", classes=step.classes, keep=list(step.keep))
        threshold.update(range=[vmin, vmax], valid_pixels=n_valid)
    elif isinstance(step, LocalThreshold):
        threshold.update(method="local", **step.to_dict()["local"])
    elif isinstance(step, Grow):
        threshold.update(method="grow", **step.to_dict()["grow"])
    elif isinstance(step, CannyEdges):
        threshold.update(method="edges", **step.to_dict()["edges"])
    else:
        threshold.update(method="fixed")
    return {
        "tiler_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "input": inputs,
        "config": pipeline.to_dict(),
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


def _check_complete(dst: Path) -> None:
    from tiler.errors import OutputError

    try:
        manifest = output.read_manifest(dst)
    except FileNotFoundError:
        raise OutputError(f"{dst}: no run.json; not a finished tiler run") from None
    if manifest.get("complete") is not True:
        raise OutputError(f"{dst}: run.json does not say complete; the run did not finish")


def open_labels(dst: str | os.PathLike):
    """The labels of a finished run as a lazy ``xarray.DataArray`` with CRS and transform.

    ``rioxarray`` reads its georeferencing (``da.rio.crs``, ``da.rio.transform()``).
    """
    import xarray as xr

    dst = Path(dst)
    _check_complete(dst)
    dataset = xr.open_zarr(dst / output.LABELS, consolidated=False, mask_and_scale=False)
    return dataset["labels"]


def read_objects(dst: str | os.PathLike):
    """The object table of a finished run as a ``geopandas.GeoDataFrame``."""
    import geopandas as gpd

    dst = Path(dst)
    _check_complete(dst)
    return gpd.read_parquet(dst / output.OBJECTS)
