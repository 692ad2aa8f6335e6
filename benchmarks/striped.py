"""Striped (untiled) GeoTIFF inputs: their cost, and the tiles that follow the strips.

    python -m benchmarks.striped --size 8000 --wide 4096x32768 --extra 2048x8000,1024x4096 \\
        --wide-extra 512x8192,128x32768 --repeats 3 --out benchmarks/results

For each image size: the cached tiled synthetic GeoTIFF of ``benchmarks.bench``
(512 x 512 tiles, deflate, predictor 2) and striped copies of the same pixels
(``rasterio.shutil.copy`` with ``tiled=False``, deflate, predictor 2: GDAL's
default strip height, which is one row for these widths, and for the square
image also 256-row strips). tiler runs (its defaults: an in-process
LocalCluster, one thread per core) on the tiled file with the default chunks,
on each striped file with the same 2048 x 2048 chunks and with the chunks
:func:`tiler.io.layout.plan_chunks` chooses, and on the GDAL-default striped
file with the ``--extra`` / ``--wide-extra`` shapes; each run in its own
monitored process, every configuration once per repeat, repeats interleaved.
Reports the best and all wall times, the best CPU time, MP/s, the ratios to
the tiled run, peak RSS, the load of other processes, and whether the labels
equal the tiled run's. Writes ``striped.md`` and ``striped.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import compare
from benchmarks.bench import (
    HERE,
    ROOT,
    SCRATCH,
    gib,
    image_shape,
    machine,
    other_load,
    synthetic_image,
    version_line,
    warning_lines,
    write_report,
)
from benchmarks.monitor import run_monitored

DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class Config:
    """One row of a table: a file and the chunks tiler runs it with."""

    label: str  # "tiled", "striped 1 row", ...
    tiles: str  # "2048 x 2048 (default)", ...
    src: Path
    chunks: tuple[int, int]

    @property
    def slug(self) -> str:
        return f"{self.src.stem}-{self.chunks[0]}x{self.chunks[1]}"


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def layout(path: Path) -> dict[str, Any]:
    import numpy as np
    import rasterio

    with rasterio.open(path) as ds:
        return {
            "shape": [ds.height, ds.width],
            "block_shape": list(ds.block_shapes[0]),
            "pixel_bytes": ds.count * np.dtype(ds.dtypes[0]).itemsize,
            "tiled": bool(ds.profile.get("tiled")),
            "bytes": path.stat().st_size,
        }


def rewrite(src: Path, dst: Path, **options: Any) -> float:
    """Copy ``src`` to ``dst`` with GTiff creation ``options`` (deflate, predictor 2); seconds."""
    import rasterio.shutil

    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    started = time.perf_counter()
    rasterio.shutil.copy(
        src, tmp, driver="GTiff", compress="deflate", predictor=2, BIGTIFF="IF_SAFER", **options
    )
    seconds = time.perf_counter() - started
    os.replace(tmp, dst)
    return seconds


def striped_copy(tiled: Path, rows_per_strip: int | None, log=print) -> Path:
    """The striped copy of ``tiled`` (``None``: GDAL's default strip height), made once."""
    suffix = "" if rows_per_strip is None else str(rows_per_strip)
    path = tiled.with_name(f"{tiled.stem}-striped{suffix}.tif")
    if not path.exists():
        what = "GDAL's default strips" if rows_per_strip is None else f"{rows_per_strip}-row strips"
        log(f"writing {path.relative_to(ROOT)} ({what})...")
        options = {} if rows_per_strip is None else {"blockysize": rows_per_strip}
        rewrite(tiled, path, tiled=False, **options)
    return path


def fix_seconds(striped: Path) -> float:
    """How long the suggested fix (rewriting the striped file tiled) takes, on this machine."""
    out = SCRATCH / "runs" / "striped" / f"{striped.stem}-retiled.tif"
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = rewrite(striped, out, tiled=True, blockxsize=512, blockysize=512)
    out.unlink()
    return seconds


def configs_for(
    shape: tuple[int, int], strips: list[int | None], extra: list[tuple[int, int]], log=print
) -> tuple[list[Config], list[dict[str, Any]]]:
    """The runs for one image size, and a description of its files."""
    from tiler.io.layout import plan_chunks

    tiled, _ = synthetic_image(shape, log=log)
    square = (DEFAULT_CHUNK, DEFAULT_CHUNK)
    configs = [Config("tiled (512 x 512 blocks)", "2048 x 2048 (default)", tiled, square)]
    files = [{"role": "tiled", "path": str(tiled), **layout(tiled)}]
    for rows_per_strip in strips:
        path = striped_copy(tiled, rows_per_strip, log=log)
        info = layout(path)
        h, w = info["shape"]
        rps = info["block_shape"][0]
        plan = plan_chunks(
            h,
            w,
            tuple(info["block_shape"]),
            DEFAULT_CHUNK,
            explicit=False,
            pixel_bytes=info["pixel_bytes"],
        )
        label = f"striped, {rps}-row strips" + (" (GDAL default)" if rows_per_strip is None else "")
        files.append(
            {
                "role": label,
                "path": str(path),
                **info,
                "planned_chunks": plan.chunks,
                "warning": plan.warning,
            }
        )
        configs.append(Config(label, "2048 x 2048 (default)", path, square))
        if plan.chunks != square:
            tiles = f"{plan.chunks[0]} x {plan.chunks[1]} (plan_chunks)"
            configs.append(Config(label, tiles, path, plan.chunks))
        if rows_per_strip is None:
            configs += [Config(label, f"{r} x {c} (compared)", path, (r, c)) for r, c in extra]
    return configs, files


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


def child(src: Path, dst: Path, chunks: tuple[int, int], result: Path) -> int:
    """One run in this process: ``benchmarks.run_one.run_tiler`` plus its CPU time."""
    from benchmarks.run_one import run_tiler, versions

    dst.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    row = run_tiler(src, dst, chunks)
    after = resource.getrusage(resource.RUSAGE_SELF)
    row["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row["versions"] = versions()
    result.write_text(json.dumps(row, indent=2))
    return 0


def run_config(config: Config, workdir: Path, log=print) -> dict[str, Any]:
    dst, result, log_file = (
        workdir / config.slug,
        workdir / f"{config.slug}.json",
        workdir / f"{config.slug}.log",
    )
    shutil.rmtree(dst, ignore_errors=True)
    result.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.striped",
        "--child",
        "--src",
        str(config.src),
        "--dst",
        str(dst),
        "--chunks",
        str(config.chunks[0]),
        str(config.chunks[1]),
        "--result",
        str(result),
    ]
    measured = run_monitored(cmd, log=log_file, cwd=ROOT, env={**os.environ})
    row: dict[str, Any] = measured.to_dict()
    row["log"] = str(log_file)
    row["warnings"] = warning_lines(log_file)
    if measured.returncode == 0 and result.exists():
        row.update(json.loads(result.read_text()), ok=True)
        log(
            f"  {config.label}, {config.tiles}: {row['seconds']:.2f} s wall, "
            f"{row['cpu_seconds']:.2f} s CPU, other load {100 * other_load(row):.0f} %"
        )
    else:
        row["ok"] = False
        tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
        row["error"] = "\n".join(tail)
        log(f"  {config.label}, {config.tiles}: FAILED (exit {measured.returncode}); {log_file}")
    return row


def summarise(config: Config, runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if r["ok"]]
    h, w = layout(config.src)["shape"]
    out: dict[str, Any] = {
        "label": config.label,
        "tiles": config.tiles,
        "src": str(config.src),
        "chunks": list(config.chunks),
        "runs": runs,
        "ok": len(ok) == len(runs),
    }
    if ok:
        best = min(ok, key=lambda r: r["seconds"])
        out.update(
            best_seconds=best["seconds"],
            all_seconds=[r["seconds"] for r in ok],
            best_cpu_seconds=min(r["cpu_seconds"] for r in ok),
            megapixels_per_second=h * w / 1e6 / best["seconds"],
            peak_rss=max(r["peak_rss"] for r in ok),
            other_load=[other_load(r) for r in ok],
            n_objects=best["n_objects"],
            threshold=best["threshold"],
            labels=ok[-1]["labels"],
        )
    return out


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------

TABLE_HEAD = (
    "| input | tiles | wall s, best of {n} | wall s, each run | CPU s, best | MP/s (best wall) "
    "| wall vs tiled | CPU vs tiled | peak RSS | other CPU load | labels vs tiled |"
)


def compare_with_tiled(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows[1:]:
        if not (row["ok"] and base["ok"]):
            continue
        found = compare.identical(base["labels"], row["labels"])
        row["labels_vs_tiled"] = (
            "bit-identical"
            if found["identical"]
            else (f"DIFFERENT ({found['differing_pixels']} px)")
        )


def table(rows: list[dict[str, Any]], repeats: int) -> list[str]:
    base = rows[0]
    lines = [TABLE_HEAD.format(n=repeats), "|---|---|" + "---:|" * 8 + "---|"]
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['label']} | {r['tiles']} | failed |" + " |" * 8)
            continue
        wall = r["best_seconds"] / base["best_seconds"] if base["ok"] else float("nan")
        cpu = r["best_cpu_seconds"] / base["best_cpu_seconds"] if base["ok"] else float("nan")
        loads = r["other_load"]
        cells = [
            r["label"],
            r["tiles"],
            f"{r['best_seconds']:.2f}",
            ", ".join(f"{s:.1f}" for s in r["all_seconds"]),
            f"{r['best_cpu_seconds']:.2f}",
            f"{r['megapixels_per_second']:.1f}",
            f"{wall:.2f}",
            f"{cpu:.2f}",
            gib(r["peak_rss"]),
            f"{100 * min(loads):.0f}-{100 * max(loads):.0f} %",
            r.get("labels_vs_tiled", "(base)"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.striped",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="8000", help="square image: N or HxW (default 8000)")
    parser.add_argument(
        "--wide",
        default="4096x32768",
        help="a wide image too, HxW (default 4096x32768); 'none' to skip",
    )
    parser.add_argument(
        "--strips",
        default="256",
        help="extra strip heights for --size besides GDAL's default (comma list)",
    )
    parser.add_argument(
        "--extra", default="", help="more tile shapes RxC for --size's default-striped file"
    )
    parser.add_argument(
        "--wide-extra", default="", help="more tile shapes RxC for --wide's default-striped file"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dst", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--chunks", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.src, args.dst, tuple(args.chunks), args.result)

    def shapes(text: str) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s.strip()]

    strip_heights = [int(s) for s in args.strips.split(",") if s.strip()]
    images = [(image_shape(None, args.size), [None, *strip_heights], shapes(args.extra))]
    if args.wide.lower() != "none":
        images.append((image_shape(None, args.wide), [None], shapes(args.wide_extra)))

    sections: list[str] = []
    data: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "repeats": args.repeats,
        "images": [],
    }
    all_runs: list[dict[str, Any]] = []
    for shape, strips, extra in images:
        configs, files = configs_for(shape, strips, extra)
        workdir = SCRATCH / "runs" / "striped" / f"{shape[0]}x{shape[1]}"
        workdir.mkdir(parents=True, exist_ok=True)
        runs: dict[Config, list[dict[str, Any]]] = {c: [] for c in configs}
        for repeat in range(args.repeats):
            print(f"{shape[0]} x {shape[1]}: repeat {repeat + 1} of {args.repeats}")
            for config in configs:
                runs[config].append(run_config(config, workdir))
        rows = [summarise(c, runs[c]) for c in configs]
        compare_with_tiled(rows)
        for f in files[1:]:
            f["retile_seconds"] = fix_seconds(Path(f["path"]))
        all_runs += [r for c in configs for r in runs[c]]
        data["images"].append({"shape": list(shape), "files": files, "rows": rows})
        h, w = shape
        sections += [f"## {h} x {w} ({h * w / 1e6:.0f} MP)", ""]
        for f in files:
            bh, bw = f["block_shape"]
            line = f"- {f['role']}: blocks {bh} x {bw}, {f['bytes'] / 2**20:.0f} MiB"
            if "retile_seconds" in f:
                line += (
                    f"; rewriting it tiled (512 x 512, deflate) took {f['retile_seconds']:.1f} s"
                )
            sections.append(line)
        sections += ["", *table(rows, args.repeats), ""]
        warned = next((f["warning"] for f in files if f.get("warning")), None)
        if warned:
            sections += [f"Warning for the GDAL-default striped file: `{warned}`", ""]

    head = [
        f"- Machine: {data['machine']['cores']} cores, "
        f"{data['machine']['ram_bytes'] / 2**30:.1f} GiB RAM, {data['machine']['cpu']}",
        f"- Versions: {version_line(all_runs)}",
        f"- Run {data['date']}; tiler defaults (threads in the process, one per "
        "core, GDAL_CACHEMAX 256 MB), the benchmark pipeline of `benchmarks/run_one.py`; each "
        f"run in its own process; {args.repeats} repeats, every configuration once per repeat",
        "- wall: `tiler.run` inside the process, cluster start-up included; CPU: user + system "
        "time of the process over the same span (the workers are threads of it), less "
        "disturbed than wall time by other work on the machine; other CPU load: the busy time "
        "of other processes during each run, as a share of all cores (min-max over the runs)",
        "",
    ]
    text = write_report(
        args.out, "striped", "Striped (untiled) GeoTIFF inputs", head + sections, data
    )
    print()
    print(text)
    print(f"written: {args.out / 'striped.md'} and .json")
    return 0 if all(r["ok"] for image in data["images"] for r in image["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
