"""Does tiler scale? tiler alone on a large synthetic image and on the 64 MP one.

    python -m benchmarks.scale --size 32768 --base-size 8000 --chunk 2048 \\
        --out benchmarks/results

Runs tiler (defaults: threads in the process, one per core) on both images,
one after the other, each in its own measured process, and writes
``scale-<N>mp.md`` and ``.json``. The targets: the large image's peak memory
within 20 % of the base run's, and its throughput within 20 %. No reference or
peer runs here: at a gigapixel the whole-image reference does not fit in memory.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.bench import (
    HERE,
    SCRATCH,
    Job,
    gib,
    image_shape,
    machine,
    other_load,
    run_job,
    synthetic_image,
    version_line,
    write_report,
)
from benchmarks.tenfold import COLS, ROWS, tenfold

TOLERANCE = 0.20


def verdict(ok: bool) -> str:
    return "within target" if ok else "OUTSIDE target"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--megapixels", type=float, default=1074.0, help="large image size")
    parser.add_argument("--size", help="large image size instead: N or HxW (e.g. 32768)")
    parser.add_argument("--base-megapixels", type=float, default=64.0)
    parser.add_argument("--base-size", help="base image size instead: N or HxW (e.g. 8000)")
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--tenfold",
        action="store_true",
        help="also the large image placed ten times by a VRT (benchmarks/tenfold.py): 10x its "
        "pixels, its MP/s within 10 %% of the large image's, peak RSS <= 1.5 GiB",
    )
    args = parser.parse_args(argv)

    shapes = [
        image_shape(args.base_megapixels, args.base_size),
        image_shape(args.megapixels, args.size),
    ]
    rows: list[dict[str, Any]] = []
    images = []
    sources = [synthetic_image(shape) for shape in shapes]
    if args.tenfold:
        vrt = tenfold(sources[1][0], SCRATCH / f"tenfold-{shapes[1][0]}x{shapes[1][1]}.vrt")
        shapes.append((shapes[1][0] * ROWS, shapes[1][1] * COLS))
        sources.append((vrt, 0.0))
    for shape, (src, gen_seconds) in zip(shapes, sources, strict=True):
        images.append({"shape": list(shape), "path": str(src), "bytes": src.stat().st_size,
                       "generation_seconds": gen_seconds})  # fmt: skip
        workdir = SCRATCH / "runs" / f"{shape[0]}x{shape[1]}"
        workdir.mkdir(parents=True, exist_ok=True)
        job = Job(f"tiler {shape[0]}x{shape[1]}", "tiler", sys.executable)
        row = run_job(job, src, args.chunk, workdir)
        row["shape"] = list(shape)
        rows.append(row)

    base, large = rows[:2]
    m = machine()
    lines = [
        f"- Machine: {m['cores']} cores, {m['ram_bytes'] / 2**30:.1f} GiB RAM, {m['cpu']}",
        f"- Versions: {version_line(rows)}",
        f"- chunk {args.chunk}; tiler defaults (threads in the process, one per core); "
        "each run in its own measured process",
        "",
        "| image | MP | GeoTIFF | wall s | MP/s | MP/s after start | peak RSS (tree) "
        "| peak RSS + /dev/shm | other CPU load | objects | threshold |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, image in zip(rows, images, strict=True):
        h, w = row["shape"]
        if not row["ok"]:
            lines.append(f"| {h} x {w} | {h * w / 1e6:.0f} | failed (exit {row['returncode']}) "
                         "| | | | | | | | |")  # fmt: skip
            continue
        lines.append(
            f"| {h} x {w} | {h * w / 1e6:.0f} | {image['bytes'] / 2**20:.0f} MiB "
            f"| {row['seconds']:.1f} | {row['megapixels_per_second']:.2f} "
            f"| {row['megapixels_per_second_after_startup']:.2f} | {gib(row['peak_rss'])} "
            f"| {gib(row['peak_rss_plus_shm'])} | {100 * other_load(row):.0f} % "
            f"| {row['n_objects']} | {row['threshold']:.10g} |"
        )
    summary: dict[str, Any] = {}
    if base["ok"] and large["ok"]:
        memory = large["peak_rss"] / base["peak_rss"]
        memory_shm = large["peak_rss_plus_shm"] / base["peak_rss_plus_shm"]
        speed = large["megapixels_per_second"] / base["megapixels_per_second"]
        key = "megapixels_per_second_after_startup"
        speed_after = large[key] / base[key]
        summary = {
            "peak_rss_ratio": memory,
            "peak_rss_plus_shm_ratio": memory_shm,
            "throughput_ratio": speed,
            "throughput_ratio_after_startup": speed_after,
            "memory_within_target": memory <= 1 + TOLERANCE,
            "throughput_within_target": speed >= 1 - TOLERANCE,
        }
        lines += [
            "",
            f"- Peak RSS, large / base: {memory:.2f} ({verdict(memory <= 1 + TOLERANCE)}: "
            f"<= {1 + TOLERANCE:.2f}); with /dev/shm: {memory_shm:.2f}",
            f"- Throughput, large / base: {speed:.2f} ({verdict(speed >= 1 - TOLERANCE)}: "
            f">= {1 - TOLERANCE:.2f}); after cluster start-up: {speed_after:.2f}",
        ]
    if args.tenfold and large["ok"] and rows[2]["ok"]:
        ten = rows[2]
        speed = ten["megapixels_per_second"] / large["megapixels_per_second"]
        summary.update(
            tenfold_throughput_ratio=speed,
            tenfold_peak_rss_gib=ten["peak_rss"] / 2**30,
            tenfold_within_target=speed >= 0.9 and ten["peak_rss"] <= 1.5 * 2**30,
        )
        lines.append(
            f"- Ten copies (a VRT, {images[2]['bytes']} bytes of XML) / large: throughput "
            f"{speed:.2f} ({verdict(speed >= 0.9)}: >= 0.90), peak RSS "
            f"{gib(ten['peak_rss'])} ({verdict(ten['peak_rss'] <= 1.5 * 2**30)}: <= 1.5 GiB; "
            "threads in one process: the driver and the tiles together)"
        )
    for row in rows:
        if row.get("warnings"):
            lines.append(f"- {row['label']}: warnings: " + "; ".join(row["warnings"][:3]))
        if not row["ok"]:
            lines.append(f"- {row['label']} failed: `{row['error'].splitlines()[-1]}`")

    h, w = shapes[1]
    mp = round(h * w / 1e6)
    title = f"Scaling: tiler on {h} x {w} ({mp} MP) against {shapes[0][0]} x {shapes[0][1]}"
    data = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": m,
        "chunk": args.chunk,
        "images": images,
        "summary": summary,
        "rows": rows,
    }
    text = write_report(args.out, f"scale-{mp}mp", title, lines, data)
    print()
    print(text)
    print(f"written: {args.out / f'scale-{mp}mp.md'} and .json")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
