"""What an unfinished run has done, so that ``tiler run --resume`` redoes only the rest.

A run is a fixed sequence of passes (the same input, pipeline and tiling give
the same passes), and a pass is one task per tile whose result the driver
receives. The journal, in DST's work folder, keeps:

* ``attempt.json`` – what the run is of (input, pipeline, tiling, tiler's
  version) and how many attempts there have been; ``--resume`` refuses to
  continue a different run and says what changed;
* one append-only log per pass (``003-label.log``): a record per finished
  tile, ``(index, length, crc32)`` then the pickled result, appended and
  flushed as each result arrives. A record cut short by a kill fails its
  length or checksum and is dropped with everything after it, so the tile is
  simply computed again.

Tiles write their chunks (stage masks, final labels) before returning, with
atomic renames (zarr's LocalStore), so a tile logged as done has its chunks
on disk; a tile killed mid-way is recomputed and its chunks rewritten with
the same bytes.

The logs are pickles written by tiler into its own work folder; like the
Zarr stores beside them, they are trusted as much as DST itself.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiler.errors import OutputError
from tiler.io import atomic

IDENTITY = "attempt.json"
CACHES = "caches"
_HEADER = struct.Struct("<IQI")  # tile index, payload length, crc32 of the payload


@dataclass
class PassLog:
    """The finished tiles of one pass: their results, and the file that records new ones."""

    path: Path | None
    done: dict[int, Any] = field(default_factory=dict)
    reused: int = 0

    def record(self, index: int, value: Any) -> None:
        self.done[index] = value
        if self.path is None:
            return
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        with self.path.open("ab") as f:
            f.write(_HEADER.pack(index, len(payload), zlib.crc32(payload)) + payload)

    @classmethod
    def load(cls, path: Path) -> PassLog:
        log = cls(path)
        if not path.exists():
            return log
        data = path.read_bytes()
        offset = 0
        while offset + _HEADER.size <= len(data):
            index, length, crc = _HEADER.unpack_from(data, offset)
            start, end = offset + _HEADER.size, offset + _HEADER.size + length
            payload = data[start:end]
            if len(payload) != length or zlib.crc32(payload) != crc:
                break
            log.done[index] = pickle.loads(payload)
            offset = end
        if offset != len(data):  # a record cut short by a kill: drop it and what follows
            with path.open("r+b") as f:
                f.truncate(offset)
        log.reused = len(log.done)
        return log


class Journal:
    """The passes of one run and their finished tiles (``root=None``: keep nothing)."""

    def __init__(self, root: Path | None, attempt: int = 1, stale_caches: tuple[str, ...] = ()):
        self.root = root
        self.attempt = attempt
        self.passes: list[dict[str, Any]] = []
        #: value caches of earlier attempts (see :mod:`tiler.cache`), to be dropped
        self.stale_caches = stale_caches

    def note_cache(self, cache: str) -> None:
        """Remember this attempt's value cache, so that a later attempt can free it."""
        if self.root is not None:
            with (self.root / CACHES).open("a") as f:
                f.write(cache + "\n")

    @classmethod
    def start(cls, workdir: Path, identity: dict[str, Any], *, resume: bool) -> Journal:
        """Begin (or, with ``resume``, continue) the journal of the run ``identity`` describes."""
        root = Path(workdir) / "journal"
        attempt = 1
        caches = root / CACHES
        stale = tuple(caches.read_text().split("\n")[:-1]) if caches.exists() else ()
        if resume and (root / IDENTITY).exists():
            previous = json.loads((root / IDENTITY).read_text())
            difference = describe_change(previous.get("run", {}), identity)
            if difference:
                raise OutputError(
                    f"{Path(workdir).parent}: cannot resume: {difference} since the first "
                    "attempt; pass --overwrite to start again"
                )
            attempt = int(previous.get("attempt", 1)) + 1
        elif root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"run": identity, "attempt": attempt}, indent=2, default=str)
        atomic.write_text(root / IDENTITY, text + "\n")
        caches.unlink(missing_ok=True)
        return cls(root, attempt, stale)

    def open_pass(self, name: str, keys: int) -> PassLog:
        """The log of the next pass (the n-th pass of every attempt is the same pass)."""
        number = len(self.passes)
        if self.root is None:
            log = PassLog(None)
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            path = self.root / f"{number:03d}-{slug}.log"
            stray = [p for p in self.root.glob(f"{number:03d}-*.log") if p != path]
            if stray:
                raise OutputError(
                    f"{self.root}: the journal's pass {number} is {stray[0].name}, not {name!r}; "
                    "pass --overwrite to start again"
                )
            log = PassLog.load(path)
            if any(not 0 <= i < keys for i in log.done):
                raise OutputError(f"{path}: tile indices outside 0..{keys - 1}; start again")
        self.passes.append({"name": name, "tiles": keys, "reused": log.reused})
        return log

    def summary(self) -> dict[str, Any]:
        """For ``run.json``: the attempt; per pass, its tiles and those taken from the journal."""
        tiles = sum(p["tiles"] for p in self.passes)
        reused = sum(p["reused"] for p in self.passes)
        return {
            "attempt": self.attempt,
            "tiles": tiles,
            "tiles_reused": reused,
            "tiles_computed": tiles - reused,
            "passes": self.passes,
        }


def describe_change(before: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between two run identities, in words ("" if nothing)."""
    names = {
        "input": "the input changed",
        "pipeline": "the pipeline changed",
        "chunks": "the chunk size changed",
        "tiler_version": "tiler's version changed",
    }
    for key, words in names.items():
        a, b = before.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed)
            if len(details) > 300:
                details = ", ".join(changed)
            return f"{words} ({details})"
        return f"{words} ({a!r} -> {b!r})"
    return ""
