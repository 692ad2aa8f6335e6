#!/usr/bin/env python
"""Fuzzing tiler's input handling with mutated GeoTIFFs (issue 7, "Hostile files").

Small valid GeoTIFFs (96 x 80 px, 3-band uint8, with a CRS and a transform:
tiled 16 x 16 and striped, deflate and uncompressed, classic TIFF and
BigTIFF) are mutated: bytes flipped in the directory or in the image data,
the file or its directory cut short, tag values made absurd (sizes, sample
formats, offsets and byte counts), the GeoKey directory filled with garbage,
and a list of structured cases (directory loops, sparse blocks, huge
dimensions, unknown codecs...). The first image file directory is parsed
here with :mod:`struct`, classic and BigTIFF, so mutations can aim at tags.

Each mutated file goes through the command line in a fresh interpreter,
``python -m tiler.cli run FILE DST --scheduler sync --chunk-size 32 -q``,
under a wall-time limit and an address-space limit (``RLIMIT_AS``). Every
case must end in either

* success: exit status 0, and DST holds ``labels.zarr``, ``objects.parquet``
  and a ``run.json`` that says ``complete``; or
* a clean error: exit status 1..5, nothing on stdout, exactly one line on
  stderr, starting ``tiler: error:`` and naming the file, no traceback, and
  no ``run.json`` in DST.

Anything else is a failure: a timeout, a death by a signal (a crash in GDAL,
an abort), a traceback (``MemoryError`` included), an error that breaks the
one-line contract, another exit status, or a success without its outputs.
A case is rebuilt exactly from its seed and index, so each failure is
reported with the command that replays it::

    python tests/fuzz_tiff.py --seed 7 --case 123

A campaign (``make fuzz``): ``python tests/fuzz_tiff.py --cases 2000``; the
environment variables ``FUZZ_CASES``, ``FUZZ_SEED``, ``FUZZ_JOBS``,
``FUZZ_TIMEOUT`` (seconds) and ``FUZZ_MEMORY_MB`` set the defaults. It prints
a table of outcomes per mutation kind and copies every failing file, with a
report, to ``--out`` (default ``fuzz-failures/``). tests/test_fuzz.py runs a
bounded number of cases with the same machinery.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# The first IFD of a TIFF file, classic or BigTIFF
# ---------------------------------------------------------------------------

# TIFF field types: the struct code of one unit, and units per value (rationals are two).
UNIT = {
    1: "B",  # BYTE
    2: "B",  # ASCII
    3: "H",  # SHORT
    4: "I",  # LONG
    5: "I",  # RATIONAL
    6: "b",  # SBYTE
    7: "B",  # UNDEFINED
    8: "h",  # SSHORT
    9: "i",  # SLONG
    10: "i",  # SRATIONAL
    11: "f",  # FLOAT
    12: "d",  # DOUBLE
    13: "I",  # IFD
    16: "Q",  # LONG8 (BigTIFF)
    17: "q",  # SLONG8
    18: "Q",  # IFD8
}
PER_VALUE = {5: 2, 10: 2}
SHORT, LONG, DOUBLE, ASCII, LONG8 = 3, 4, 12, 2, 16

IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION, PHOTOMETRIC = 256, 257, 258, 259, 262
STRIP_OFFSETS, SAMPLES_PER_PIXEL, ROWS_PER_STRIP, STRIP_BYTE_COUNTS = 273, 277, 278, 279
PLANAR_CONFIG, PREDICTOR, COLOR_MAP = 284, 317, 320
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS = 322, 323, 324, 325
EXTRA_SAMPLES, SAMPLE_FORMAT = 338, 339
MODEL_PIXEL_SCALE, MODEL_TIEPOINT, MODEL_TRANSFORMATION = 33550, 33922, 34264
GEO_KEY_DIRECTORY, GEO_DOUBLE_PARAMS, GEO_ASCII_PARAMS = 34735, 34736, 34737
GDAL_METADATA, GDAL_NODATA = 42112, 42113


def unit_size(type_: int) -> int:
    return struct.calcsize("<" + UNIT.get(type_, "B"))


def value_size(type_: int) -> int:
    return unit_size(type_) * PER_VALUE.get(type_, 1)


@dataclass(frozen=True)
class Entry:
    """One directory entry: where it is in the file and where its values are."""

    tag: int
    type: int
    count: int
    pos: int  # file offset of the entry itself
    value_pos: int  # file offset of its values (inside the entry when they fit)
    inline: bool

    @property
    def size(self) -> int:
        return value_size(self.type) * self.count

    @property
    def units(self) -> int:
        return self.count * PER_VALUE.get(self.type, 1)


@dataclass(frozen=True)
class Tiff:
    """A TIFF file's bytes and its first image file directory."""

    data: bytes
    order: str  # struct byte order: "<" (II) or ">" (MM)
    big: bool
    ifd: int
    entries: tuple[Entry, ...]

    @classmethod
    def parse(cls, data: bytes) -> Tiff:
        order = {b"II": "<", b"MM": ">"}[data[:2]]
        magic = struct.unpack_from(order + "H", data, 2)[0]
        big = magic == 43
        if big:
            ifd = struct.unpack_from(order + "Q", data, 8)[0]
            n = struct.unpack_from(order + "Q", data, ifd)[0]
            head, size, inline_max, layout = 8, 20, 8, "HHQ"
        else:
            ifd = struct.unpack_from(order + "I", data, 4)[0]
            n = struct.unpack_from(order + "H", data, ifd)[0]
            head, size, inline_max, layout = 2, 12, 4, "HHI"
        entries = []
        for i in range(n):
            pos = ifd + head + i * size
            tag, type_, count = struct.unpack_from(order + layout, data, pos)
            field_pos = pos + struct.calcsize(order + layout)
            inline = value_size(type_) * count <= inline_max
            if inline:
                value_pos = field_pos
            else:
                value_pos = struct.unpack_from(order + ("Q" if big else "I"), data, field_pos)[0]
            entries.append(Entry(tag, type_, count, pos, value_pos, inline))
        return cls(data, order, big, ifd, tuple(entries))

    # layout -----------------------------------------------------------------

    @property
    def count_format(self) -> str:
        return "Q" if self.big else "H"

    @property
    def offset_format(self) -> str:
        return "Q" if self.big else "I"

    @property
    def entry_size(self) -> int:
        return 20 if self.big else 12

    @property
    def header_size(self) -> int:
        return 16 if self.big else 8

    @property
    def header_offset_pos(self) -> int:
        """Where the header stores the first IFD's offset."""
        return 8 if self.big else 4

    @property
    def next_pos(self) -> int:
        """Where the first IFD stores the next IFD's offset."""
        head = struct.calcsize(self.count_format)
        return self.ifd + head + len(self.entries) * self.entry_size

    @property
    def ifd_end(self) -> int:
        return self.next_pos + struct.calcsize(self.offset_format)

    # values -----------------------------------------------------------------

    def entry(self, tag: int) -> Entry | None:
        return next((e for e in self.entries if e.tag == tag), None)

    def raw(self, entry: Entry) -> bytes:
        return self.data[entry.value_pos : entry.value_pos + entry.size]

    def values(self, tag: int) -> list:
        """The tag's values, flattened to units (a rational is two); [] when absent."""
        e = self.entry(tag)
        if e is None:
            return []
        if e.type == ASCII:
            return [self.raw(e)]
        return list(struct.unpack(self.order + UNIT[e.type] * e.units, self.raw(e)))

    def pack(self, type_: int, values: Iterable) -> bytes:
        if type_ == ASCII:
            (text,) = values
            return text
        values = list(values)
        return struct.pack(self.order + UNIT[type_] * len(values), *values)

    @property
    def tiled(self) -> bool:
        return self.entry(TILE_OFFSETS) is not None

    @property
    def offsets_tag(self) -> int:
        return TILE_OFFSETS if self.tiled else STRIP_OFFSETS

    @property
    def counts_tag(self) -> int:
        return TILE_BYTE_COUNTS if self.tiled else STRIP_BYTE_COUNTS

    def structure_ranges(self) -> list[tuple[int, int]]:
        """The header, the IFD and every value stored outside it (not the image data)."""
        ranges = [(0, self.header_size), (self.ifd, self.ifd_end)]
        ranges += [(e.value_pos, e.value_pos + e.size) for e in self.entries if not e.inline]
        return [(a, min(b, len(self.data))) for a, b in ranges if a < min(b, len(self.data))]

    def data_ranges(self) -> list[tuple[int, int]]:
        """The image's blocks (tiles or strips) as byte ranges of the file."""
        pairs = zip(self.values(self.offsets_tag), self.values(self.counts_tag), strict=True)
        return [(o, min(o + n, len(self.data))) for o, n in pairs if n and o < len(self.data)]

    # rewriting --------------------------------------------------------------

    def fields(self) -> list[tuple[int, int, int, bytes]]:
        """The directory as ``(tag, type, count, value bytes)``, for :meth:`rebuild`."""
        return [(e.tag, e.type, e.count, self.raw(e)) for e in self.entries]

    def rebuild(
        self,
        fields: list[tuple[int, int, int, bytes]],
        *,
        next_ifd: int = 0,
        sort: bool = True,
    ) -> bytes:
        """This file with a new first IFD holding ``fields``, appended at its end.

        The old directory stays in place, unreferenced; values too long for an
        entry follow the new directory.
        """
        if sort:
            fields = sorted(fields, key=lambda f: f[0])
        out = bytearray(self.data)
        if len(out) % 2:
            out.append(0)
        ifd = len(out)
        inline_max = 8 if self.big else 4
        layout = self.order + ("HHQ" if self.big else "HHI")
        table = bytearray(struct.pack(self.order + self.count_format, len(fields)))
        values_at = ifd + len(table) + len(fields) * self.entry_size
        values_at += struct.calcsize(self.offset_format)
        blob = bytearray()
        for tag, type_, count, raw in fields:
            if len(raw) <= inline_max:
                slot = raw.ljust(inline_max, b"\0")
            else:
                slot = struct.pack(self.order + self.offset_format, values_at + len(blob))
                blob += raw
                if len(blob) % 2:
                    blob.append(0)
            table += struct.pack(layout, tag, type_, count) + slot
        table += struct.pack(self.order + self.offset_format, next_ifd)
        out += table + blob
        struct.pack_into(self.order + self.offset_format, out, self.header_offset_pos, ifd)
        return bytes(out)

    def with_fields(
        self, changes: dict[int, tuple[int, list] | None], *, sort: bool = True
    ) -> bytes:
        """Rebuilt with tags set to ``(type, values)``, added, or removed (``None``)."""
        fields = [f for f in self.fields() if f[0] not in changes]
        for tag, change in changes.items():
            if change is not None:
                type_, values = change
                count = len(values[0]) if type_ == ASCII else len(values)
                count //= PER_VALUE.get(type_, 1)
                fields.append((tag, type_, count, self.pack(type_, values)))
        return self.rebuild(fields, sort=sort)

    def patch(self, pos: int, fmt: str, value) -> bytes:
        out = bytearray(self.data)
        struct.pack_into(self.order + fmt, out, pos, value)
        return bytes(out)


