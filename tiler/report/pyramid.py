"""A multiscale pyramid of the image and the labels, written with the report.

``REPORT/pyramid.zarr`` is an OME-Zarr 0.5 image (NGFF, on Zarr v3), which
napari (napari-ome-zarr) and tiler both read. It goes with the report, not
into the run, so that a report never needs write access to the run:

* ``pyramid/0``, ``pyramid/1``, … – the image, ``(c, y, x)``: the display
  bands (red, green, blue; or the first band) and an alpha channel. Level 0
  is the mean of each 4 x 4 block's valid pixels (alpha: the data type's
  maximum where a block holds any valid pixel, 0 elsewhere); each further
  level halves the previous one the same way (as GDAL's AVERAGE overviews).
* ``pyramid/labels/objects/0``, … – the labels, nearest neighbour: level
  ``k`` is ``labels[::f, ::f]`` with ``f = 4 * 2**k`` (the first pixel of
  each block), so an object keeps its number at every level.

Full resolution is the run's ``labels.zarr/labels`` and the input GeoTIFF; the
pyramid stops once the image fits in 256 pixels. Level 0 is made in one
pass over the image in windows of ``4 * 256`` pixels (one level-0 chunk
each, so writes are chunk-aligned); the coarser levels are made from it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tiler.io import atomic, stores
from tiler.tiling import TileGrid, Window

FACTOR = 4  # level 0 against full resolution
CHUNK = 256  # level chunks, and the smallest level's largest side
WINDOW = FACTOR * CHUNK
GROUP = "pyramid.zarr"


def level_shapes(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The ``(rows, cols)`` of each level: ``ceil(shape / 4)``, halved until at most 256."""
    h, w = (math.ceil(n / FACTOR) for n in shape)
    levels = [(h, w)]
    while max(h, w) > CHUNK:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        levels.append((h, w))
    return levels


def windows(shape: tuple[int, int]) -> list[Window]:
    """The pass's windows: ``WINDOW``-pixel squares, aligned to level 0's chunks."""
    return [window for *_, window in TileGrid(shape, (WINDOW, WINDOW))]


