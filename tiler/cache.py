"""Where the Otsu passes keep each tile's preprocessed values between passes.

The global Otsu threshold needs two looks at the preprocessed values (their
range, then their histogram over it) before the mask can be made. Keeping
the values of each tile from the first look is much cheaper than decoding and
filtering the raster three times. A cache is named by a string:

* ``memory:<token>`` – the arrays themselves, kept in this process: no copy
  at all, for runs whose workers are threads of this process and whose values
  fit the memory budget;
* a directory – raw ``.npy`` files on tmpfs, for worker processes on this
  machine;
* ``codes:<directory>`` – for images whose values fit neither: the values
  are computed again for the histogram, which also gives each pixel its bin
  code (:func:`tiler.kernels.binning.histogram_codes`, 2 bytes per pixel,
  about 0.5 once LZ4-compressed); the codes are kept in files and the mask
  pass thresholds them instead of computing the values a third time;
* ``none`` – nothing is kept: each pass computes the values again.

Writing the float64 values themselves to disk files does not pay on this
machine (9 bytes per pixel of writes and reads, throttled by writeback:
1.07 gigapixels took 72 s against 59 s recomputing); the codes are 18 times
smaller.

A miss is never an error: the caller computes the values again, so the cache
changes only the speed, never a result.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import numpy as np
from numcodecs import Blosc

from tiler.io import atomic
from tiler.tiling import Window

MEMORY = "memory:"
CODES = "codes:"
NONE = "none"

# LZ4 at level 1 with byte shuffle: 4x smaller codes for 8 ms per 2048 x 2048
# tile (zstd: 5x for 16 ms).
_CODEC = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE)

_memory: dict[str, dict[Window, tuple[np.ndarray, np.ndarray]]] = {}
_lock = threading.Lock()


def memory_cache() -> str:
    """A new, empty in-process cache."""
    name = f"{MEMORY}{uuid.uuid4().hex}"
    with _lock:
        _memory[name] = {}
    return name


def codes_cache(directory: str | os.PathLike) -> str:
    """A cache that keeps bin codes (not values) in files under ``directory``."""
    return f"{CODES}{os.fspath(directory)}"


def keeps_values(cache: str) -> bool:
    """Whether :func:`put` keeps values in this cache (else each pass recomputes them)."""
    return cache != NONE and not cache.startswith(CODES)


def keeps_codes(cache: str) -> bool:
    """Whether the histogram pass should keep bin codes in this cache."""
    return cache.startswith(CODES)


def _directory(cache: str) -> str | None:
    if cache == NONE or cache.startswith(MEMORY):
        return None
    return cache.removeprefix(CODES)


def _stem(directory: str, window: Window) -> Path:
    w = window
    return Path(directory) / f"{w.row_start}-{w.row_stop}-{w.col_start}-{w.col_stop}"


def _paths(directory: str, window: Window) -> tuple[Path, Path]:
    stem = _stem(directory, window)
    return stem.with_suffix(".values.npy"), stem.with_suffix(".valid.npy")


def prepare(cache: str) -> None:
    """Make a file cache's directory; the other kinds need nothing."""
    directory = _directory(cache)
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)


def put(cache: str, window: Window, values: np.ndarray, valid: np.ndarray) -> None:
    """Keep a tile's values and valid mask under ``window`` (if this cache keeps values)."""
    if not keeps_values(cache):
        return
    if cache.startswith(MEMORY):
        with _lock:
            store = _memory.get(cache)
            if store is not None:  # dropped meanwhile: nothing to keep
                store[window] = (values, valid)
        return
    for path, array in zip(_paths(cache, window), (values, valid), strict=True):
        # A temporary name of this writer's own: tiles smaller than the halo share windows.
        with atomic.replacing(path, atomic.partial_name(path, unique=True)) as partial:
            with open(partial, "wb") as f:
                np.save(f, array)  # raw .npy: written and read at memory speed


def get(cache: str, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
    """The values and valid mask kept under ``window``, or ``None``."""
    if not keeps_values(cache):
        return None
    if cache.startswith(MEMORY):
        with _lock:
            return _memory.get(cache, {}).get(window)
    values_path, valid_path = _paths(cache, window)
    try:
        return np.load(values_path), np.load(valid_path)
    except FileNotFoundError:
        return None


def put_codes(cache: str, window: Window, codes: np.ndarray) -> None:
    """Keep a tile's bin codes (uint16) under ``window``, compressed."""
    if not keeps_codes(cache):
        return
    path = _stem(_directory(cache), window).with_suffix(".codes")
    codes = np.ascontiguousarray(codes, dtype=np.uint16)
    atomic.write_bytes(path, _CODEC.encode(codes), unique=True)


def get_codes(cache: str, window: Window) -> np.ndarray | None:
    """The bin codes kept under ``window``, or ``None``."""
    if not keeps_codes(cache):
        return None
    try:
        data = _stem(_directory(cache), window).with_suffix(".codes").read_bytes()
    except FileNotFoundError:
        return None
    return np.frombuffer(_CODEC.decode(data), dtype=np.uint16).reshape(window.shape)


def drop(cache: str) -> None:
    """Forget a cache and free what it holds."""
    if cache.startswith(MEMORY):
        with _lock:
            _memory.pop(cache, None)
        return
    directory = _directory(cache)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
