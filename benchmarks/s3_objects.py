"""Counting what a ``tiler run`` into moto's S3 server did: its requests and its objects.

From moto's request log (werkzeug logs each request's method, path and
status): the requests by method and purpose, the PUTs and the distinct keys
written under DST by kind (a tile's chunk, a journal segment, anything else);
from the bucket: the keys under DST now, or listed every half second while a
run goes (the most at once). :func:`extrapolate` takes the counts of one
grid to another. Used by :mod:`benchmarks.s3_write`.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from benchmarks.s3_read import BUCKET, KEY

# A request as werkzeug (moto's server) logs it, colours removed.
_REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def requests_in(log: Path, offset: int) -> list[tuple[str, str, str]]:
    """The requests moto logged after byte ``offset``: (method, key with its query, status)."""
    time.sleep(0.5)  # the last lines of a finished run reach the file
    with log.open("rb") as f:
        f.seek(offset)
        text = _COLOUR.sub("", f.read().decode("utf-8", "replace"))
    found = []
    for method, target, status in _REQUEST.findall(text):
        parts = urlsplit(target)
        key = unquote(parts.path).removeprefix(f"/{BUCKET}").lstrip("/")
        found.append((method, key + (f"?{parts.query}" if parts.query else ""), status))
    return found


def kind(key: str) -> str:
    """What an object of a run is: a tile's chunk of a 2-D Zarr array, a journal segment,
    or anything else (metadata, tables, the coordinate arrays' chunks)."""
    if re.search(r"/c/\d+/\d+$", key):
        return "chunk"
    return "journal" if "/journal/" in key else "other"


def purpose(method: str, key: str, status: str) -> str:
    """What a request is for, as far as its method, key and status tell."""
    path = key.split("?")[0]
    if path == KEY:
        return "SRC reads"
    if method in ("PUT", "POST"):
        return f"{method}s"
    if path.endswith((".zarray", ".zattrs")) or "/.zarray/" in key or "/.zattrs/" in key:
        return "zarr v2 probes (.zarray/.zattrs, HEAD and LIST)"
    if "list-type=2" in key:
        return "LISTs (s3fs: is a missing key a folder?)"
    if method == "HEAD" and status == "404":
        return "HEADs of missing keys"
    if path.endswith("zarr.json"):
        return "zarr.json HEADs and GETs"
    return "chunk HEADs and GETs" if kind(path) == "chunk" else f"other {method}s"


def request_counts(requests: list[tuple[str, str, str]], prefix: str) -> dict[str, Any]:
    """Requests by method and purpose, and the PUTs and distinct keys written under ``prefix``."""
    puts = [key for method, key, _ in requests if method == "PUT" and key.startswith(prefix)]
    keys = set(puts)
    return {
        "requests": dict(sorted(Counter(method for method, _, _ in requests).items())),
        "requests_by_purpose": dict(Counter(purpose(*r) for r in requests).most_common()),
        "puts": len(puts),
        "puts_by_kind": dict(sorted(Counter(kind(k) for k in puts).items())),
        "keys_written": len(keys),
        "keys_written_by_kind": dict(sorted(Counter(kind(k) for k in keys).items())),
        "work_keys_written": sum(1 for k in keys if "/.tiler-work/" in k),
        "batch_deletes": sum(1 for m, k, _ in requests if m == "POST" and k.endswith("?delete")),
    }


def bucket_keys(s3: Any, prefix: str) -> list[str]:
    """The keys under ``prefix`` now."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


class Lister(threading.Thread):
    """Lists ``prefix`` every half second until stopped; the most keys seen at once."""

    def __init__(self, s3: Any, prefix: str):
        super().__init__(daemon=True)
        self.s3, self.prefix, self.peak = s3, prefix, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max(self.peak, len(bucket_keys(self.s3, self.prefix)))


def grid_tiles(side: int, chunk: int) -> int:
    return (-(-side // chunk)) ** 2


def extrapolate(run: dict[str, Any], tiles: int, large_tiles: int) -> dict[str, Any]:
    """Counts at ``large_tiles`` tiles: per-tile chunk counts scaled, the rest kept.

    Chunks are one object per tile per Zarr array; metadata and tables do not
    grow with the grid; journal segments are at most one per pass per second,
    so they grow with the run's duration, given here as the same number per
    tile (a run that is as fast per tile as this one).
    """
    scale = large_tiles / tiles

    def scaled(by_kind: dict[str, int]) -> int:
        grown = by_kind.get("chunk", 0) + by_kind.get("journal", 0)
        return round(grown * scale) + by_kind.get("other", 0)

    return {
        "tiles": large_tiles,
        "objects_left": scaled(run["objects_left_by_kind"]),
        "puts": scaled(run["puts_by_kind"]),
        "keys_written": scaled(run["keys_written_by_kind"]),
    }
