"""Atomic writes: nothing under a final name is ever half written (DESIGN.md section 4).

Every file tiler writes goes to a temporary name in the same folder (so that
the rename is one step on one file system) and is renamed to its final name
once whole: :func:`replacing`, or :func:`write_bytes` and :func:`write_text`
for data in hand. A failed write leaves the previous file, and no temporary
one. A folder (a Zarr store) is written under its temporary name by its
writer, which may resume into it, and put in place by :func:`publish_folder`.

In object storage (a ``UPath`` of :mod:`tiler.io.stores`) there are no
renames, and none are needed: an object appears whole when its one PUT ends,
so it is written under its final name.

Imports nothing of tiler but :mod:`tiler.io.stores` (which tells object
storage from a folder): every layer that writes (the caches, the journal,
the synthetic test images, the outputs) uses it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tiler.io import stores


def partial_name(path: str | os.PathLike, *, unique: bool = False) -> Path:
    """The temporary name of ``path``: ``.NAME.partial`` beside it.

    ``unique``: ``.NAME.RANDOM.partial``, for a file that several writers may
    write at once (the last rename wins, whole).
    """
    path = Path(path)
    tag = f".{uuid.uuid4().hex}" if unique else ""
    return path.with_name(f".{path.name}{tag}.partial")


@contextlib.contextmanager
def replacing(path: Any, partial: Path | None = None) -> Iterator[Path]:
    """Yield a temporary name to write; rename it to ``path`` if the block succeeds.

    ``partial``: the temporary name (default :func:`partial_name`); it is
    removed whatever happens, so a failed write leaves nothing of its own.
    In object storage the temporary file is local, and uploaded in one PUT.
    """
    if stores.is_remote(path):
        with tempfile.TemporaryDirectory(prefix="tiler-upload-") as folder:
            local = Path(folder) / path.name
            yield local
            path.fs.put_file(str(local), path.path)
        return
    path = Path(path)
    partial = partial_name(path) if partial is None else partial
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_bytes(path: Any, data: bytes, *, unique: bool = False) -> Any:
    """Write ``data`` to ``path`` atomically (``unique``: see :func:`partial_name`)."""
    if stores.is_remote(path):
        path.write_bytes(data)
        return path
    with replacing(path, partial_name(path, unique=unique)) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_text(path: Any, text: str) -> Any:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def publish_folder(partial: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the finished folder ``partial`` in place as ``final``, replacing any before it."""
    final = Path(final)
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif final.exists() or final.is_symlink():
        final.unlink()
    os.replace(partial, final)
    return final
