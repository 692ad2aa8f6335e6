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
* ``none`` – nothing is kept: each pass computes the values again. For images
  whose values fit neither (on this machine, recomputing beats writing them to
  disk files: 9 bytes per pixel of writes and reads, throttled by writeback).

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

WindowRC = tuple[tuple[int, int], tuple[int, int]]
MEMORY = "memory:"
NONE = "none"

_memory: dict[str, dict[WindowRC, tuple[np.ndarray, np.ndarray]]] = {}
_lock = threading.Lock()


def memory_cache() -> str:
    """A new, empty in-process cache."""
    name = f"{MEMORY}{uuid.uuid4().hex}"
    with _lock:
        _memory[name] = {}
    return name


def _paths(directory: str, window: WindowRC) -> tuple[Path, Path]:
    (r0, r1), (c0, c1) = window
    stem = Path(directory) / f"{r0}-{r1}-{c0}-{c1}"
    return stem.with_suffix(".values.npy"), stem.with_suffix(".valid.npy")


def prepare(cache: str) -> None:
    """Make a file cache's directory; the other kinds need nothing."""
    if cache != NONE and not cache.startswith(MEMORY):
        Path(cache).mkdir(parents=True, exist_ok=True)


def put(cache: str, window: WindowRC, values: np.ndarray, valid: np.ndarray) -> None:
    """Keep a tile's values and valid mask under ``window``."""
    if cache == NONE:
        return
    if cache.startswith(MEMORY):
        with _lock:
            store = _memory.get(cache)
            if store is not None:  # dropped meanwhile: nothing to keep
                store[window] = (values, valid)
        return
    for path, array in zip(_paths(cache, window), (values, valid), strict=True):
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            np.save(f, array)  # raw .npy: written and read at memory speed
        os.replace(partial, path)


def get(cache: str, window: WindowRC) -> tuple[np.ndarray, np.ndarray] | None:
    """The values and valid mask kept under ``window``, or ``None``."""
    if cache == NONE:
        return None
    if cache.startswith(MEMORY):
        with _lock:
            return _memory.get(cache, {}).get(window)
    values_path, valid_path = _paths(cache, window)
    try:
        return np.load(values_path), np.load(valid_path)
    except FileNotFoundError:
        return None


def drop(cache: str) -> None:
    """Forget a cache and free what it holds."""
    if cache == NONE:
        return
    if cache.startswith(MEMORY):
        with _lock:
            _memory.pop(cache, None)
    else:
        shutil.rmtree(cache, ignore_errors=True)
