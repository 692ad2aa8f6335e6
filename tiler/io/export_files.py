"""Export files: an output path checked before anything is written, and written atomically.

Every export writes under a temporary name beside its target (same suffix:
drivers go by it) and renames it when whole, so a file under the final name
is always complete; a failed export leaves the previous file, and no
temporary one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from tiler.errors import OutputError
from tiler.io import atomic, stores
from tiler.io.finished import FinishedRun

# Files SQLite (GeoPackage) writes beside a database while it is open.
_SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


def target(path: str | os.PathLike, suffixes, what: str, run: FinishedRun) -> Path:
    """``path`` checked as an output file: its suffix, its folder, and not one of the run's own."""
    if isinstance(path, str) and "://" in path:
        raise OutputError(
            f"{path}: exports are written to local files; write it here and copy it "
            "(aws s3 cp, gcloud storage cp, azcopy)"
        )
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: {what} must end in {_one_of(suffixes)}")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: its folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"{path}: its folder {path.parent} is not writable")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    resolved = path.resolve()
    own = [] if stores.is_remote(run.dst) else [p.resolve() for p in run.own_paths]
    if any(resolved == p or p in resolved.parents for p in own):  # a bucket's are not local
        raise OutputError(f"{path}: is part of the run in {run.dst}; choose another name")
    return path


def _one_of(suffixes) -> str:
    """``.a``, ``.a or .b``, ``.a, .b or .c``."""
    *rest, last = suffixes
    return f"{', '.join(rest)} or {last}" if rest else last


def partial_name(path: Path, tag: str = "part") -> Path:
    """A temporary name beside ``path`` with the same suffix (drivers go by the suffix)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.{tag}{path.suffix}")


@contextlib.contextmanager
def replacing(path: Path, companions: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary name to write; rename it to ``path`` if the block succeeds.

    ``companions``: suffixes of the files a format writes beside the main one
    (a Shapefile's ``.dbf``, ``.shx``, ...): each is renamed with it, and
    those of the previous ``path`` that the new one lacks are removed.
    """
    partial = partial_name(path)
    side = [s for s in companions if s.lower() != path.suffix.lower()]
    try:
        with atomic.replacing(path, partial):
            yield partial
            for suffix in side:
                written = partial.with_suffix(suffix)
                if written.exists():
                    os.replace(written, path.with_suffix(suffix))
                else:
                    path.with_suffix(suffix).unlink(missing_ok=True)
    finally:
        leftovers = [partial, *(Path(f"{partial}{s}") for s in _SQLITE_SIDECARS)]
        for leftover in leftovers + [partial.with_suffix(s) for s in side]:
            leftover.unlink(missing_ok=True)
