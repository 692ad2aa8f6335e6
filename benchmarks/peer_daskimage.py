"""The pipeline as a careful user writes it today with rioxarray + dask-image.

ExG (DESIGN.md section 3, float64, in the order written: the numpy function of
the whole-image peer on each chunk, ``da.map_blocks``) -> Gaussian sigma=1 ->
global Otsu from a ``dask.array.histogram`` -> closing r=1 -> opening r=1 ->
``dask_image.ndmeasure.label`` (8-connectivity) -> labels to Zarr, areas with
``da.bincount``, written the way dask and dask-image's documentation teach:

- ``rioxarray.open_rasterio(..., lock=False)`` with chunks of all four bands
  and whole rows of the image (``chunk`` rows by the full width: about 130 MB
  of float64 per chunk at 8000 px wide, dask's recommended chunk size), so
  that every chunk is one window read and no GDAL block is decoded twice;
  ``lock=False`` lets each thread read through its own file handle;
- ExG as one numpy function per chunk (``da.map_blocks``) with in-place
  arithmetic, rather than a dozen dask array expressions, each a fresh
  130 MB temporary per chunk (first touches of fresh memory are slow on these
  VMs: this cut the CPU time of the ExG + Gaussian stage at 64 MP by a third);
- dask's default scheduler for arrays, the threaded one (no distributed
  cluster to start: numpy, SciPy and GDAL release the GIL);
- the smoothed image persisted before the Otsu passes (it is read three times:
  min/max, histogram, mask) and the mask persisted before ``ndmeasure.label``
  (without it every block of the labelling recomputes everything upstream);
- the labels written to Zarr and their areas counted in one ``dask.compute``.

This module must not import tiler (nor may ``peer_reference``): it also runs in
a separate virtualenv with an older dask (``benchmarks/.venv-dask2025``), where
tiler is not installed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.peer_reference import excess_green

# dask-image's ndmorph defaults, recorded in the results: its binary_closing and
# binary_opening call scipy's binary_dilation/binary_erosion with border_value=0
# for both, where the reference erodes with border_value=1 (scikit-image's rule).
# The two differ only next to the image border, which is outside the synthetic
# field's footprint (alpha 0), so the masks agree there anyway.
BORDER_NOTE = "dask-image ndmorph default border_value=0 for erosion and dilation"


def _write_labels(labels, path: Path) -> tuple[Any, str]:
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
            store=str(path), shape=labels.shape, chunks=labels.chunksize, dtype=labels.dtype,
            zarr_format=3, overwrite=True,
        )  # fmt: skip
        return da.store(labels, target, lock=False, compute=False), "zarr.create_array + da.store"


def otsu(x, valid) -> float:
    """``threshold_otsu(x[valid])`` from a 256-bin ``da.histogram`` over [min, max]."""
    import dask
    import dask.array as da
    from skimage.filters import threshold_otsu

    xv = x[valid]
    vmin, vmax = dask.compute(xv.min(), xv.max())
    counts, edges = da.histogram(xv, bins=256, range=(float(vmin), float(vmax)))
    centers = (edges[:-1] + edges[1:]) / 2.0  # as skimage.exposure.histogram
    return float(threshold_otsu(hist=(counts.compute(), centers)))


def run(src: str | os.PathLike, dst: str | os.PathLike, chunk: int) -> dict[str, Any]:
    """Run the pipeline on ``src``, writing ``dst/labels.zarr``; return timings and counts.

    ``chunk`` is the height of the row bands the image is read in.
    """
    import dask
    import dask.array as da
    import rioxarray
    from dask_image import ndfilters, ndmeasure, ndmorph
    from skimage.morphology import disk

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):  # dask's default for arrays, said outright
        raster = rioxarray.open_rasterio(src, chunks={"band": -1, "y": chunk, "x": -1}, lock=False)
        data = raster.data  # (4, y, x) uint8: R, G, B, alpha
        x = da.map_blocks(excess_green, data, dtype=np.float64, drop_axis=0)
        valid = data[3] > 0
        smooth = ndfilters.gaussian_filter(x, sigma=1.0, mode="nearest", truncate=4.0)
        smooth, valid = dask.persist(smooth, valid)
        t_smooth = time.perf_counter()
        timings["read_exg_gaussian"] = t_smooth - t0

        threshold = otsu(smooth, valid)
        t_otsu = time.perf_counter()
        timings["otsu"] = t_otsu - t_smooth

        footprint = disk(1)
        mask = (smooth > threshold) & valid
        mask = ndmorph.binary_closing(mask, structure=footprint)
        mask = ndmorph.binary_opening(mask, structure=footprint)
        mask = mask.persist()
        del smooth, valid
        t_mask = time.perf_counter()
        timings["mask"] = t_mask - t_otsu

        labels, n = ndmeasure.label(mask, structure=np.ones((3, 3), bool))
        write, writer = _write_labels(labels, dst / "labels.zarr")
        areas = da.bincount(labels.ravel())
        _, areas, n = dask.compute(write, areas, n)
        t_done = time.perf_counter()
        timings["label_write_areas"] = t_done - t_mask
    n = int(n)
    areas = np.asarray(areas, np.int64)
    areas = np.concatenate([areas, np.zeros(max(0, n + 1 - areas.size), np.int64)])[1 : n + 1]
    np.save(dst / "areas.npy", areas)
    return {
        "seconds": t_done - t0,
        "seconds_startup": 0.0,
        "timings": timings,
        "n_objects": n,
        "threshold": threshold,
        "labels": str(dst / "labels.zarr"),
        "label_dtype": str(labels.dtype),
        "areas": str(dst / "areas.npy"),
        "workers": f"threads scheduler, {os.cpu_count()} threads",
        "chunk_shape": [int(c) for c in mask.chunksize],
        "notes": [
            BORDER_NOTE,
            f"labels written with {writer}",
            f"chunks of {chunk} rows x the full width, dask's threaded scheduler",
        ],
    }