def integer_type(tiff: Tiff, value: int, current: int = SHORT) -> int:
    """The narrowest unsigned type, no narrower than ``current``, that holds ``value``."""
    for type_, limit in ((SHORT, 0xFFFF), (LONG, 0xFFFFFFFF)):
        if value_size(type_) >= value_size(current) and value <= limit:
            return type_
    return LONG8 if tiff.big else LONG


def fit(type_: int, value: int) -> int:
    """``value`` wrapped into an unsigned integer type (as a careless writer would)."""
    return value & ((1 << (8 * unit_size(type_))) - 1)


# ---------------------------------------------------------------------------
# The valid files every case starts from
# ---------------------------------------------------------------------------

HEIGHT, WIDTH = 80, 96
BLOBS = [(12, 15, 6), (40, 20, 8), (25, 50, 7), (50, 58, 5), (65, 85, 6)]  # row, col, radius
BASES = {
    "tiled-deflate": dict(tiled=True, compress="deflate"),
    "tiled-raw": dict(tiled=True, compress=None),
    "striped-deflate": dict(tiled=False, compress="deflate"),
    "striped-raw": dict(tiled=False, compress=None),
    "bigtiff-tiled-deflate": dict(tiled=True, compress="deflate", bigtiff=True),
    "bigtiff-striped-raw": dict(tiled=False, compress=None, bigtiff=True),
}


def field_image() -> np.ndarray:
    """Brown soil with green round plants, (3, 80, 96) uint8: the default pipeline finds them."""
    image = np.empty((3, HEIGHT, WIDTH), np.uint8)
    image[:] = np.array([120, 90, 60], np.uint8)[:, None, None]
    rr, cc = np.mgrid[:HEIGHT, :WIDTH]
    for r, c, radius in BLOBS:
        image[:, (rr - r) ** 2 + (cc - c) ** 2 <= radius**2] = np.array([60, 170, 50])[:, None]
    return image


def write_base(path: Path, *, tiled: bool, compress: str | None, bigtiff: bool = False) -> Path:
    import rasterio
    from affine import Affine

    profile = dict(
        driver="GTiff",
        count=3,
        height=HEIGHT,
        width=WIDTH,
        dtype="uint8",
        crs="EPSG:32611",
        transform=Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0),
        compress=compress,
        BIGTIFF="YES" if bigtiff else "NO",
    )
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    else:
        profile.update(tiled=False, blockysize=8)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(field_image())
    return path


