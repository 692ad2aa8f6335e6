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

In object storage (a DST in a bucket, :mod:`tiler.io.stores`), which cannot
append, a pass's log is a series of segments (``003-label.log.000001``, ...),
each the records that arrived since the last, written at most once a
second and when the pass ends: a run killed meanwhile computes those tiles
again.

The logs are pickles written by tiler into its own work folder; like the
Zarr stores beside them, they are trusted as much as DST itself.
"""

from __future__ import annotations

import json
import pickle
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from tiler.errors import OutputError
from tiler.io import atomic, stores

IDENTITY = "attempt.json"
CACHES = "caches"
_HEADER = struct.Struct("<IQI")  # tile index, payload length, crc32 of the payload
# In object storage, a pass's new records are written as a segment at most this often.
SEGMENT_SECONDS = 1.0


@dataclass
class PassLog:
    """The finished tiles of one pass: their results, and the file that records new ones."""

    path: Any  # a Path, a UPath in object storage (see the module), or None
    done: dict[int, Any] = field(default_factory=dict)
    reused: int = 0
    segments: int = 0  # in object storage: the segments written so far
    pending: bytearray = field(default_factory=bytearray)
    flushed: float = field(default_factory=time.monotonic)

    def record(self, index: int, value: Any) -> None:
        self.done[index] = value
        if self.path is None:
            return
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        record = _HEADER.pack(index, len(payload), zlib.crc32(payload)) + payload
        if not stores.is_remote(self.path):
            with self.path.open("ab") as f:
                f.write(record)
            return
        self.pending += record
        if time.monotonic() - self.flushed >= SEGMENT_SECONDS:
            self.flush()

    def flush(self) -> None:
        """In object storage: write the records not yet written, as the next segment."""
        if self.pending:
            self.segments += 1
            _segment(self.path, self.segments).write_bytes(bytes(self.pending))
            self.pending.clear()
        self.flushed = time.monotonic()

    @classmethod
    def load(cls, path: Any) -> PassLog:
        log = cls(path)
        if stores.is_remote(path):  # the segments, listed once, in order
            names = {p.name for p in path.parent.glob(f"{path.name}.*")}
            while (segment := _segment(path, log.segments + 1)).name in names:
                data = segment.read_bytes()
                if _read_records(data, log.done) != len(data):  # cannot be: PUTs are whole
                    raise OutputError(f"{segment}: a journal segment cut short; start again")
                log.segments += 1
        elif path.exists():
            data = path.read_bytes()
            if (offset := _read_records(data, log.done)) != len(data):
                # A record cut short by a kill: drop it and what follows.
                with path.open("r+b") as f:
                    f.truncate(offset)
        log.reused = len(log.done)
        return log


def _segment(path: Any, number: int) -> Any:
    return path.with_name(f"{path.name}.{number:06d}")


def _read_records(data: bytes, done: dict[int, Any]) -> int:
    """Read the whole records of ``data`` into ``done``; the offset where they end."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        index, length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        payload = data[start:end]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break
        done[index] = pickle.loads(payload)
        offset = end
    return offset


class Journal:
    """The passes of one run and their finished tiles (``root=None``: keep nothing)."""

    def __init__(self, root: Any, attempt: int = 1, stale_caches: tuple[str, ...] = ()):
        self.root = root
        self.attempt = attempt
        self.passes: list[dict[str, Any]] = []
        #: value caches of earlier attempts (see :mod:`tiler.cache`), to be dropped
        self.stale_caches = stale_caches

    def note_cache(self, cache: str) -> None:
        """Remember this attempt's value cache, so that a later attempt can free it."""
        if self.root is not None:
            path = self.root / CACHES
            before = path.read_text() if path.exists() else ""
            atomic.write_text(path, before + cache + "\n")

    @classmethod
    def start(cls, workdir: Any, identity: dict[str, Any], *, resume: bool) -> Journal:
        """Begin (or, with ``resume``, continue) the journal of the run ``identity`` describes."""
        root = stores.folder(workdir) / "journal"
        attempt = 1
        caches = root / CACHES
        stale = tuple(caches.read_text().split("\n")[:-1]) if caches.exists() else ()
        if resume and (root / IDENTITY).exists():
            previous = json.loads((root / IDENTITY).read_text())
            difference = describe_change(previous.get("run", {}), identity)
            if difference:
                raise OutputError(
                    f"{root.parent.parent}: cannot resume: {difference} since the first "
                    "attempt; pass --overwrite to start again"
                )
            attempt = int(previous.get("attempt", 1)) + 1
        else:
            stores.remove(root)
        stores.make_folder(root)
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
            stray = [
                p
                for p in self.root.glob(f"{number:03d}-*")
                if p.name != path.name and not p.name.startswith(f"{path.name}.")
            ]
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
