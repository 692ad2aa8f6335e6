"""The pass over a finished run's image for the per-cell features (:mod:`tiler.yield_.cells`).

One pass in windows whose sides are whole multiples of the cell side ``k``
(:func:`windows`), so that every cell lies wholly inside one window and its
statistics are made from all its pixels at once: the percentiles are exact,
not merged. Each window task (:func:`window_cells`) reads the input's bands
and mask and the run's labels, computes the vegetation index with the run's
own kernels (:meth:`tiler.report.vigour.Vigour.values`) and returns, per
cell, the valid pixels, the labelled valid pixels, and the index's mean and
percentiles over the vegetation pixels (labelled and valid, finite index).

The percentiles (:func:`cell_percentiles`) sort every cell's ``k * k`` values
at once, non-vegetation as NaN (NumPy sorts NaN last), and interpolate
between the sorted values exactly as :func:`numpy.percentile`'s default
``linear`` method does, from each cell's count of finite values: the same
floating-point operations, so the same numbers to the last bit.

Plants per cell come from the object table, read a batch at a time
(:func:`object_counts`): memory is bounded by the grid, not the objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tiler.executor import Executor
from tiler.io import output, stores
from tiler.plan import window_graph
from tiler.report.grid import object_cells
from tiler.tiling import TileGrid, Window

WINDOW = 2048  # about this many pixels on a window's side, rounded to whole cells
PERCENTILES = (10.0, 50.0, 90.0)
BATCH = 1 << 18  # objects read at a time


def windows(shape: tuple[int, int], k: int, target: int = WINDOW) -> list[Window]:
    """The pass's windows: squares of a whole number of cells, about ``target`` pixels."""
    side = k * max(1, round(target / k))
    return [window for *_, window in TileGrid(shape, (side, side))]


def by_cell(plane: np.ndarray, k: int, fill: Any) -> np.ndarray:
    """``plane`` (h, w) as ``(ceil(h/k), ceil(w/k), k*k)``: each cell's pixels in a row,
    the missing pixels of partial edge cells ``fill``."""
    h, w = plane.shape
    hc, wc = math.ceil(h / k), math.ceil(w / k)
    if (hc * k, wc * k) != (h, w):
        padded = np.full((hc * k, wc * k), fill, dtype=plane.dtype)
        padded[:h, :w] = plane
        plane = padded
    return plane.reshape(hc, k, wc, k).transpose(0, 2, 1, 3).reshape(hc, wc, k * k)


def cell_percentiles(
    cells: np.ndarray, percentiles: tuple[float, ...] = PERCENTILES, count: np.ndarray | None = None
) -> np.ndarray:
    """Each cell's percentiles of its finite values (NaN: not a value).

    ``cells``: float64 ``(..., n)``, a cell's values along the last axis (sorted
    here, in place); ``count``: each cell's finite values, if known. Percentiles are
    :func:`numpy.percentile`'s default (linear), computed with its very operations:
    ``(len(percentiles), ...)``, NaN for a cell without finite values.
    """
    cells.sort(axis=-1)  # NaN last
    if count is None:
        count = np.isfinite(cells).sum(axis=-1)
    out = np.full((len(percentiles), *count.shape), np.nan)
    flat = cells.reshape(-1, cells.shape[-1])
    some = np.flatnonzero(count.ravel() > 0)  # the cells with values (no copy of theirs)
    n = count.ravel()[some]
    for at, p in enumerate(percentiles):
        q = np.true_divide(p, 100)
        virtual = (n - 1) * q  # numpy's "linear": (n - 1) q
        before = np.floor(virtual)
        last = virtual >= n - 1
        lo = np.where(last, n - 1, before).astype(np.intp)
        hi = np.where(last, n - 1, before + 1).astype(np.intp)
        gamma = virtual - np.where(last, -1.0, before)  # as numpy: -1 marks the last index
        a, b = flat[some, lo], flat[some, hi]
        diff = b - a
        result = a + diff * gamma
        upper = gamma >= 0.5
        result[upper] = (b - diff * (1 - gamma))[upper]
        out.reshape(len(percentiles), -1)[at, some] = result
    return out