def make_bases(folder: Path) -> dict[str, bytes]:
    """The valid files, by name (written with rasterio, deterministic for a GDAL version)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: write_base(folder / f"{name}.tif", **options).read_bytes()
        for name, options in BASES.items()
    }


# ---------------------------------------------------------------------------
# Mutations: (Tiff, Random) -> (bytes, description)
# ---------------------------------------------------------------------------

Mutation = tuple[bytes, str]


def _flip(data: bytes, rng: random.Random, ranges: list[tuple[int, int]], n: int) -> Mutation:
    """Change ``n`` bytes at positions drawn from ``ranges`` (weighted by length)."""
    out = bytearray(data)
    weights = [b - a for a, b in ranges]
    changes = []
    for _ in range(n):
        a, b = rng.choices(ranges, weights)[0]
        pos = rng.randrange(a, b)
        how = rng.random()
        if how < 0.5:
            new = out[pos] ^ (1 << rng.randrange(8))
        elif how < 0.7:
            new = 0xFF if out[pos] != 0xFF else 0x00
        else:
            new = out[pos] ^ rng.randrange(1, 256)
        changes.append(f"{pos}:{out[pos]:02x}>{new:02x}")
        out[pos] = new
    return bytes(out), "bytes " + " ".join(changes)


def flip_structure(t: Tiff, rng: random.Random) -> Mutation:
    return _flip(t.data, rng, t.structure_ranges(), rng.choice([1, 1, 2, 3, 5, 8]))


def flip_data(t: Tiff, rng: random.Random) -> Mutation:
    return _flip(t.data, rng, t.data_ranges(), rng.choice([1, 2, 4, 16, 64]))


def flip_any(t: Tiff, rng: random.Random) -> Mutation:
    return _flip(t.data, rng, [(0, len(t.data))], rng.choice([1, 4, 16, 64]))


def truncate(t: Tiff, rng: random.Random) -> Mutation:
    cut = rng.randrange(1, len(t.data))
    return t.data[:cut], f"cut at byte {cut} of {len(t.data)}"


def truncate_ifd(t: Tiff, rng: random.Random) -> Mutation:
    how = rng.choice(["cut-in-ifd", "cut-in-values", "fewer-entries", "drop-tail", "more-entries"])
    n = len(t.entries)
    if how == "cut-in-ifd":
        cut = rng.randrange(t.ifd, t.ifd_end)
        return t.data[:cut], f"{how}: cut at byte {cut} (IFD spans {t.ifd}:{t.ifd_end})"
    if how == "cut-in-values":
        e = rng.choice([e for e in t.entries if not e.inline])
        cut = rng.randrange(e.value_pos, e.value_pos + e.size)
        return t.data[:cut], f"{how}: cut at byte {cut}, inside tag {e.tag}'s values"
    if how == "fewer-entries":  # the count says less; the next-IFD offset is read from an entry
        k = rng.randrange(0, n)
        return t.patch(t.ifd, t.count_format, k), f"{how}: entry count {n} -> {k}"
    if how == "drop-tail":  # a well-formed directory that lost its last entries
        k = rng.randrange(1, n)
        lost = [f[0] for f in t.fields()[k:]]
        return t.rebuild(t.fields()[:k]), f"{how}: kept {k} of {n} entries, lost tags {lost}"
    k = rng.choice([n + 1, n + 2, n + rng.randrange(3, 200), 0xFFFF])
    return t.patch(t.ifd, t.count_format, k), f"{how}: entry count {n} -> {k}"


ABSURD_TAGS = [
    IMAGE_WIDTH,
    IMAGE_LENGTH,
    BITS_PER_SAMPLE,
    SAMPLES_PER_PIXEL,
    TILE_WIDTH,
    TILE_LENGTH,
    TILE_OFFSETS,
    TILE_BYTE_COUNTS,
    STRIP_OFFSETS,
    STRIP_BYTE_COUNTS,
    ROWS_PER_STRIP,
    COMPRESSION,
    PHOTOMETRIC,
    PLANAR_CONFIG,
    PREDICTOR,
    SAMPLE_FORMAT,
]


def absurd_value(t: Tiff, rng: random.Random, original: int) -> int:
    pool = [0, 1, 2, 3, 7, 17, 255, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]
    pool += [len(t.data) - 1, len(t.data), len(t.data) + 1, rng.randrange(1 << 32)]
    pool += [original + 1, max(original - 1, 0), original * 2, original * 1000]
    if t.big:
        pool += [1 << 40, (1 << 63) - 1, (1 << 64) - 1]
    return rng.choice(pool)


def tag_absurd(t: Tiff, rng: random.Random) -> Mutation:
    """An image-structure tag set to a huge, zero or nonsensical value (or count, or type)."""
    e = rng.choice([e for e in t.entries if e.tag in ABSURD_TAGS])
    how = rng.choices(["one", "all", "count", "type"], [6, 3, 1, 1])[0]
    values = t.values(e.tag)
    if how == "count":
        count = rng.choice([0, 1, e.count - 1, e.count + 1, e.count * 64, 0xFFFFFFFF])
        count = max(count, 0)
        fmt = "Q" if t.big else "I"
        out = t.patch(e.pos + 4, fmt, count)
        return out, f"tag {e.tag}: count {e.count} -> {count} (values unmoved)"
    if how == "type":
        type_ = rng.choice([0, 1, 2, 5, 7, 11, 12, 13, 16, 99, 0xFFFF])
        out = t.patch(e.pos + 2, "H", type_)
        return out, f"tag {e.tag}: type {e.type} -> {type_} (values unmoved)"
    if how == "one":
        i = rng.randrange(len(values))
        new = absurd_value(t, rng, values[i])
        values[i] = new
        what = f"value[{i}] -> {new}"
    else:
        new = absurd_value(t, rng, values[0])
        values = [new] * len(values)
        what = f"all {len(values)} values -> {new}"
    type_ = integer_type(t, max(values), e.type)
    if e.tag in (BITS_PER_SAMPLE, SAMPLES_PER_PIXEL, PHOTOMETRIC, PLANAR_CONFIG, PREDICTOR):
        if rng.random() < 0.5:  # SHORT by the specification: wrap rather than widen
            type_, values = e.type, [fit(e.type, v) for v in values]
    return t.with_fields({e.tag: (type_, values)}), f"tag {e.tag}: {what} (type {type_})"


ABSURD_DOUBLES = [
    math.nan,
    math.inf,
    -math.inf,
    0.0,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    1e-300,
    1e20,
    -1.0,
    4e9,
]


def geokeys(t: Tiff, rng: random.Random) -> Mutation:
    """Garbage in the GeoTIFF tags: the GeoKey directory, its params, scale and tiepoints."""
    keys = t.values(GEO_KEY_DIRECTORY)
    how = rng.choice(
        [
            "key-value",
            "key-value",
            "key-location",
            "key-count",
            "header",
            "random-shorts",
            "all-random",
            "short-directory",
            "ascii",
            "doubles",
            "doubles",
            "transformation",
            "double-params",
            "drop",
        ]
    )
    if how in ("key-value", "key-location", "key-count"):
        k = rng.randrange(keys[3])
        slot = 4 + 4 * k + {"key-location": 1, "key-count": 2, "key-value": 3}[how]
        pool = [0, 1, 2, 3, 4326, 32611, 32767, 0x7FFF, 0xFFFF, rng.randrange(1 << 16)]
        if how == "key-location":
            pool += [GEO_DOUBLE_PARAMS, GEO_ASCII_PARAMS, GEO_KEY_DIRECTORY, IMAGE_WIDTH]
        new = rng.choice(pool)
        what = f"key {keys[4 + 4 * k]} field {slot % 4}: {keys[slot]} -> {new}"
        keys[slot] = new
    elif how == "header":
        slot = rng.randrange(4)
        new = rng.choice([0, 2, keys[3] + 1, keys[3] + 50, 0xFFFF])
        what = f"header[{slot}]: {keys[slot]} -> {new}"
        keys[slot] = new
    elif how == "random-shorts":
        picks = rng.sample(range(len(keys)), rng.randint(1, 6))
        for i in picks:
            keys[i] = rng.randrange(1 << 16)
        what = f"shorts {sorted(picks)} randomized"
    elif how == "all-random":
        keys = [rng.randrange(1 << 16) for _ in keys]
        what = f"all {len(keys)} shorts random"
    elif how == "short-directory":
        keys = keys[: rng.randrange(0, len(keys))]
        what = f"directory cut to {len(keys)} shorts"
    elif how == "ascii":
        n = rng.choice([0, 1, 5, 300, 70000])
        text = bytes(rng.choice(b"|\0\xff\x80abc ") for _ in range(n))
        return (
            t.with_fields({GEO_ASCII_PARAMS: (ASCII, [text])}),
            f"GeoAsciiParams: {n} garbage bytes",
        )
    elif how == "doubles":
        tag = rng.choice([MODEL_PIXEL_SCALE, MODEL_TIEPOINT])
        values = t.values(tag)
        picks = rng.sample(range(len(values)), rng.randint(1, len(values)))
        for i in picks:
            values[i] = rng.choice(ABSURD_DOUBLES)
        if rng.random() < 0.2:
            values = values[: rng.randrange(len(values))]
        return (
            t.with_fields({tag: (DOUBLE, values)}),
            f"tag {tag}: {values}",
        )
    elif how == "transformation":
        values = [rng.choice(ABSURD_DOUBLES + [0.05, -0.05, 1.0]) for _ in range(16)]
        values = values[: rng.choice([16, 16, 6, 1])]
        return (
            t.with_fields({MODEL_TRANSFORMATION: (DOUBLE, values)}),
            f"ModelTransformation added: {values}",
        )
    elif how == "double-params":
        values = [rng.choice(ABSURD_DOUBLES) for _ in range(rng.choice([0, 1, 7]))]
        # a user-defined projected CRS whose parameters point into GeoDoubleParams
        extra = [3074, GEO_DOUBLE_PARAMS, 1, rng.choice([0, 3, 500])]  # ProjectionGeoKey
        extra += [3078, GEO_DOUBLE_PARAMS, rng.choice([1, 9, 0xFFFF]), 0]  # StdParallel1GeoKey
        keys = keys + extra
        keys[3] += 2
        what = f"double params {values} and keys {extra}"
        changes = {
            GEO_KEY_DIRECTORY: (SHORT, keys),
            GEO_DOUBLE_PARAMS: (DOUBLE, values) if values else None,
        }
        return t.with_fields(changes), f"GeoKeys: {what}"
    else:
        tag = rng.choice([GEO_KEY_DIRECTORY, MODEL_PIXEL_SCALE, MODEL_TIEPOINT, GEO_ASCII_PARAMS])
        return t.with_fields({tag: None}), f"tag {tag} removed"
    return t.with_fields({GEO_KEY_DIRECTORY: (SHORT, keys)}), f"GeoKeys {how}: {what}"


# Structured cases: name -> mutation (None where it does not apply to the base file).


def _all(t: Tiff, tag: int, value: int) -> bytes:
    n = len(t.values(tag))
    return t.with_fields({tag: (integer_type(t, value, LONG), [value] * n)})


def _dims(width: int, height: int) -> Callable[[Tiff], bytes]:
    def mutate(t: Tiff) -> bytes:
        type_ = integer_type(t, max(width, height))
        return t.with_fields({IMAGE_WIDTH: (type_, [width]), IMAGE_LENGTH: (type_, [height])})

    return mutate


def _set(tag: int, type_: int, values: list) -> Callable[[Tiff], bytes]:
    return lambda t: t.with_fields({tag: (type_, values)})


def _tiled(mutate: Callable[[Tiff], bytes]) -> Callable[[Tiff], bytes | None]:
    return lambda t: mutate(t) if t.tiled else None


def _striped(mutate: Callable[[Tiff], bytes]) -> Callable[[Tiff], bytes | None]:
    return lambda t: None if t.tiled else mutate(t)


def _compression(code: int, *, unless: int) -> Callable[[Tiff], bytes | None]:
    return lambda t: (
        None if t.values(COMPRESSION) == [unless] else _set(COMPRESSION, SHORT, [code])(t)
    )


def _gdal_metadata(xml: str) -> Callable[[Tiff], bytes]:
    return _set(GDAL_METADATA, ASCII, [xml.encode() + b"\0"])


def _nodata(text: bytes) -> Callable[[Tiff], bytes]:
    return _set(GDAL_NODATA, ASCII, [text + b"\0"])


def _next_ifd(value: Callable[[Tiff], int]) -> Callable[[Tiff], bytes]:
    return lambda t: t.patch(t.next_pos, t.offset_format, value(t))


def _first_ifd(value: Callable[[Tiff], int]) -> Callable[[Tiff], bytes]:
    return lambda t: t.patch(t.header_offset_pos, t.offset_format, value(t))


def _duplicate_width(t: Tiff) -> bytes:
    return t.rebuild(t.fields() + [(IMAGE_WIDTH, LONG, 1, t.pack(LONG, [5000]))], sort=False)


def _colormap(t: Tiff) -> bytes:
    return t.with_fields(
        {
            PHOTOMETRIC: (SHORT, [3]),
            SAMPLES_PER_PIXEL: (SHORT, [1]),
            COLOR_MAP: (SHORT, [7] * 17),  # needs 3 * 2**8 entries
        }
    )


def _tile_size(size: int) -> Callable[[Tiff], bytes | None]:
    def mutate(t: Tiff) -> bytes | None:
        if not t.tiled:
            return None
        type_ = integer_type(t, size)
        return t.with_fields({TILE_WIDTH: (type_, [size]), TILE_LENGTH: (type_, [size])})

    return mutate


STRUCTURED: dict[str, Callable[[Tiff], bytes | None]] = {
    "ifd-self-loop": _next_ifd(lambda t: t.ifd),
    "ifd-next-to-header": _next_ifd(lambda t: 0 if t.big else 4),
    "ifd-next-past-eof": _next_ifd(lambda t: len(t.data) + 1000),
    "ifd-next-mid-data": _next_ifd(lambda t: t.data_ranges()[0][0] + 1),
    "ifd-offset-zero": _first_ifd(lambda t: 0),
    "ifd-offset-past-eof": _first_ifd(lambda t: len(t.data) + 16),
    "ifd-offset-misaligned": _first_ifd(lambda t: t.ifd + 1),
    "ifd-offset-max": _first_ifd(lambda t: (1 << (64 if t.big else 32)) - 1),
    "ifd-offset-to-data": _first_ifd(lambda t: t.data_ranges()[0][0]),
    "entry-count-zero": lambda t: t.patch(t.ifd, t.count_format, 0),
    "entry-count-max": lambda t: t.patch(t.ifd, t.count_format, (1 << (32 if t.big else 16)) - 1),
    "duplicate-width": _duplicate_width,
    "unsorted-entries": lambda t: t.rebuild(t.fields()[::-1], sort=False),
    "blocks-same-offset": lambda t: _all(t, t.offsets_tag, t.values(t.offsets_tag)[0]),
    "blocks-overlapping": lambda t: t.with_fields(
        {
            t.offsets_tag: (
                LONG,
                [t.values(t.offsets_tag)[0] + i for i in range(len(t.values(t.offsets_tag)))],
            )
        }
    ),
    "offsets-zero-sparse": lambda t: _all(t, t.offsets_tag, 0),
    "offsets-past-eof": lambda t: _all(t, t.offsets_tag, len(t.data) + 4096),
    "offsets-max": lambda t: _all(t, t.offsets_tag, 0xFFFFFFFF),
    "bytecounts-zero": lambda t: _all(t, t.counts_tag, 0),
    "bytecounts-max": lambda t: _all(t, t.counts_tag, 0xFFFFFFFF),
    "bytecounts-2gib": lambda t: _all(t, t.counts_tag, 0x7FFFFFFF),
    "bytecounts-one": lambda t: _all(t, t.counts_tag, 1),
    "offsets-missing": lambda t: t.with_fields({t.offsets_tag: None}),
    "bytecounts-missing": lambda t: t.with_fields({t.counts_tag: None}),
    "offsets-count-short": lambda t: t.with_fields(
        {t.offsets_tag: (LONG, t.values(t.offsets_tag)[:3])}
    ),
    "dims-max": _dims(0xFFFFFFFF, 0xFFFFFFFF),
    "dims-2g": _dims(0x7FFFFFFF, 0x7FFFFFFF),
    "dims-1m": _dims(1 << 20, 1 << 20),
    "dims-wide-strip": _dims(1 << 24, 1),
    "dims-tall": _dims(1, 1 << 24),
    "dims-50k": _dims(50000, 50000),
    "dims-one": _dims(1, 1),
    "dims-zero": _dims(0, 0),
    "dims-width-zero": _dims(0, HEIGHT),
    "dims-odd": _dims(WIDTH + 7, HEIGHT + 3),
    "bits-16": _set(BITS_PER_SAMPLE, SHORT, [16, 16, 16]),
    "bits-1": _set(BITS_PER_SAMPLE, SHORT, [1, 1, 1]),
    "bits-12": _set(BITS_PER_SAMPLE, SHORT, [12, 12, 12]),
    "bits-32": _set(BITS_PER_SAMPLE, SHORT, [32, 32, 32]),
    "bits-64": _set(BITS_PER_SAMPLE, SHORT, [64, 64, 64]),
    "bits-mixed": _set(BITS_PER_SAMPLE, SHORT, [8, 16, 8]),
    "bits-zero": _set(BITS_PER_SAMPLE, SHORT, [0, 0, 0]),
    "bits-one-value": _set(BITS_PER_SAMPLE, SHORT, [8]),
    "float-8bit": _set(SAMPLE_FORMAT, SHORT, [3, 3, 3]),
    "float-16bit": lambda t: t.with_fields(
        {SAMPLE_FORMAT: (SHORT, [3, 3, 3]), BITS_PER_SAMPLE: (SHORT, [16, 16, 16])}
    ),
    "float-32bit": lambda t: t.with_fields(
        {SAMPLE_FORMAT: (SHORT, [3, 3, 3]), BITS_PER_SAMPLE: (SHORT, [32, 32, 32])}
    ),
    "signed-8bit": _set(SAMPLE_FORMAT, SHORT, [2, 2, 2]),
    "complex-16bit": lambda t: t.with_fields(
        {SAMPLE_FORMAT: (SHORT, [5, 5, 5]), BITS_PER_SAMPLE: (SHORT, [16, 16, 16])}
    ),
    "sampleformat-void": _set(SAMPLE_FORMAT, SHORT, [4, 4, 4]),
    "sampleformat-garbage": _set(SAMPLE_FORMAT, SHORT, [99, 7, 0]),
    "palette-without-colormap": _set(PHOTOMETRIC, SHORT, [3]),
    "palette-short-colormap": _colormap,
    "ycbcr": _set(PHOTOMETRIC, SHORT, [6]),
    "cmyk": _set(PHOTOMETRIC, SHORT, [5]),
    "cielab": _set(PHOTOMETRIC, SHORT, [8]),
    "photometric-garbage": _set(PHOTOMETRIC, SHORT, [999]),
    "planar-separate": _set(PLANAR_CONFIG, SHORT, [2]),
    "planar-garbage": _set(PLANAR_CONFIG, SHORT, [7]),
    "compression-unknown": _set(COMPRESSION, SHORT, [9999]),
    "compression-jpeg": _set(COMPRESSION, SHORT, [7]),
    "compression-old-jpeg": _set(COMPRESSION, SHORT, [6]),
    "compression-lzw": _set(COMPRESSION, SHORT, [5]),
    "compression-packbits": _set(COMPRESSION, SHORT, [32773]),
    "compression-zstd": _set(COMPRESSION, SHORT, [50000]),
    "compression-lerc": _set(COMPRESSION, SHORT, [34887]),
    "compression-webp": _set(COMPRESSION, SHORT, [50001]),
    "compression-jxl": _set(COMPRESSION, SHORT, [50002]),
    "compression-none-on-deflate": _compression(1, unless=1),
    "compression-deflate-on-raw": _compression(8, unless=8),
    "compression-ccitt": _set(COMPRESSION, SHORT, [3]),
    "predictor-2": _set(PREDICTOR, SHORT, [2]),
    "predictor-3": _set(PREDICTOR, SHORT, [3]),
    "predictor-garbage": _set(PREDICTOR, SHORT, [77]),
    "spp-1": _set(SAMPLES_PER_PIXEL, SHORT, [1]),
    "spp-4": _set(SAMPLES_PER_PIXEL, SHORT, [4]),
    "spp-255": _set(SAMPLES_PER_PIXEL, SHORT, [255]),
    "spp-65535": _set(SAMPLES_PER_PIXEL, SHORT, [65535]),
    "spp-zero": _set(SAMPLES_PER_PIXEL, SHORT, [0]),
    "extrasamples-alpha": _set(EXTRA_SAMPLES, SHORT, [2]),
    "extrasamples-two-alphas": lambda t: t.with_fields(
        {EXTRA_SAMPLES: (SHORT, [2, 1]), PHOTOMETRIC: (SHORT, [1])}
    ),
    "extrasamples-all": lambda t: t.with_fields(
        {EXTRA_SAMPLES: (SHORT, [2, 2, 2]), PHOTOMETRIC: (SHORT, [1])}
    ),
    "extrasamples-too-many": _set(EXTRA_SAMPLES, SHORT, [0] * 9),
    "nodata-garbage": _nodata(b"abc"),
    "nodata-nan": _nodata(b"nan"),
    "nodata-overflow": _nodata(b"1e400"),
    "nodata-negative": _nodata(b"-300"),
    "nodata-soil": _nodata(b"120"),
    "nodata-everything": lambda t: t.with_fields(
        {GDAL_NODATA: (ASCII, [b"0\0"]), t.offsets_tag: (LONG, [0] * len(t.values(t.offsets_tag)))}
    ),
    "nodata-long": _nodata(b"1" * 100000),
    "nodata-empty": _nodata(b""),
    "gdal-metadata-garbage": _gdal_metadata("<GDALMetadata><Item name='x' sample='99999'"),
    "gdal-metadata-scale": _gdal_metadata(
        "<GDALMetadata><Item name='SCALE' sample='0' role='scale'>nan</Item>"
        "<Item name='OFFSET' sample='1' role='offset'>1e400</Item></GDALMetadata>"
    ),
    "gdal-metadata-colorinterp": _gdal_metadata(
        "<GDALMetadata><Item name='COLORINTERP' sample='0' role='colorinterp'>Alpha</Item>"
        "<Item name='COLORINTERP' sample='1' role='colorinterp'>Alpha</Item>"
        "<Item name='COLORINTERP' sample='2' role='colorinterp'>Alpha</Item></GDALMetadata>"
    ),
    "gdal-metadata-huge": _gdal_metadata("<GDALMetadata>" + "<Item name='a'>b</Item>" * 20000),
    "rowsperstrip-zero": _striped(_set(ROWS_PER_STRIP, SHORT, [0])),
    "rowsperstrip-one": _striped(_set(ROWS_PER_STRIP, SHORT, [1])),
    "rowsperstrip-max": _striped(_set(ROWS_PER_STRIP, LONG, [0xFFFFFFFF])),
    "rowsperstrip-missing": _striped(lambda t: t.with_fields({ROWS_PER_STRIP: None})),
    "tile-size-17": _tile_size(17),
    "tile-size-zero": _tile_size(0),
    "tile-size-8": _tile_size(8),
    "tile-size-4096": _tile_size(4096),
    "tile-size-65536": _tile_size(65536),
    "tile-size-2g": _tile_size(0x7FFFFFF0),
    "tile-width-only": _tiled(lambda t: t.with_fields({TILE_LENGTH: None})),
    "tiled-and-striped": _tiled(
        lambda t: t.with_fields(
            {
                STRIP_OFFSETS: (LONG, t.values(TILE_OFFSETS)),
                STRIP_BYTE_COUNTS: (LONG, t.values(TILE_BYTE_COUNTS)),
                ROWS_PER_STRIP: (SHORT, [16]),
            }
        )
    ),
    "no-geokeys": lambda t: t.with_fields({GEO_KEY_DIRECTORY: None}),
    "no-georeferencing": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: None, MODEL_PIXEL_SCALE: None, MODEL_TIEPOINT: None}
    ),
    "pixel-scale-zero": _set(MODEL_PIXEL_SCALE, DOUBLE, [0.0, 0.0, 0.0]),
    "pixel-scale-nan": _set(MODEL_PIXEL_SCALE, DOUBLE, [math.nan, math.nan, 0.0]),
    "pixel-scale-inf": _set(MODEL_PIXEL_SCALE, DOUBLE, [math.inf, 0.05, 0.0]),
    "pixel-scale-tiny": _set(MODEL_PIXEL_SCALE, DOUBLE, [5e-324, 5e-324, 0.0]),
    "pixel-scale-huge": _set(MODEL_PIXEL_SCALE, DOUBLE, [1e300, 1e300, 0.0]),
    "tiepoint-nan": _set(MODEL_TIEPOINT, DOUBLE, [0.0, 0.0, 0.0, math.nan, math.nan, 0.0]),
    "tiepoint-huge": _set(MODEL_TIEPOINT, DOUBLE, [0.0, 0.0, 0.0, 1e308, -1e308, 0.0]),
    "tiepoints-many": _set(MODEL_TIEPOINT, DOUBLE, [float(i % 7) for i in range(6 * 1000)]),
    "transformation-singular": _set(MODEL_TRANSFORMATION, DOUBLE, [0.0] * 16),
    "transformation-nan": _set(MODEL_TRANSFORMATION, DOUBLE, [math.nan] * 16),
    "geographic-crs": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 4326])}
    ),
    "geographic-huge-pixels": lambda t: t.with_fields(
        {
            GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 4326]),
            MODEL_PIXEL_SCALE: (DOUBLE, [10.0, 10.0, 0.0]),
            MODEL_TIEPOINT: (DOUBLE, [0.0, 0.0, 0.0, -180.0, 90.0, 0.0]),
        }
    ),
    "user-defined-crs-empty": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32767])}
    ),
    "engineering-crs": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 1, 1024, 0, 1, 32767])}
    ),
    "geocentric-crs": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 2, 1024, 0, 1, 3, 2048, 0, 1, 4978])}
    ),
    "unknown-epsg": lambda t: t.with_fields(
        {GEO_KEY_DIRECTORY: (SHORT, [1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32000])}
    ),
    "feet-units": lambda t: t.with_fields(
        {
            GEO_KEY_DIRECTORY: (
                SHORT,
                t.values(GEO_KEY_DIRECTORY)[:3]
                + [t.values(GEO_KEY_DIRECTORY)[3] + 1]
                + t.values(GEO_KEY_DIRECTORY)[4:]
                + [3076, 0, 1, 9002],
            )
        }
    ),
}


def structured(t: Tiff, rng: random.Random, deck: list[str] | None = None) -> Mutation:
    """The first case of ``deck`` (default: a random order) that applies to the file."""
    if deck is None:
        deck = rng.sample(list(STRUCTURED), len(STRUCTURED))
    for name in deck:
        data = STRUCTURED[name](t)
        if data is not None and data != t.data:
            return data, name
    raise AssertionError("no structured case applies")


def structured_deck(seed: int, index: int) -> list[str]:
    """Structured cases in an order drawn from the seed, rotated by the case's round.

    Successive structured cases of a campaign go through every name before one repeats.
    """
    names = list(STRUCTURED)
    random.Random(f"tiler-fuzz-deck:{seed}").shuffle(names)
    start = (index // len(KINDS)) % len(names)
    return names[start:] + names[:start]


MUTATORS: dict[str, Callable[[Tiff, random.Random], Mutation]] = {
    "flip-structure": flip_structure,
    "flip-data": flip_data,
    "flip-any": flip_any,
    "truncate": truncate,
    "truncate-ifd": truncate_ifd,
    "tag-absurd": tag_absurd,
    "geokeys": geokeys,
    "structured": structured,
}
KINDS = list(MUTATORS)


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    seed: int
    index: int
    base: str
    kind: str
    description: str
    data: bytes = field(repr=False)
    label: str = ""  # the name of a case not drawn from a seed

    @property
    def name(self) -> str:
        return self.label or f"case-s{self.seed}-{self.index:05d}-{self.kind}"

    @property
    def replay(self) -> str:
        if self.label:
            return (
                f"python -m tiler.cli run {self.name}.tif out --scheduler sync --chunk-size 32 -q"
            )
        return f"python tests/fuzz_tiff.py --seed {self.seed} --case {self.index}"


def make_case(seed: int, index: int, bases: dict[str, bytes]) -> Case:
    """Case ``index`` of campaign ``seed``.

    Kinds in turn; each round of kinds shifts the base files by one, so that
    ``len(KINDS) * len(BASES)`` successive cases pair every kind with every base.
    """
    kind = KINDS[index % len(KINDS)]
    names = list(BASES)
    base = names[(index % len(KINDS) + index // len(KINDS)) % len(names)]
    rng = random.Random(f"tiler-fuzz:{seed}:{index}")
    tiff = Tiff.parse(bases[base])
    for _ in range(100):  # a draw that changes nothing (a value set to itself) is drawn again
        if kind == "structured":
            data, description = structured(tiff, rng, structured_deck(seed, index))
        else:
            data, description = MUTATORS[kind](tiff, rng)
        if data != bases[base]:
            return Case(seed, index, base, kind, description, data)
    raise AssertionError(f"mutation {kind} keeps leaving {base} unchanged: {description}")


def control_case(base: str, bases: dict[str, bytes]) -> Case:
    """A base file as it is: must run to completion."""
    return Case(-1, -1, base, "control", f"unmutated {base}", bases[base], f"control-{base}")


def named_case(name: str, base: str, bases: dict[str, bytes]) -> Case | None:
    """The structured case ``name`` applied to ``base`` (``None`` where it does not apply)."""
    data = STRUCTURED[name](Tiff.parse(bases[base]))
    if data is None:
        return None
    return Case(-1, -1, base, "structured", name, data, f"structured-{name}-{base}")


# ---------------------------------------------------------------------------
# Running a case and judging its outcome
# ---------------------------------------------------------------------------

OK, ERROR = "ok", "error"
FAILURES = (
    "timeout",
    "signal",
    "memory",
    "traceback",
    "noisy-error",
    "bad-error",
    "bad-exit",
    "incomplete",
)
STATUSES = (OK, ERROR, *FAILURES)
OUTPUTS = ("labels.zarr", "objects.parquet", "run.json")


@dataclass
class Outcome:
    case: Case
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    problem: str = ""

    @property
    def failed(self) -> bool:
        return self.status not in (OK, ERROR)

    def record(self) -> dict:
        c = self.case
        return dict(
            case=c.name,
            seed=c.seed,
            index=c.index,
            base=c.base,
            kind=c.kind,
            mutation=c.description,
            status=self.status,
            returncode=self.returncode,
            seconds=round(self.seconds, 2),
            problem=self.problem,
        )

    def report(self) -> str:
        c = self.case
        tail = "\n".join(self.stderr.splitlines()[-40:])
        return (
            f"{c.name}: {self.status} ({self.problem})\n"
            f"  seed {c.seed}, case {c.index}, base {c.base}, mutation {c.kind}: {c.description}\n"
            f"  exit status {self.returncode}, {self.seconds:.1f} s\n"
            f"  replay: {c.replay}\n"
            f"  stderr:\n{_indent(tail)}\n"
        )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def judge(
    returncode: int | None, stdout: str, stderr: str, src: Path, dst: Path, *, timed_out: bool
) -> tuple[str, str]:
    """``(status, problem)`` of one run of ``tiler run src dst``."""
    if timed_out:
        return "timeout", "wall-time limit"
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return "signal", f"killed by {name}"
    if "MemoryError" in stderr or "std::bad_alloc" in stderr:
        return "memory", "out of memory under the address-space limit"
    if "Traceback" in stderr:
        lines = [line for line in stderr.splitlines() if line and not line.startswith(" ")]
        return "traceback", lines[-1] if lines else "traceback"
    if returncode == 0:
        missing = [name for name in OUTPUTS if not (dst / name).exists()]
        if missing:
            return "incomplete", f"exit 0 without {', '.join(missing)}"
        try:
            manifest = json.loads((dst / "run.json").read_text())
        except (OSError, ValueError) as exc:
            return "incomplete", f"run.json unreadable: {exc}"
        if manifest.get("complete") is not True:
            return "incomplete", "run.json does not say complete"
        return OK, ""
    if returncode is None or not 1 <= returncode <= 5:
        return "bad-exit", f"exit status {returncode}"
    lines = stderr.strip().splitlines()
    if len(lines) > 1 and lines[-1].startswith("tiler: error: "):
        return "noisy-error", f"{len(lines) - 1} more line(s) on stderr, first: {lines[0][:300]}"
    if len(lines) != 1:
        return "bad-error", f"{len(lines)} lines on stderr"
    if not lines[0].startswith("tiler: error: "):
        return "bad-error", f"not a 'tiler: error:' line: {lines[0][:200]}"
    if src.name not in lines[0]:
        return "bad-error", f"the line does not name {src.name}: {lines[0][:300]}"
    if stdout.strip():
        return "bad-error", f"stdout not empty: {stdout[:200]}"
    if (dst / "run.json").exists():
        return "bad-error", "run.json left in DST"
    return ERROR, lines[0]


def _limit(memory_bytes: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_case(
    case: Case,
    workdir: Path,
    *,
    timeout: float = 60.0,
    memory_mb: int = 2048,
    keep: bool = False,
) -> Outcome:
    """Run ``tiler run`` on the case's file in a fresh interpreter, under the limits."""
    folder = workdir / case.name
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"{case.name}.tif"
    src.write_bytes(case.data)
    dst = folder / "out"
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    env["PYTHONFAULTHANDLER"] = "1"  # a hang killed by SIGABRT shows where it was
    command = [sys.executable, "-m", "tiler.cli", "run", str(src), str(dst)]
    command += ["--scheduler", "sync", "--chunk-size", "32", "-q"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_limit(memory_mb << 20),
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    seconds = time.perf_counter() - started
    stdout = out.decode(errors="replace")
    stderr = err.decode(errors="replace")
    status, problem = judge(proc.returncode, stdout, stderr, src, dst, timed_out=timed_out)
    outcome = Outcome(case, status, proc.returncode, stdout, stderr, seconds, problem)
    if not keep and not outcome.failed:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome


def run_cases(
    cases: Iterable[Callable[[], Case]],
    workdir: Path,
    *,
    jobs: int = 2,
    on_outcome: Callable[[Outcome], None] | None = None,
    **limits,
) -> list[Outcome]:
    """Build and run cases (given as thunks) ``jobs`` at a time; outcomes in case order."""

    def build_and_run(thunk: Callable[[], Case]) -> Outcome:
        return run_case(thunk(), workdir, **limits)

    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(build_and_run, thunk): i for i, thunk in enumerate(cases)}
        outcomes: list[Outcome | None] = [None] * len(futures)
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    return outcomes  # type: ignore[return-value]


