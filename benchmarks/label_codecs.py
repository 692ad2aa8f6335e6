"""Codecs and sharding for ``labels.zarr``: write and read cost of real label tiles.

    python -m benchmarks.label_codecs DST/labels.zarr --tiles 8 --repeat 3

Takes ``--tiles`` full chunks (2048², uint32) of a finished run's label store
(the most objects first) and, for each candidate layout, writes each tile as
the write pass does (open the array, assign the tile's chunk-aligned region)
into a fresh local store, then reads a small region (``--region``², inside
one tile) from a freshly opened array. Reports the best of ``--repeat`` per
layout: write ms per tile, MB/s of raw labels, bytes on disk per tile and
the ratio to zarr's default (zstd level 0), and the small read in ms. Codecs
run inside zarr (its thread pool), as in a run; a single thread is used for
the timing (``threading.max_workers`` 1) since the run's other workers hold
the other cores. Each tile that has a label is written with zarr's
``write_empty_chunks`` on, as :func:`tiler.masks.write_chunk` does; the row
marked "zarr's empty-chunk test" leaves zarr to test each chunk for being
all zero, as tiler did before (slow for uint32: see write_chunk).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

CHECKED = ", zarr's empty-chunk test"
# name -> create_array keyword arguments (the layout of the labels array)
LAYOUTS: dict[str, dict[str, Any]] = {
    "zstd0 (default)": {"compressors": [ZstdCodec(level=0)]},
    "zstd1": {"compressors": [ZstdCodec(level=1)]},
    "zstd3": {"compressors": [ZstdCodec(level=3)]},
    "zstd-1": {"compressors": [ZstdCodec(level=-1)]},
    "blosc-zstd1-shuffle": {"compressors": [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")]},
    "blosc-zstd1-noshuffle": {
        "compressors": [BloscCodec(cname="zstd", clevel=1, shuffle="noshuffle")]
    },
    "blosc-lz4-shuffle": {"compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]},
    "blosc-lz4-bitshuffle": {
        "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]
    },
    "blosc-lz4-noshuffle": {
        "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle")]
    },
    "none": {"compressors": None},
}
SHARDED = (256, 512, 1024)  # inner chunk sides tried inside a shard of one tile


def tiles_of(store: str, count: int) -> list[np.ndarray]:
    """The ``count`` full chunks of the label array holding the most labelled pixels."""
    labels = zarr.open_array(store, mode="r")
    side = labels.chunks[0]
    rows, cols = labels.shape[0] // side, labels.shape[1] // side
    picks = [(r, c) for r in range(rows) for c in range(cols)]
    step = max(1, len(picks) // (count * 4))
    candidates = [
        labels[r * side : (r + 1) * side, c * side : (c + 1) * side] for r, c in picks[::step]
    ]
    candidates.sort(key=lambda t: -int(np.count_nonzero(t)))
    return candidates[:count]


def measure(
    name: str, layout: dict[str, Any], tiles: list[np.ndarray], region: int, zarr_check: bool
) -> dict:
    side = tiles[0].shape[0]
    root = Path(tempfile.mkdtemp(prefix="codecs-"))
    try:
        path = str(root / "labels")
        zarr.create_array(
            path, shape=(side, side * len(tiles)), dtype=np.uint32, fill_value=0,
            **({"chunks": (side, side)} | layout),
        )  # fmt: skip
        started = time.perf_counter()
        for i, tile in enumerate(tiles):
            array = zarr.open_array(path, mode="r+")
            if not zarr_check and tile.any():  # as tiler.masks.write_chunk
                array = array.with_config({"write_empty_chunks": True})
            array[:, i * side : (i + 1) * side] = tile
        write = (time.perf_counter() - started) / len(tiles)
        size = sum(p.stat().st_size for p in Path(path).rglob("*") if p.name != "zarr.json")
        started = time.perf_counter()
        for i in range(len(tiles)):
            x = i * side + side // 2
            got = zarr.open_array(path, mode="r")[side // 2 : side // 2 + region, x : x + region]
        read = (time.perf_counter() - started) / len(tiles)
        whole = zarr.open_array(path, mode="r")[:, :]
        assert all(
            np.array_equal(whole[:, i * side : (i + 1) * side], t) for i, t in enumerate(tiles)
        ), name
        assert got.shape == (region, region)
        return {"write": write, "size": size / len(tiles), "read": read}
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a label array: DST/labels.zarr/labels")
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--region", type=int, default=256)
    args = parser.parse_args()
    zarr.config.set({"threading.max_workers": 1})
    tiles = tiles_of(args.store, args.tiles)
    side = tiles[0].shape[0]
    layouts = {f"zstd0 (default){CHECKED}": LAYOUTS["zstd0 (default)"], **LAYOUTS}
    for inner in SHARDED:
        for base in ("zstd0 (default)", "zstd1", "blosc-lz4-shuffle"):
            layouts[f"shard {side}/{inner} {base}"] = {
                **LAYOUTS[base], "shards": (side, side), "chunks": (inner, inner),
            }  # fmt: skip
    best: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleaved: every layout sees the same load
        for name, layout in layouts.items():
            got = measure(name.removesuffix(CHECKED), layout, tiles, args.region, CHECKED in name)
            if name in best:
                got = {k: min(v, best[name][k]) if k != "size" else v for k, v in got.items()}
            best[name] = got
    raw = tiles[0].nbytes
    default = best["zstd0 (default)"]["size"]
    print(f"{len(tiles)} tiles {side}² uint32, {raw / 1e6:.1f} MB raw each; best of {args.repeat}")
    print(f"| layout | write ms/tile | MB/s | KB/tile | × default size | read {args.region}² ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in best.items():
        print(
            f"| {name} | {r['write'] * 1e3:.1f} | {raw / r['write'] / 1e6:.0f} | "
            f"{r['size'] / 1e3:.0f} | {r['size'] / default:.2f} | {r['read'] * 1e3:.1f} |"
        )


if __name__ == "__main__":
    main()
