"""The quick identity of an input's bytes, one rule for files and objects in storage.

The SHA-256 of the size and of the first and last MiB: two small reads however
large the input, so a moved or changed input is told from the run's without
reading gigabytes. The same bytes get the same fingerprint on disk
(:func:`tiler.io.input_identity.fingerprint`) and in a bucket
(:func:`tiler.io.remote.identity`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

CHUNK = 1 << 20  # the bytes read at each end


def digest(size: int, read: Callable[[int, int], bytes], chunk: int = CHUNK) -> str:
    """The fingerprint of ``size`` bytes, ``read(start, stop)`` giving a range of them."""
    sha = hashlib.sha256(str(size).encode())
    sha.update(read(0, min(chunk, size)))
    if size > chunk:
        sha.update(read(max(size - chunk, chunk), size))
    return sha.hexdigest()