def save_failure(outcome: Outcome, folder: Path) -> Path:
    """The failing file and its report (``.txt``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{outcome.case.name}.tif"
    path.write_bytes(outcome.case.data)
    path.with_suffix(".txt").write_text(outcome.report() + f"\nfull stderr:\n{outcome.stderr}")
    return path


def summary(outcomes: list[Outcome], by: Callable[[Case], str] = lambda c: c.kind) -> str:
    """A table of outcomes per mutation kind (or ``by``), and the clean errors' exit statuses."""
    groups = sorted({by(o.case) for o in outcomes}, key=lambda g: (g not in KINDS, g))
    if set(groups) <= {"control", *KINDS}:
        groups = [k for k in ["control", *KINDS] if k in groups]
    counts = Counter((by(o.case), o.status) for o in outcomes)
    columns = [s for s in STATUSES if s in (OK, ERROR) or any(o.status == s for o in outcomes)]
    width = max(len(g) for g in [*groups, "total", "kind"])
    header = f"{'kind':<{width}}  " + "  ".join(f"{c:>11}" for c in columns) + f"  {'cases':>6}"
    rows = [header, "-" * len(header)]
    for group in [*groups, "total"]:
        cells = [
            sum(counts[(g, c)] for g in groups) if group == "total" else counts[(group, c)]
            for c in columns
        ]
        rows.append(
            f"{group:<{width}}  " + "  ".join(f"{n:>11}" for n in cells) + f"  {sum(cells):>6}"
        )
    noisy = sum(1 for o in outcomes if o.status == OK and o.stderr.strip())
    rows.append(f"successes with something on stderr (GDAL warnings): {noisy}")
    codes = Counter(o.returncode for o in outcomes if o.status == ERROR)
    rows.append(
        "clean errors by exit status: " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
    )
    return "\n".join(rows)