def block_mean(image: np.ndarray, valid: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each ``f x f`` block's valid pixels (0 where none) and which blocks had any.

    ``image`` is ``(c, h, w)``; partial blocks at the right and bottom edges
    average the pixels they have.
    """
    c, h, w = image.shape
    bh, bw = math.ceil(h / f), math.ceil(w / f)
    padded = np.zeros((c, bh * f, bw * f), dtype=np.float64)
    weight = np.zeros((bh * f, bw * f), dtype=np.float64)
    padded[:, :h, :w] = np.where(valid, image, 0)
    weight[:h, :w] = valid
    sums = padded.reshape(c, bh, f, bw, f).sum(axis=(2, 4))
    counts = weight.reshape(bh, f, bw, f).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return means, counts > 0


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Means back in the image's data type (rounded for integers)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def alpha_value(dtype: np.dtype) -> float:
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "iu" else 1.0


def create(folder: Any, shape, bands: int, image_dtype, label_dtype, scale) -> Any:
    """Create the (partial) pyramid group in ``folder`` with empty levels; return its path.

    ``scale`` is the input's pixel size ``(row, col)`` in map units, so the
    multiscales carry physical scales. In object storage (``folder`` a
    ``UPath``, :mod:`tiler.io.stores`), which has no renames, the pyramid is
    made under its final name: the report's page, written last, says it is whole.
    """
    folder = stores.folder(folder)
    path = folder / (GROUP if stores.is_remote(folder) else f".{GROUP}.partial")
    stores.remove(path)
    root = stores.open_group(stores.location(path), mode="w", zarr_format=3)
    objects = root.require_group("labels").require_group("objects")
    for k, (h, w) in enumerate(level_shapes(shape)):
        root.create_array(
            str(k),
            shape=(bands + 1, h, w),
            chunks=(bands + 1, CHUNK, CHUNK),
            dtype=image_dtype,
            fill_value=0,
            dimension_names=("c", "y", "x"),
        )
        objects.create_array(
            str(k),
            shape=(h, w),
            chunks=(CHUNK, CHUNK),
            dtype=label_dtype,
            fill_value=0,
            dimension_names=("y", "x"),
        )
    n = len(level_shapes(shape))
    top = alpha_value(image_dtype)
    colours = ["FF0000", "00FF00", "0000FF"] if bands == 3 else ["FFFFFF"]
    names = ["red", "green", "blue"] if bands == 3 else ["gray"]
    channels = [
        {"label": name, "color": colour, "active": True,
         "window": {"start": 0, "end": top, "min": 0, "max": top}}
        for name, colour in zip([*names, "alpha"], [*colours, "FFFFFF"], strict=True)
    ]  # fmt: skip
    channels[-1]["active"] = False
    root.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [_multiscale("image", n, scale, True)],
        "omero": {"channels": channels, "rdefs": {"model": "color"}},
    }
    root["labels"].attrs["ome"] = {"version": "0.5", "labels": ["objects"]}
    objects.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [_multiscale("objects", n, scale, False)],
        "image-label": {"version": "0.5", "source": {"image": "../../"}},
    }
    return path


def _multiscale(name: str, levels: int, scale, channels: bool) -> dict:
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    if channels:
        axes.insert(0, {"name": "c", "type": "channel"})
    datasets = []
    for k in range(levels):
        f = FACTOR * 2**k
        s = [abs(scale[0]) * f, abs(scale[1]) * f]
        t = [abs(scale[0]) * (f - 1) / 2, abs(scale[1]) * (f - 1) / 2]
        if channels:
            s, t = [1.0, *s], [0.0, *t]
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": s},
                    {"type": "translation", "translation": t},
                ],
            }
        )
    return {"name": name, "axes": axes, "datasets": datasets}


def write_level0(
    path: str, window: Window, image: np.ndarray, valid: np.ndarray, labels: np.ndarray
) -> None:
    """Write one window's level-0 block (image means with alpha, and decimated labels).

    ``path``: the pyramid's path or URL (:func:`tiler.io.stores.location`).
    """
    r0, c0 = window.origin
    means, any_valid = block_mean(image, valid, FACTOR)
    root = stores.open_group(path, mode="r+")
    level = root["0"]
    dtype = level.dtype
    block = np.empty((means.shape[0] + 1, *means.shape[1:]), dtype=dtype)
    block[:-1] = to_dtype(means, dtype)
    block[-1] = np.where(any_valid, alpha_value(dtype), 0).astype(dtype)
    rows, cols = r0 // FACTOR, c0 // FACTOR
    level[:, rows : rows + block.shape[1], cols : cols + block.shape[2]] = block
    decimated = labels[::FACTOR, ::FACTOR]
    root["labels/objects/0"][rows : rows + decimated.shape[0], cols : cols + decimated.shape[1]] = (
        decimated
    )


def finish(path: Any, threads: int | None = None) -> Any:
    """Make the coarser levels from level 0, then rename the pyramid to its final name.

    Each coarser chunk is made from the 2 x 2 chunks above it, in a thread
    pool: no level is ever read whole. In object storage it has its final name already.
    """
    root = stores.open_group(stores.location(path), mode="r+")
    k = 1
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        while str(k) in root:
            h, w = root[str(k)].shape[1:]
            blocks = [(r, c) for r in range(0, h, CHUNK) for c in range(0, w, CHUNK)]
            list(pool.map(lambda rc, k=k: _coarser_chunk(root, k, *rc), blocks))
            k += 1
    if stores.is_remote(path):
        return path
    return atomic.publish_folder(path, path.parent / GROUP)


def _coarser_chunk(root, k: int, r: int, c: int) -> None:
    """Chunk ``(r, c)`` of level ``k`` from level ``k - 1``: means with alpha, and labels."""
    values = root[str(k - 1)][:, 2 * r : 2 * (r + CHUNK), 2 * c : 2 * (c + CHUNK)]
    dtype = values.dtype
    image, alpha = values[:-1].astype(np.float64), values[-1] > 0
    means, any_valid = block_mean(image, alpha, 2)
    block = np.empty((values.shape[0], *means.shape[1:]), dtype=dtype)
    block[:-1] = to_dtype(means, dtype)
    block[-1] = np.where(any_valid, alpha_value(dtype), 0).astype(dtype)
    root[str(k)][:, r : r + block.shape[1], c : c + block.shape[2]] = block
    objects = root[f"labels/objects/{k - 1}"][
        2 * r : 2 * (r + CHUNK) : 2, 2 * c : 2 * (c + CHUNK) : 2
    ]
    root[f"labels/objects/{k}"][r : r + objects.shape[0], c : c + objects.shape[1]] = objects


def read_level(path: Any, max_side: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The finest level of the pyramid at ``path`` (a path, or a URL in object storage)
    whose largest side is at most ``max_side`` (else the coarsest): ``(factor, image
    (c, h, w) with alpha last, labels (h, w))``."""
    root = stores.open_group(stores.location(path), mode="r")
    n = len([key for key in root.array_keys() if key.isdigit()])
    k = next((k for k in range(n) if max(root[str(k)].shape[1:]) <= max_side), n - 1)
    return FACTOR * 2**k, root[str(k)][...], root[f"labels/objects/{k}"][...]
