"""How much memory does the driver hold per object? tiler on images of dense small dots.

    python -m benchmarks.object_table --objects 1e6 1e7 --out benchmarks/results

Each image is a single-band GeoTIFF (deflate, 512 px internal tiles) holding a
regular grid of 3 x 3 bright dots every 6 px, so one object per 36 pixels:
10**6 objects take 36 MP and 10**7 take 360 MP. It is written window by
window, so making it needs little memory, and it compresses to almost nothing.

tiler runs on it with a pipeline that keeps every dot (band 1, threshold 100,
no refinement) on a LocalCluster of two worker processes (``--workers 2``):
the tasks run in the workers, so the peak resident set of the driver process
(``getrusage(RUSAGE_SELF)``, which counts no child) is what the stitching, the
look-up tables and the object table cost. A thread also samples the driver's
RSS every 10 ms and notes, at each log line (a pass ended) and at the end, the
RSS then and its peak since the line before, to tell where it grows. Each run
is its own process; its result is printed as one JSON line (and, with
``--out``, kept in ``object-table.json``); ``results/object-table.md`` reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEP = 6  # one 3 x 3 dot every STEP pixels in each direction
CONFIG = {"preprocess": [{"band": 1}], "threshold": 100, "connectivity": 2}


def dots_image(path: Path, objects: float) -> tuple[int, int]:
    """Write a square GeoTIFF of at least ``objects`` dots (3 x 3, value 200); its shape."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    side = int(np.ceil(np.sqrt(objects))) * STEP
    profile = {
        "driver": "GTiff",
        "height": side,
        "width": side,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32611",
        "transform": from_origin(500000.0, 4100000.0, 0.05, 0.05),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    band = 512  # rows written at a time
    within = (np.arange(side) % STEP) < 3
    with rasterio.open(path, "w", **profile) as ds:
        for top in range(0, side, band):
            h = min(band, side - top)
            block = np.zeros((h, side), dtype=np.uint8)
            rows = ((top + np.arange(h)) % STEP) < 3
            block[np.ix_(rows, within)] = 200
            ds.write(block[None], window=Window(0, top, side, h))
    return side, side


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Sampler:
    """The driver's RSS every 10 ms, in a thread: its peak between one mark and the next."""

    def __init__(self) -> None:
        # (what ended, RSS then, peak since the last mark, seconds since the sampler began)
        self.marks: list[tuple[str, int, int, float]] = []
        self.peak = _rss()
        self.start = time.perf_counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.01):
            self.peak = max(self.peak, _rss())

    def mark(self, line: str) -> None:
        now = _rss()
        self.marks.append((line, now, max(self.peak, now), time.perf_counter() - self.start))
        self.peak = now

    def stop(self, line: str) -> None:
        self.done.set()
        self.thread.join()
        self.mark(line)


def child(src: Path, dst: Path, chunk: int, workers: int) -> dict:
    """One run of tiler in this process; the driver's peak RSS, and its RSS between passes."""
    import tiler

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = Sampler()
    start = time.perf_counter()
    result = tiler.run(
        src, dst, CONFIG, chunk_size=chunk, workers=workers, threads_per_worker=1, log=sampler.mark
    )
    seconds = time.perf_counter() - start
    sampler.stop("the rest: stitching ends, object table, run.json")
    marks = sampler.marks
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "objects": result.n_objects,
        "shape": list(result.shape),
        "tiles": result.n_tiles,
        "chunk": chunk,
        "seconds": round(seconds, 2),
        "rss_before_run": before,
        "driver_peak_rss": peak,
        "rss_after": _rss(),
        "marks": marks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.object_table", description=__doc__)
    parser.add_argument("--objects", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--out", type=Path, default=None, help="folder for object-table.json")
    parser.add_argument("--child", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        src, dst = map(Path, args.child)
        print(json.dumps(child(src, dst, args.chunk, args.workers)))
        return 0
    rows = []
    for objects in args.objects:
        src = args.scratch / f"dots-{objects:.0e}.tif"
        if not src.exists():
            dots_image(src, objects)
        dst = args.scratch / f"dots-{objects:.0e}-out"
        command = [sys.executable, "-m", "benchmarks.object_table", "--chunk", str(args.chunk)]
        command += ["--workers", str(args.workers), "--child", str(src), str(dst)]
        subprocess.run(["rm", "-rf", str(dst)], check=True)
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["bytes_per_object"] = round(
            (row["driver_peak_rss"] - row["rss_before_run"]) / max(row["objects"], 1), 1
        )
        print(json.dumps({k: v for k, v in row.items() if k != "marks"}), flush=True)
        for line, rss, peak, at in row["marks"]:
            print(f"  {at:6.1f} s {rss / 2**20:6.0f} MiB, peak {peak / 2**20:6.0f} MiB to: {line}")
        rows.append(row)
    if args.out is not None:
        (args.out / "object-table.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
