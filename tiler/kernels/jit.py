"""The decorator of tiler's numba kernels: compiled once per machine, loaded from disk after.

numba keeps a compiled kernel next to its module (``__pycache__``) or, where
that folder is read-only (a system-wide install, a container image), in
``NUMBA_CACHE_DIR`` or the user's cache folder (``~/.cache/numba``), and
later processes load it instead of compiling it again: compiling the default
pipeline's kernels costs a run about as much as the 1 MP run itself
(benchmarks/results/fixed-costs.md). Where no folder at all is writable,
numba refuses caching when the module is imported; the kernels are then
compiled in each process instead of tiler failing to start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., object])


def kernel(function: F) -> F:
    """``numba.njit(cache=True, nogil=True)``; without ``cache`` where nothing can hold it."""
    try:
        return cast(F, numba.njit(cache=True, nogil=True)(function))
    except RuntimeError:  # "cannot cache function ...: no locator available": nowhere to write
        return cast(F, numba.njit(nogil=True)(function))
