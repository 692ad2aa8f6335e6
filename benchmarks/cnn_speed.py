"""Inference speed of the shipped tree model through `tiler run`, on this machine's cores.

    python -m benchmarks.cnn_speed --out benchmarks/results [--side 4096] [--repeat 2]

The input is real imagery at the model's pixel size: the 8 NAIP tiles of
``tests/data/urban_trees_naip`` (R, G, B, NIR, 0.6 m) laid side by side and
repeated into a ``side`` x ``side`` GeoTIFF (deflate, 512-px blocks). Each
run is a whole `tiler run --preset tree-crowns` process (imports, the
default scheduler, the confidence pass, peaks, the writes), best of
``repeat``; megapixels per second count the image's pixels. The peak
resident memory of the process tree is sampled every 0.1 s (psutil).
Writes ``cnn-speed.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
import rasterio

ROOT = Path(__file__).resolve().parent.parent
NAIP = ROOT / "tests" / "data" / "urban_trees_naip"


def mosaic(path: Path, side: int) -> Path:
    """A side x side 4-band GeoTIFF of the NAIP tiles, repeated (their band 4 as NIR)."""
    tiles = []
    for tif in sorted(NAIP.glob("*.tif")):
        with rasterio.open(tif) as ds:
            tiles.append(ds.read())
            profile = ds.profile
    row = np.concatenate(tiles, axis=2)  # 4 x 256 x 2048
    reps = (-(-side // row.shape[1]), -(-side // row.shape[2]))
    image = np.tile(row, (1, *reps))[:, :side, :side]
    profile.update(
        width=side, height=side, count=4, tiled=True, blockxsize=512, blockysize=512,
        compress="deflate", photometric="RGB", alpha="unspecified",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(image)
        ds.colorinterp = [rasterio.enums.ColorInterp.undefined] * 4
    return path


def timed_run(src: Path, dst: Path) -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (GiB) of one `tiler run` process tree."""
    command = [sys.executable, "-m", "tiler.cli", "run", str(src), str(dst), "--preset",
               "tree-crowns", "-q", "--overwrite"]  # fmt: skip
    started = time.perf_counter()
    proc = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read())
    run = json.loads((dst / "run.json").read_text())
    return seconds, peak / 2**30, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tiler-cnn-speed-") as tmp:
        src = mosaic(Path(tmp) / "naip-mosaic.tif", args.side)
        runs = [timed_run(src, Path(tmp) / "out") for _ in range(args.repeat)]
    seconds, peak, run = min(runs, key=lambda r: r[0])
    mp = args.side**2 / 1e6
    inside = run["timings_seconds"]["total"]
    lines = [
        "# Inference speed: the shipped tree model through `tiler run --preset tree-crowns`",
        "",
        f"- Date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        f"- Input: {args.side} x {args.side} px ({mp:.1f} MP), 4 bands, 0.6 m (NAIP tiles, "
        "repeated)",
        "",
        "| runs | best wall s | MP/s (whole process) | in the run (s) | MP/s (in the run) "
        "| peak RSS (process tree) | objects |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.repeat} | {seconds:.1f} | **{mp / seconds:.2f}** | {inside:.1f} "
        f"| **{mp / inside:.2f}** | {peak:.2f} GiB | {run['object_count']} |",
        "",
        f"All runs (s): {', '.join(f'{r[0]:.1f}' for r in runs)}. Passes of the best (s): "
        f"{run['timings_seconds']}; the rest of the whole process is imports and the default "
        f"local cluster's start. Model: {run['config']['model']}.",
        "",
    ]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cnn-speed.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
