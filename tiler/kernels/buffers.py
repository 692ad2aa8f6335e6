"""Per-thread scratch arrays, reused from tile to tile.

Fresh large allocations are expensive on virtual machines (every page of a
new array is faulted in; see PERF-NOTES): an intermediate that dies within a
tile (the index before its Gaussian, the Gaussian's row pass) reuses one
buffer per thread instead. Never return a scratch array to a caller that
keeps it.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised array for ``slot``, the same memory on every call from this thread."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    backing = buffers.get(slot)
    if backing is None or backing.nbytes < size:
        backing = buffers[slot] = np.empty(size, dtype=np.uint8)
    return backing[:size].view(dtype).reshape(shape)
