"""`tiler yield features` at scale: time and peak memory of :func:`tiler.yield_.cells.features`.

    python -m benchmarks.yield_features [--size 32768] [--cell 5] [--run RUN]

Uses the finished run of ``make bench-scale`` for that size
(``benchmarks/scratch/runs/NxN/tiler-NxN``), else runs tiler on the cached
synthetic field of that size first (``benchmarks/scratch/field-NxN.tif``,
generated if missing); ``--run`` names any finished run instead. The features
are computed in a fresh process and printed as one JSON line: wall seconds
(the pass over the image, the object table, the stand, in all), that
process's peak resident memory (VmHWM, reset after the imports), the cells,
and the seconds to write ``cells.parquet`` and ``features.tif``. Target at
1 GP (32768 x 32768, 5 m cells): 60 s or less on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench import SCRATCH, image_shape, synthetic_image
from benchmarks.stand_scale import _peak_mib


def finished_run(shape: tuple[int, int], chunk: int) -> Path:
    """The bench-scale run of ``shape``, or one made now from the cached synthetic field."""
    h, w = shape
    made = SCRATCH / "runs" / f"{h}x{w}" / f"tiler-{h}x{w}"
    if (made / "run.json").is_file():
        return made
    import tiler

    ours = SCRATCH / "runs" / "yield" / f"{h}x{w}"
    if not (ours / "run.json").is_file():
        src, _ = synthetic_image(shape)
        print(f"running tiler on {src} ...", file=sys.stderr)
        tiler.run(src, ours, chunk_size=chunk, overwrite=True)
    return ours


def measure(run: Path, cell_m: float, scheduler: str, window: int) -> dict:
    """Compute (and write) the features of ``run`` in this fresh process."""
    from tiler.yield_ import cells, cells_io

    # A forked child inherits its parent's peak (VmHWM): reset it, where Linux can.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    imported = _peak_mib()
    started = time.perf_counter()
    found = cells.features(run, cell_m, scheduler=scheduler, window=window)
    seconds = time.perf_counter() - started
    peak = _peak_mib()
    with tempfile.TemporaryDirectory() as out:
        mark = time.perf_counter()
        cells_io.write(found, out)
        written = time.perf_counter() - mark
    h, w = found.grid.image_shape
    return {
        "image": f"{h}x{w}", "megapixels": round(h * w / 1e6, 1), "cell_m": found.grid.cell_m,
        "k": found.grid.k, "cells": len(found.table), "window": window, "scheduler": scheduler,
        "seconds": round(seconds, 2),
        "parts_seconds": {k: round(v, 2) for k, v in found.seconds.items()},
        "write_seconds": round(written, 2), "peak_rss_mib_imports": imported,
        "peak_rss_mib": peak,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="32768", help="image size N or HxW (default 32768)")
    parser.add_argument("--run", type=Path, default=None, help="a finished run instead")
    parser.add_argument("--cell", type=float, default=5.0, help="cell side in metres")
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--window", type=int, default=2048, help="pass window side (px)")
    parser.add_argument("--chunk", type=int, default=2048, help="chunk size of a run made here")
    parser.add_argument("--out", type=Path, default=None, help="also write yield-features.json")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: only the features in this process
        print(json.dumps(measure(args.run, args.cell, args.scheduler, args.window)))
        return
    run = args.run or finished_run(image_shape(0, args.size), args.chunk)
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.yield_features", "--measure", "--run", str(run),
         "--cell", str(args.cell), "--scheduler", args.scheduler, "--window", str(args.window)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = {"run": str(run), **json.loads(child.stdout.splitlines()[-1])}
    print(json.dumps(result))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "yield-features.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
