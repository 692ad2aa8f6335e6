"""Where tiler writes: what it may replace there, and what it must refuse.

One rule for every output (a run's DST, a report folder, an export file),
decided by :func:`claim` before anything is written:

* a target that does not exist, or an empty folder, is free;
* a target holding tiler's own outputs is replaced only with ``--overwrite``,
  and refused without it;
* a folder holding anything else is refused, ``--overwrite`` or not, naming
  what it found: tiler never deletes what it did not write.

A folder's outputs are tiler's when a marker says so (``run.json`` or a
journal for a run; the report's own files for a report): a ``labels.zarr``
alone, in a folder without them, is someone else's. The temporary names of
an interrupted write are tiler's wherever they are, and removed without asking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tiler.errors import OutputError
from tiler.io import stores

# At most this many of the entries tiler did not write are named in a refusal.
NAMED = 5


@dataclass(frozen=True)
class Outputs:
    """The outputs tiler writes in one kind of folder."""

    #: what the folder is, in the refusal's advice ("choose another DST")
    label: str
    #: final names: replaced only with ``--overwrite``
    names: frozenset[str]
    #: paths under the folder whose presence says its outputs are tiler's
    markers: tuple[str, ...]
    #: temporary names of an interrupted write: tiler's, removed without asking
    leftovers: frozenset[str] = frozenset()
    #: sub-folders that are tiler's when they hold only their own outputs (DST/report)
    folders: Mapping[str, Outputs] = field(default_factory=dict)

    def marked(self, folder: Path) -> bool:
        return any((folder / marker).exists() for marker in self.markers)

    def foreign(self, folder: Path, entries: Iterable[Path]) -> list[Path]:
        """The entries of ``folder`` that tiler did not write."""
        marked = self.marked(folder)

        def ours(entry: Path) -> bool:
            if entry.name in self.leftovers:
                return True
            if not marked:
                return False
            if entry.name in self.folders:
                inner = self.folders[entry.name]
                return (
                    entry.is_dir()
                    and inner.marked(entry)
                    and not inner.foreign(entry, entry.iterdir())
                )
            return entry.name in self.names

        return [entry for entry in entries if not ours(entry)]


def _listing(entries: list[Path]) -> str:
    names = sorted(e.name + ("/" if e.is_dir() else "") for e in entries)
    more = ", ..." if len(names) > NAMED else ""
    return ", ".join(names[:NAMED]) + more


def claim(
    target: Path,
    outputs: Outputs | None,
    *,
    overwrite: bool,
    keep: Iterable[str] = (),
    holds: str = "a tiler output",
) -> list[Path]:
    """Check that tiler may write ``target``; return what of its own is there, to replace.

    ``outputs`` describes the folder ``target`` is; ``None``: ``target`` is a
    single file. Entries named in ``keep`` (a lock file, what a resume
    continues) are left out of both the check and the answer. Raises an
    :class:`OutputError` naming ``target`` when it holds anything tiler did
    not write, or its own outputs and not ``overwrite``; then nothing is
    touched. The caller removes or replaces what is returned.
    """
    target = stores.folder(target)
    if not target.exists() and not target.is_symlink():
        return []
    if outputs is None:
        if target.is_dir():
            raise OutputError(f"{target}: is a directory")
        if not overwrite:
            raise OutputError(f"{target}: exists; pass --overwrite to replace it")
        return [target]
    if not target.is_dir():
        raise OutputError(f"{target}: exists and is not a directory")
    kept = set(keep)
    entries = [entry for entry in target.iterdir() if entry.name not in kept]
    if foreign := outputs.foreign(target, entries):
        raise OutputError(
            f"{target}: holds files tiler did not write ({_listing(foreign)}); tiler replaces "
            f"only its own outputs: choose another {outputs.label} or remove them"
        )
    if not overwrite and any(entry.name not in outputs.leftovers for entry in entries):
        raise OutputError(f"{target}: holds {holds}; pass --overwrite to replace it")
    return entries
