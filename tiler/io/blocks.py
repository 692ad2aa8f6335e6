"""Decoded blocks of the input, shared by the threads of a process: each block decoded once.

A tile is read with its halo, and the halo lies in the neighbours' blocks:
a 2048² tile grown by 7 pixels over 512² blocks touches 36 blocks, its own
16 and a ring of 20. GDAL 3.10 decodes a read that spans several blocks
straight into the caller's buffer, past its block cache, so every tile
decoded its ring again however large ``GDAL_CACHEMAX`` was (measured on the
1 GP deflate field: 56 ms for the 2062² window, the same on a repeat, against
27 ms for the 2048² core alone). GDAL's cache also belongs to one dataset
handle, and tiler keeps one handle per thread.

This module keeps the decoded blocks itself, for every thread of the
process: a window is read as runs of missing blocks, a block row at a
time, each run decoded by one read; the blocks are kept in a
least-recently-used cache of at most ``BUDGET`` bytes and copied into the
window from there. A block is thus decoded about once per pass while the
tiles that share it run close together in time (:mod:`tiler.taskgraph` orders
the tiles for it). The pixels are GDAL's either way: only the number of
decodes changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

from tiler.tiling import Window

# Bytes of decoded blocks a process keeps (its threads share them). A tile
# row of 2048² tiles over 512² blocks needs about one block row of the image
# beyond the tiles in flight: 64 MiB at 32768 px wide (RGB + valid mask),
# within budget with the tile order of tiler.taskgraph at any width.
BUDGET = 192 << 20

# Blocks at least this tall are kept; a striped file (blocks as wide as the
# image, often one row tall) is read in one piece, as tiles follow its strips.
MIN_BLOCK_ROWS = 16

Pixels = tuple[np.ndarray, np.ndarray]  # (bands x rows x cols, valid rows x cols)
Decode = Callable[[Window], Pixels]


class BlockCache:
    """Decoded blocks by ``(file key, block row, block column)``, least recently used first out."""

    def __init__(self, budget: int = BUDGET):
        self.budget = budget
        self.size = 0
        self.decoded = 0  # blocks decoded (a count for tests and benchmarks)
        self._blocks: OrderedDict[Hashable, Pixels] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Pixels | None:
        with self._lock:
            found = self._blocks.get(key)
            if found is not None:
                self._blocks.move_to_end(key)
            return found

    def put(self, key: Hashable, block: Pixels) -> None:
        nbytes = block[0].nbytes + block[1].nbytes
        with self._lock:
            self.decoded += 1
            if nbytes > self.budget or key in self._blocks:
                return
            self._blocks[key] = block
            self.size += nbytes
            while self.size > self.budget:
                _, (image, valid) = self._blocks.popitem(last=False)
                self.size -= image.nbytes + valid.nbytes

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self.size = 0


CACHE = BlockCache()


def read_window(
    key: Hashable,
    window: Window,
    block_shape: tuple[int, int],
    image_shape: tuple[int, int],
    decode: Decode,
    cache: BlockCache | None = None,
) -> Pixels:
    """The pixels of ``window``, from cached blocks and, for the rest, ``decode``.

    ``key`` names the file and what is read of it (bands, mask rule):
    blocks are shared between reads of equal keys. ``decode(region)``
    reads a block-aligned region (whole blocks, clipped to the image).
    ``cache``: this process's :data:`CACHE` unless given.
    """
    cache = CACHE if cache is None else cache
    bh, bw = block_shape
    height, width = image_shape
    if bw >= width or bh < MIN_BLOCK_ROWS:  # strips: tiler.io.layout fits the tiles to them
        return decode(window)
    image: np.ndarray | None = None
    valid = np.empty(window.shape, dtype=bool)
    for row in range(window.row_start // bh, (window.row_stop - 1) // bh + 1):
        cols = range(window.col_start // bw, (window.col_stop - 1) // bw + 1)
        blocks = {c: cache.get((key, row, c)) for c in cols}
        for first, last in _runs([c for c in cols if blocks[c] is None]):
            rows = (row * bh, min((row + 1) * bh, height))
            region = Window.of(rows, (first * bw, min((last + 1) * bw, width)))
            pixels, mask = decode(region)
            for c in range(first, last + 1):
                part = np.s_[:, c * bw - region.col_start : (c + 1) * bw - region.col_start]
                block = (pixels[(slice(None), *part)].copy(), mask[part].copy())
                cache.put((key, row, c), block)
                blocks[c] = block
        for c in cols:
            pixels, mask = blocks[c]  # type: ignore[misc]
            if image is None:
                image = np.empty((pixels.shape[0], *window.shape), dtype=pixels.dtype)
            block = Window(row * bh, row * bh + mask.shape[0], c * bw, c * bw + mask.shape[1])
            inner = block.intersection(window)
            src, dst = inner.within(block), inner.within(window)
            image[(slice(None), *dst)] = pixels[(slice(None), *src)]
            valid[dst] = mask[src]
    assert image is not None, "a window holds at least one pixel"
    return image, valid


def _runs(cols: list[int]) -> list[tuple[int, int]]:
    """Runs of consecutive numbers in the sorted ``cols``, as ``(first, last)``."""
    runs: list[tuple[int, int]] = []
    for c in cols:
        if runs and runs[-1][1] == c - 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    return runs