# ---------------------------------------------------------------------------
# The command line: a campaign, or one case replayed
# ---------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=_env_int("FUZZ_CASES", 2000))
    parser.add_argument("--seed", type=int, default=_env_int("FUZZ_SEED", 1))
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--case", type=int, default=None, help="replay this one case")
    parser.add_argument("--kind", choices=KINDS, action="append", help="only these kinds")
    parser.add_argument(
        "--structured",
        choices=["all", *STRUCTURED],
        action="append",
        metavar="NAME",
        help="run this structured case ('all': every one) on every base file instead",
    )
    parser.add_argument("--jobs", type=int, default=_env_int("FUZZ_JOBS", os.cpu_count() or 2))
    parser.add_argument("--timeout", type=float, default=_env_int("FUZZ_TIMEOUT", 60))
    parser.add_argument("--memory-mb", type=int, default=_env_int("FUZZ_MEMORY_MB", 2048))
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"))
    parser.add_argument(
        "--log", type=Path, default=None, help="append every outcome to this file (JSON lines)"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="tiler-fuzz-"))
    try:
        bases = make_bases(workdir / "bases")
        limits = dict(timeout=args.timeout, memory_mb=args.memory_mb)
        if args.case is not None:
            case = make_case(args.seed, args.case, bases)
            print(f"{case.name}: base {case.base}, {case.kind}: {case.description}")
            outcome = run_case(case, workdir, **limits)
            print(outcome.report() + ("" if outcome.failed else f"  {outcome.status}"))
            if outcome.failed:
                print(f"saved: {save_failure(outcome, args.out)}")
            return 1 if outcome.failed else 0
        if args.structured:
            names = list(STRUCTURED) if "all" in args.structured else args.structured
            cases = [named_case(n, b, bases) for n in names for b in BASES]
            thunks = [lambda c=c: c for c in cases if c is not None]
            what = f"{len(thunks)} structured cases"
        else:
            indices = _indices(args.first, args.cases, args.kind)
            thunks = [lambda i=i: make_case(args.seed, i, bases) for i in indices]
            what = f"seed {args.seed}, {len(thunks)} cases from {args.first}"
        print(
            f"fuzzing tiler run: {what}, {args.jobs} jobs, "
            f"limits {args.timeout:g} s and {args.memory_mb} MiB per case",
            flush=True,
        )
        started = time.perf_counter()
        done = []

        def progress(outcome: Outcome) -> None:
            done.append(outcome)
            if args.log is not None:
                with args.log.open("a") as log:
                    log.write(json.dumps(outcome.record()) + "\n")
            if outcome.failed:
                path = save_failure(outcome, args.out)
                print(f"FAIL {outcome.report()}  saved: {path}", flush=True)
            if len(done) % 100 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {len(done)}/{len(thunks)} cases, {elapsed:.0f} s", flush=True)

        outcomes = run_cases(thunks, workdir, jobs=args.jobs, on_outcome=progress, **limits)
        print()
        print(
            summary(outcomes, (lambda c: c.description) if args.structured else (lambda c: c.kind))
        )
        failed = [o for o in outcomes if o.failed]
        print(
            f"\n{len(outcomes)} cases in {time.perf_counter() - started:.0f} s: "
            f"{len(failed)} failure(s)" + (f", saved in {args.out}/" if failed else "")
        )
        return 1 if failed else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _indices(first: int, n: int, kinds: list[str] | None) -> list[int]:
    """``n`` case indices from ``first``, only of ``kinds`` if given."""
    wanted = {KINDS.index(k) for k in kinds or KINDS}
    indices = (i for i in itertools.count(first) if i % len(KINDS) in wanted)
    return list(itertools.islice(indices, n))


if __name__ == "__main__":
    sys.exit(main())