def window_cells(source, vigour, labels_path: str, k: int, window: Window):
    """One window's per-cell figures: ``(first cell row, first cell col, valid, labelled,
    mean, percentiles)``; the last two None without an index."""
    bands = vigour.bands if vigour is not None else (1,)
    image, valid = source.read(bands, window)
    labels = np.asarray(stores.open_array(labels_path, mode="r")[window.slices])
    vegetation = (labels > 0) & valid
    valid_px = by_cell(valid, k, False).sum(axis=-1, dtype=np.int64)
    labelled = by_cell(vegetation, k, False).sum(axis=-1, dtype=np.int64)
    mean = percentiles = None
    if vigour is not None:
        # The index is per pixel: computed on the vegetation pixels only (a fifth or so).
        values = vigour.values(image[:, vegetation][:, None, :])[0]
        rows, cols = np.nonzero(vegetation)
        known = np.isfinite(values)  # an undefined index (0/0) is no value
        rows, cols, values = rows[known], cols[known], values[known]
        cell = (rows // k) * valid_px.shape[1] + cols // k
        count = np.bincount(cell, minlength=valid_px.size).reshape(valid_px.shape)
        sums = np.bincount(cell, weights=values, minlength=valid_px.size).reshape(valid_px.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, sums / count, np.nan)
        index = np.full(vegetation.shape, np.nan)
        index[rows, cols] = values
        cells = by_cell(index, k, np.nan)
        del index
        percentiles = cell_percentiles(cells, count=count)
    return window.row_start // k, window.col_start // k, valid_px, labelled, mean, percentiles


def image_pass(
    source,
    vigour,
    run: Any,
    k: int,
    grid_shape: tuple[int, int],
    scheduler: Any,
    log: Callable,
    target: int = WINDOW,
) -> dict[str, np.ndarray]:
    """Per-cell ``valid``, ``labelled`` (pixels) and, with an index, ``mean`` and
    ``percentiles`` (``(3, R, C)``) over the whole image, one task per window of about
    ``target`` pixels a side."""
    shape = (source.height, source.width)
    parts = windows(shape, k, target)
    labels_path = stores.location(run / output.LABELS / "labels")
    graph = window_graph("cells", window_cells, (source, vigour, labels_path, k), parts)
    log(f"{run}: {len(parts)} window(s) over {shape[0]} x {shape[1]} px, cells of {k} px")
    out = {
        "valid": np.zeros(grid_shape, dtype=np.int64),
        "labelled": np.zeros(grid_shape, dtype=np.int64),
    }
    if vigour is not None:
        out["mean"] = np.full(grid_shape, np.nan)
        out["percentiles"] = np.full((len(PERCENTILES), *grid_shape), np.nan)
    for row, col, valid, labelled, mean, percentiles in Executor(scheduler).compute(graph):
        at = (slice(row, row + valid.shape[0]), slice(col, col + valid.shape[1]))
        out["valid"][at] = valid  # each cell in exactly one window
        out["labelled"][at] = labelled
        if mean is not None:
            out["mean"][at] = mean
            out["percentiles"][:, at[0], at[1]] = percentiles
    return out


def object_counts(run: Any, k: int, grid_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the objects whose centroid lies in it and the sum of their ``area_m2``
    (a centroid's cell: :func:`tiler.report.grid.object_cells`, as the report's density)."""
    import pyarrow.parquet as pq

    rows_n, cols_n = grid_shape
    plants = np.zeros(rows_n * cols_n, dtype=np.int64)
    area = np.zeros(rows_n * cols_n, dtype=np.float64)
    path, filesystem = stores.file_system(run / output.OBJECTS)
    with pq.ParquetFile(path, filesystem=filesystem) as table:
        columns = ["centroid_row", "centroid_col", "area_m2"]
        for batch in table.iter_batches(batch_size=BATCH, columns=columns):
            at, inside = object_cells(batch.column(0).to_numpy(), batch.column(1).to_numpy(),
                                      k, grid_shape)  # fmt: skip
            plants += np.bincount(at, minlength=len(plants))
            weights = batch.column(2).to_numpy(zero_copy_only=False)[inside]
            area += np.bincount(at, weights=weights, minlength=len(area))
    return plants.reshape(grid_shape), area.reshape(grid_shape)
