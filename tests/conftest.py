"""Shared fixtures: tiled runs on in-memory sources, GeoTIFF factories, real sample tiles."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine

from tiler import cache
from tiler.config import Pipeline
from tiler.executor import Executor
from tiler.io.objects_table import object_columns
from tiler.passes import PassRunner, Segmentation, segment, write_labels
from tiler.tiling import TileGrid

# distributed's worker profiler samples sys._current_frames() every 10 ms; on CPython 3.11
# that can deadlock against the garbage collector (seen once here: a LocalCluster run hung
# in Worker.trigger_profile -> _PyThread_CurrentFrames -> gc_collect_main). The tests read
# no profile, so they run without it.
dask.config.set({"distributed.worker.profile.enabled": False})

DATA = Path(__file__).parent / "data"
UTM = "EPSG:32611"


def value_cache_of(kind: str, work: Path) -> str:
    """An Otsu value cache of one kind (see tiler.cache) for a run in ``work``."""
    return {
        "directory": lambda: str(work / "values"),
        "memory": cache.memory_cache,
        "codes": lambda: cache.codes_cache(work / "codes"),  # no pixels kept: read again
        "codes+memory": lambda: cache.codes_cache(work / "codes", memory=1 << 20),
        "codes+pixels": lambda: cache.codes_cache(work / "codes", files=True),
        "none": lambda: cache.NONE,
    }[kind]()


def run_tiled(
    source, pipeline: Pipeline, chunks, scheduler="sync", cache_kind="directory"
) -> tuple[np.ndarray, Segmentation, dict]:
    """Run the passes on ``source`` and return (labels, segmentation, object columns)."""
    grid = TileGrid((source.height, source.width), tuple(chunks))
    work = Path(tempfile.mkdtemp(prefix="tiler-test-"))
    values = value_cache_of(cache_kind, work)
    try:
        runner = PassRunner(source, grid, Executor(scheduler), work, cache=values)
        seg = segment(runner, pipeline)
        path = str(work / "labels.zarr")
        zarr.create_array(path, shape=grid.shape, chunks=grid.chunks, dtype=seg.dtype, fill_value=0)
        write_labels(runner, seg, path)
        labels = zarr.open_array(path, mode="r")[:]
        return labels, seg, object_columns(seg.object_stats(), source.transform)
    finally:
        cache.drop(values)
        shutil.rmtree(work, ignore_errors=True)


def write_geotiff(
    path: Path,
    image: np.ndarray,
    *,
    nodata=None,
    alpha: bool = False,
    crs=UTM,
    transform=None,
    tiled: bool = True,
    blocksize: int = 64,
    compress="deflate",
    **options,
) -> Path:
    """Write a (B, H, W) array as a GeoTIFF; with ``alpha`` the last band is alpha.

    ``options``: more creation options (``blockysize=8`` for a striped file, say).
    """
    count, height, width = image.shape
    profile = dict(
        driver="GTiff",
        count=count,
        height=height,
        width=width,
        dtype=image.dtype,
        crs=crs,
        transform=transform or Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0),
        compress=compress,
        nodata=nodata,
    )
    if tiled and height >= 16 and width >= 16:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if alpha:  # the last band is an ExtraSample of kind alpha (GDAL's ALPHA=YES)
        profile.update(photometric="RGB" if count == 4 else "MINISBLACK", ALPHA="YES")
    profile.update(options)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(image)
    return path


@pytest.fixture
def geotiff(tmp_path):
    """Factory: ``geotiff(image, name=..., **kwargs)`` writes a GeoTIFF in ``tmp_path``."""
    counter = iter(range(1_000_000))

    def make(image: np.ndarray, name: str | None = None, **kwargs) -> Path:
        return write_geotiff(tmp_path / (name or f"img{next(counter)}.tif"), image, **kwargs)

    return make


@pytest.fixture(scope="session")
def neon_tile() -> Path:
    return DATA / "neon_sjer_477" / "2018_SJER_3_252000_4107000_image_477.tif"


@pytest.fixture(scope="session")
def naip_tiles() -> list[Path]:
    return sorted((DATA / "urban_trees_naip").glob("*.tif"))
