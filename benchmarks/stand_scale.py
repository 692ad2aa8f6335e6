"""`tiler rows` at scale: N plants in K square fields, time and peak memory of `analyse`.

    python -m benchmarks.stand_scale --plants 1000000 --fields 20 [--scheduler threads]

Writes a finished run folder (a real objects.parquet and run.json, as `tiler run` writes
them) of plants on 0.76 m rows at 0.18 m, 10 % missing, 2 % weeds, rows at a different angle
in each field, then runs :func:`tiler.analysis.analyse` on it in a fresh process and prints
one JSON line: the seconds of the analysis, that process's peak resident memory (VmHWM,
reset after the imports: the interpreter and its imports included, the parent's peak not),
rows and gaps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

from tiler.analysis import analyse
from tiler.io import objects_table, run_record

ROW, PLANT = 0.76, 0.18


def field_plants(rng, side: float, azimuth: float) -> np.ndarray:
    """Plants in a square of ``side`` m at the origin, rows at ``azimuth``."""
    half = side / 2 * np.sqrt(2)
    u, v = (
        a.ravel() for a in np.meshgrid(np.arange(-half, half, ROW), np.arange(-half, half, PLANT))
    )
    keep = rng.random(u.size) >= 0.1
    u, v = u[keep], v[keep] + rng.normal(0, 0.02, keep.sum())
    t = np.radians(azimuth)
    x, y = u * np.cos(t) + v * np.sin(t), -u * np.sin(t) + v * np.cos(t)
    inside = (np.abs(x) < side / 2) & (np.abs(y) < side / 2)
    xy = np.column_stack([x[inside], y[inside]])
    weeds = rng.uniform(-side / 2, side / 2, (len(xy) // 50, 2))
    return np.vstack([xy, weeds])


def write_run(folder: Path, plants: int, fields: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(plants / fields * ROW * PLANT / 0.9 / 1.02))
    per_side = int(np.ceil(np.sqrt(fields)))
    parts, polygons = [], []
    for k in range(fields):
        cx, cy = 500_000 + (k % per_side) * (side + 5), 5_000_000 + (k // per_side) * (side + 5)
        parts.append(field_plants(rng, side, 10 + 37 * k % 180) + (cx, cy))
        polygons.append(shapely.box(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
    xy = np.vstack(parts)
    del parts
    crs = CRS.from_epsg(32633)
    pixel = 0.01
    x0, y1 = xy[:, 0].min() - 1, xy[:, 1].max() + 1
    width = int((xy[:, 0].max() + 1 - x0) / pixel)
    height = int((y1 - xy[:, 1].min() + 1) / pixel)
    transform = (pixel, 0.0, x0, 0.0, -pixel, y1)
    cols, rows = (xy[:, 0] - x0) / pixel - 0.5, (y1 - xy[:, 1]) / pixel - 0.5
    n = len(xy)
    whole = np.zeros(n, np.int64)
    stats = {"count": np.full(n, 4.0), "sum_row": rows * 4, "sum_col": cols * 4,
             "min_row": whole, "min_col": whole, "max_row": whole, "max_col": whole}  # fmt: skip
    folder.mkdir(parents=True)
    columns = objects_table.object_columns(stats, transform, crs.to_wkt())
    objects_table.write_objects(folder, columns, crs.to_wkt())
    inputs = {"crs_wkt": crs.to_wkt(), "transform": transform, "height": height, "width": width}
    run_record.write_manifest(folder, {"complete": True, "input": inputs})
    frame = gpd.GeoDataFrame({"field": [f"f{k + 1}" for k in range(fields)]}, geometry=polygons,
                             crs=crs)  # fmt: skip
    return n, frame


def measure(run: Path, scheduler: str) -> dict:
    """Analyse ``run`` in this (fresh) process: seconds, peak memory, what was found."""
    fields = gpd.read_parquet(run / "fields.parquet")
    # A forked child inherits its parent's peak (ru_maxrss, VmHWM): reset it, where Linux can.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    imported = _peak_mib()
    started = time.perf_counter()
    report = analyse(run, fields, "field", scheduler=scheduler)
    seconds = time.perf_counter() - started
    table = report.fields
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib_imports": imported, "peak_rss_mib": _peak_mib(),
        "rows": int(table["rows"].sum()), "gaps": int(table["gaps"].sum()),
        "ok": int((table["stand_status"] == "ok").sum()),
        "row_spacing_m": [round(float(v), 4) for v in table["row_spacing_m"][:3]],
    }  # fmt: skip


def _peak_mib() -> int:
    """This process's peak resident memory: VmHWM (resettable), else ``ru_maxrss``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plants", type=int, default=1_000_000)
    parser.add_argument("--fields", type=int, default=1)
    parser.add_argument("--scheduler", default="threads")
    parser.add_argument("--analyse", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.analyse is not None:  # the child: only the analysis in this process
        print(json.dumps(measure(args.analyse, args.scheduler)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        n, fields = write_run(run, args.plants, args.fields)
        fields.to_parquet(run / "fields.parquet")
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.stand_scale", "--analyse", str(run),
             "--scheduler", args.scheduler],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = {"objects": n, "fields": args.fields, "scheduler": args.scheduler}
        print(json.dumps({**result, **json.loads(child.stdout.splitlines()[-1])}))


if __name__ == "__main__":
    main()
