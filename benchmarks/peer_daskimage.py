"""The stock pipeline a user would write today with rioxarray + dask-image.

ExG (DESIGN.md section 3, float64, in the order written) -> Gaussian sigma=1 ->
global Otsu from a ``dask.array.histogram`` -> closing r=1 -> opening r=1 ->
persist the mask -> ``dask_image.ndmeasure.label`` (8-connectivity) -> Zarr ->
areas with ``da.bincount``, on a ``distributed.LocalCluster`` on 127.0.0.1.

This module must not import tiler: it also runs in a separate virtualenv with
an older dask (``benchmarks/.venv-dask2025``), where tiler is not installed.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# dask-image's ndmorph defaults, recorded in the results: its binary_closing and
# binary_opening call scipy's binary_dilation/binary_erosion with border_value=0
# for both, where the reference erodes with border_value=1 (scikit-image's rule).
# The two differ only next to the image border, which is outside the synthetic
# field's footprint (alpha 0), so the masks agree there anyway.
BORDER_NOTE = "dask-image ndmorph default border_value=0 for erosion and dilation"


def exg(R, G, B):
    """ExG of DESIGN.md section 3 with dask arithmetic, float64, in the order written.

    ``s = (R+G)+B``; ``r, g, b = R/s, G/s, B/s`` (0 where s == 0);
    ``(2*g - r) - b``. Dividing by ``where(s == 0, 1, s)`` keeps the division
    warnings out of the workers' logs and gives the same values where s != 0.
    """
    import dask.array as da

    s = (R + G) + B
    nonzero = s != 0
    safe = da.where(nonzero, s, 1.0)
    r = da.where(nonzero, R / safe, 0.0)
    g = da.where(nonzero, G / safe, 0.0)
    b = da.where(nonzero, B / safe, 0.0)
    return (2 * g - r) - b


def _write_labels(labels, path: Path, chunk: int) -> tuple[Any, str]:
    """A lazy write of ``labels`` to a Zarr v3 array (``da.to_zarr``, else zarr + ``da.store``)."""
    import dask.array as da
    import zarr

    try:
        return da.to_zarr(labels, str(path), compute=False, zarr_format=3), "da.to_zarr"
    except TypeError:  # dask versions whose to_zarr has no zarr_format keyword
        pass
    try:
        return da.to_zarr(labels, str(path), compute=False), "da.to_zarr"
    except Exception:  # noqa: BLE001 - fall back to zarr + da.store on any old-dask failure
        target = zarr.create_array(
            store=str(path), shape=labels.shape, chunks=(chunk, chunk), dtype=labels.dtype,
            zarr_format=3, overwrite=True,
        )  # fmt: skip
        return da.store(labels, target, lock=False, compute=False), "zarr.create_array + da.store"


def run(src: str | os.PathLike, dst: str | os.PathLike, chunk: int) -> dict[str, Any]:
    """Run the pipeline on ``src``, writing ``dst/labels.zarr``; return timings and counts."""
    import dask
    import dask.array as da
    import rioxarray
    from dask_image import ndfilters, ndmeasure, ndmorph
    from distributed import Client, LocalCluster, wait
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    n_workers = os.cpu_count() or 1
    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
    )  # fmt: skip
    client = Client(cluster)
    t_ready = time.perf_counter()
    timings["cluster_start"] = t_ready - t0
    try:
        raster = rioxarray.open_rasterio(src, chunks={"band": -1, "y": chunk, "x": chunk})
        data = raster.data  # (4, y, x) uint8: R, G, B, alpha
        R, G, B = (data[i].astype(np.float64) for i in range(3))
        valid = data[3] > 0
        x = ndfilters.gaussian_filter(exg(R, G, B), sigma=1.0, mode="nearest", truncate=4.0)

        xv = x[valid]
        vmin, vmax = dask.compute(xv.min(), xv.max())
        counts, edges = da.histogram(xv, bins=256, range=(float(vmin), float(vmax)))
        counts = counts.compute()
        centers = (edges[:-1] + edges[1:]) / 2.0  # as skimage.exposure.histogram
        threshold = float(threshold_otsu(hist=(counts, centers)))
        t_otsu = time.perf_counter()
        timings["otsu"] = t_otsu - t_ready

        footprint = disk(1)
        mask = (x > threshold) & valid
        mask = ndmorph.binary_closing(mask, structure=footprint)
        mask = ndmorph.binary_opening(mask, structure=footprint)
        mask = mask.persist()
        wait(mask)
        t_mask = time.perf_counter()
        timings["mask"] = t_mask - t_otsu

        labels, n = ndmeasure.label(mask, structure=np.ones((3, 3), bool))
        write, writer = _write_labels(labels, dst / "labels.zarr", chunk)
        areas = da.bincount(labels.ravel())
        _, areas, n = dask.compute(write, areas, n)
        t_done = time.perf_counter()
        timings["label_write_areas"] = t_done - t_mask
    finally:
        client.close()
        cluster.close()
    t_closed = time.perf_counter()
    timings["cluster_close"] = t_closed - t_done
    n = int(n)
    areas = np.asarray(areas, np.int64)
    areas = np.concatenate([areas, np.zeros(max(0, n + 1 - areas.size), np.int64)])[1 : n + 1]
    np.save(dst / "areas.npy", areas)
    return {
        "seconds": t_closed - t0,
        "seconds_startup": timings["cluster_start"],
        "timings": timings,
        "n_objects": n,
        "threshold": threshold,
        "labels": str(dst / "labels.zarr"),
        "label_dtype": str(labels.dtype),
        "areas": str(dst / "areas.npy"),
        "workers": n_workers,
        "notes": [BORDER_NOTE, f"labels written with {writer}"],
    }
