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
* ``codes:<directory>`` – for images whose values fit neither: the range
  pass keeps each tile's decoded input pixels (the bands and the valid mask
  as read, 3 bytes a pixel for RGB: :func:`put_pixels`) in this process's
  memory, up to a budget, so the histogram pass computes those tiles'
  values again without decoding the input again; the other tiles are read
  again. The histogram pass gives each pixel its bin code
  (:func:`tiler.kernels.binning.histogram_codes`, 2 bytes per pixel, about
  0.5 once LZ4-compressed), kept in files, and the mask pass thresholds the
  codes instead of computing the values a third time. The pixels are
  dropped once the statistics are found (:func:`drop_pixels`);
* ``codes+pixels:<directory>`` – the same, with the pixels beyond the memory
  budget kept in files: for an input in object storage, where reading again
  means downloading again;
* ``none`` – nothing is kept: each pass computes the values again.

Writing the float64 values themselves to disk files does not pay on this
machine (9 bytes per pixel of writes and reads, throttled by writeback:
1.07 gigapixels took 72 s against 59 s recomputing); the codes are 18 times
smaller. Nor, for a local file, do the pixels (3 bytes a pixel): on the 1 GP
deflate field, writing them (3.7 GB) cost 19 s more system time than the
second decode they saved (11 s of user time), as this machine's virtual
disk and first-touched pages are slow (a first 778 MB of writes: 3.7 s of
system time; the same again once the pages were touched: 0.16 s). Pixels
are kept uncompressed: imagery barely compresses with a fast codec (LZ4
with bit shuffle: 0.93-0.98 of the bytes on the NEON and NAIP tiles of
shared/data, 0.89 on the synthetic field).

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
CODES_PIXEL_FILES = "codes+pixels:"  # a codes cache whose pixels beyond memory go to files
NONE = "none"

# LZ4 at level 1 with byte shuffle: 4x smaller codes for 8 ms per 2048 x 2048
# tile (zstd: 5x for 16 ms).
_CODEC = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE)

# Bytes of decoded input pixels a ``codes:`` cache keeps in memory, beyond
# which they go to its directory (about 20 tiles of 2048² RGB).
PIXELS_MEMORY = 256 << 20

_memory: dict[str, dict[Window, tuple[np.ndarray, np.ndarray]]] = {}
_lock = threading.Lock()


class _Pixels:
    """Decoded input pixels kept in this process's memory, up to ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget, self.size = budget, 0
        self.tiles: dict[Window, tuple[np.ndarray, np.ndarray]] = {}


# The pixel stores of the codes caches made in this process. A worker
# process has none of them: its pixels go to the cache's directory.
_pixels: dict[str, _Pixels] = {}


def memory_cache() -> str:
    """A new, empty in-process cache."""
    name = f"{MEMORY}{uuid.uuid4().hex}"
    with _lock:
        _memory[name] = {}
    return name


def codes_cache(directory: str | os.PathLike, memory: int = 0, files: bool = False) -> str:
    """A cache that keeps bin codes (not values) in files under ``directory``.

    It also keeps the decoded input pixels between the range and histogram
    passes: ``memory`` bytes of them in this process's memory (for tasks
    that run in it), and with ``files`` the rest in files there; without,
    the rest are read again.
    """
    name = f"{CODES_PIXEL_FILES if files else CODES}{os.fspath(directory)}"
    if memory > 0:
        with _lock:
            _pixels[name] = _Pixels(memory)
    return name


def keeps_values(cache: str) -> bool:
    """Whether :func:`put` keeps values in this cache (else each pass recomputes them)."""
    return cache != NONE and not keeps_codes(cache)


def keeps_codes(cache: str) -> bool:
    """Whether the histogram pass should keep bin codes in this cache."""
    return cache.startswith((CODES, CODES_PIXEL_FILES))


def _directory(cache: str) -> str | None:
    if cache == NONE or cache.startswith(MEMORY):
        return None
    return cache.removeprefix(CODES).removeprefix(CODES_PIXEL_FILES)


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


def put_pixels(cache: str, window: Window, image: np.ndarray, valid: np.ndarray) -> None:
    """Keep the input pixels of ``window`` (if this cache keeps them), in memory or a file."""
    if not keeps_codes(cache):
        return
    with _lock:
        store = _pixels.get(cache)
        nbytes = image.nbytes + valid.nbytes
        if store is not None and store.size + nbytes <= store.budget:
            store.tiles[window] = (image, valid)
            store.size += nbytes
            return
    if not cache.startswith(CODES_PIXEL_FILES):
        return
    path = _stem(_directory(cache), window).with_suffix(".pixels")
    with atomic.replacing(path, atomic.partial_name(path, unique=True)) as partial:
        with open(partial, "wb") as f:
            np.save(f, image)  # raw: see the module's note
            np.save(f, np.frombuffer(_CODEC.encode(np.ascontiguousarray(valid)), np.uint8))


def get_pixels(cache: str, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
    """The input pixels kept for ``window``: ``(image, valid)``, or ``None``."""
    if not keeps_codes(cache):
        return None
    with _lock:
        store = _pixels.get(cache)
        if store is not None and window in store.tiles:
            return store.tiles[window]
    try:
        with open(_stem(_directory(cache), window).with_suffix(".pixels"), "rb") as f:
            image, packed = np.load(f), np.load(f)
    except FileNotFoundError:
        return None
    valid = np.frombuffer(_CODEC.decode(packed.tobytes()), dtype=bool)
    return image, valid.reshape(image.shape[1:])


def drop_pixels(cache: str) -> None:
    """Free the input pixels of a cache (the statistics that needed them are found)."""
    if not keeps_codes(cache):
        return
    with _lock:
        store = _pixels.get(cache)
        if store is not None:
            store.tiles.clear()
            store.size = 0
    for path in Path(_directory(cache)).glob("*.pixels"):  # (none unless CODES_PIXEL_FILES)
        path.unlink(missing_ok=True)


def drop(cache: str) -> None:
    """Forget a cache and free what it holds."""
    with _lock:
        _pixels.pop(cache, None)
        _memory.pop(cache, None)
    if cache.startswith(MEMORY):
        return
    directory = _directory(cache)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
