"""tiler against the whole-image reference and the stock dask-image pipeline.

    python -m benchmarks.bench --megapixels 64 --chunk 2048 --out benchmarks/results

Generates (once, cached in ``benchmarks/scratch/``) a synthetic row-crop
orthomosaic, runs each pipeline in its own process one after the other on the
same file, ``--repeat`` rounds of all of them, measures the wall time of each
whole process (interpreter start and imports included) and the peak memory of
its process tree, keeps each pipeline's fastest run, checks the labels against
the reference's, and writes ``bench-<N>mp.md`` and ``bench-<N>mp.json`` to
``--out``. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from benchmarks import compare
from benchmarks.monitor import run_monitored
from benchmarks.run_one import versions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRATCH = HERE / "scratch"
PEER_VENV = HERE / ".venv-dask2025"
PEER_REQUIREMENTS = HERE / "requirements-dask2025.txt"
GiB = 2**30


@dataclass(frozen=True)
class Job:
    """One pipeline to run: a row of the table."""

    label: str  # row name
    runner: str  # benchmarks.run_one NAME
    python: str  # interpreter
    checkout: Path = ROOT  # the source tree it runs from (another commit's, for --tiler-at)


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------


def image_shape(megapixels: float | None, size: str | None) -> tuple[int, int]:
    """``--size 8000`` / ``--size 6000x9000``, else a square of ``--megapixels``."""
    if size:
        h, _, w = size.lower().partition("x")
        return int(h), int(w or h)
    side = int(round(math.sqrt((megapixels or 64) * 1e6)))
    return side, side


def synthetic_image(shape: tuple[int, int], log=print) -> tuple[Path, float | None]:
    """The cached synthetic GeoTIFF of this shape; generate it when missing.

    Returns the path and the generation time (``None`` when it was cached).
    """
    from tiler.synthetic import SyntheticField, write_geotiff

    h, w = shape
    path = SCRATCH / f"field-{h}x{w}.tif"
    if path.exists():
        return path, None
    SCRATCH.mkdir(parents=True, exist_ok=True)
    log(f"generating {path.relative_to(ROOT)} ({h} x {w}, {h * w / 1e6:.0f} MP)...")
    started = time.perf_counter()
    last = [started]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 15 or done == total:
            last[0] = time.perf_counter()
            log(f"  {done}/{total} rows, {last[0] - started:.0f} s")

    write_geotiff(SyntheticField(height=h, width=w), path, progress=progress)
    return path, time.perf_counter() - started


def ensure_peer_venv(log=print) -> tuple[str | None, str]:
    """The Python of ``benchmarks/.venv-dask2025`` (created on first use), or None and why."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    requirements = PEER_REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == requirements:
        return str(python), "cached"
    log(f"creating {PEER_VENV.relative_to(ROOT)} (dask 2025.3) for the second peer run...")
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", "--clear", str(PEER_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(PEER_REQUIREMENTS)],
    ]
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`{' '.join(cmd[-3:])}` failed: {' | '.join(tail)}"
    stamp.write_text(requirements)
    return str(python), "created"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "cpu": model or platform.processor(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


def run_job(job: Job, src: Path, chunk: int, workdir: Path, log=print) -> dict[str, Any]:
    """Run one pipeline in a child process; its result merged with what was measured."""
    slug = job.label.replace(" ", "-").replace("(", "").replace(")", "")
    dst, result_file, log_file = workdir / slug, workdir / f"{slug}.json", workdir / f"{slug}.log"
    shutil.rmtree(dst, ignore_errors=True)
    result_file.unlink(missing_ok=True)
    cmd = [job.python, "-m", "benchmarks.run_one", job.runner, "--src", str(src),
           "--dst", str(dst), "--chunk", str(chunk), "--result", str(result_file)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    log(f"running {job.label}...")
    # The child imports tiler and benchmarks from its working directory (sys.path[0]).
    measured = run_monitored(cmd, log=log_file, cwd=job.checkout, env=env)
    row: dict[str, Any] = {"label": job.label, "runner": job.runner, "python": job.python}
    row.update(measured.to_dict())
    row["log"] = str(log_file)
    row["warnings"] = warning_lines(log_file)
    if measured.returncode == 0 and result_file.exists():
        row.update(json.loads(result_file.read_text()))
        row["ok"] = True
        mp = src_megapixels(src)
        row["megapixels_per_second"] = mp / row["seconds"]  # in process (benchmarks.scale)
        row["megapixels_per_second_after_startup"] = mp / (row["seconds"] - row["seconds_startup"])
        row["megapixels_per_second_whole_process"] = mp / row["wall_seconds"]  # bench's table
        log(f"  {row['wall_seconds']:.1f} s whole process ({row['seconds']:.1f} s in it), "
            f"{row['megapixels_per_second_whole_process']:.1f} MP/s, "
            f"peak RSS {row['peak_rss'] / GiB:.2f} GiB, {row['n_objects']} objects")  # fmt: skip
    else:
        row["ok"] = False
        tail = log_file.read_text(errors="replace").strip().splitlines()[-5:]
        row["error"] = "\n".join(tail)
        log(f"  FAILED (exit {measured.returncode}); see {log_file}")
    return row


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest finished run (whole-process wall), with every run's wall time; else the last.

    Each run writes to the same folder, so the outputs checked afterwards are
    the last run's: the pipelines are deterministic, and all runs must finish.
    """
    done = [r for r in runs if r["ok"]]
    best = dict(min(done, key=lambda r: r["wall_seconds"]) if len(done) == len(runs) else runs[-1])
    best["runs_wall_seconds"] = [round(r["wall_seconds"], 3) for r in runs]
    best["runs_seconds"] = [round(r["seconds"], 3) for r in done]
    best["runs_other_cpu_load"] = [round(other_load(r), 3) for r in runs]
    best["runs_peak_rss"] = [r["peak_rss"] for r in runs]
    return best


def warning_lines(log_file: Path, limit: int = 10) -> list[str]:
    """Distinct warnings and errors in a child's output, without their file and line."""
    seen: dict[str, int] = {}
    for line in log_file.read_text(errors="replace").splitlines():
        found = re.search(r"\b(\w*(?:Warning|Error)):? (.*)", line)
        if found:
            key = f"{found.group(1)}: {found.group(2).strip()}"[:200]
            seen[key] = seen.get(key, 0) + 1
    return [f"{key} (x{n})" if n > 1 else key for key, n in seen.items()][:limit]


def src_megapixels(src: Path) -> float:
    import rasterio

    with rasterio.open(src) as dataset:
        return dataset.height * dataset.width / 1e6


def check_against_reference(rows: list[dict[str, Any]]) -> None:
    """Add the label and area comparisons with the reference row to every other row."""
    ref = next((r for r in rows if r["runner"] == "reference" and r["ok"]), None)
    for row in rows:
        if not row["ok"] or ref is None or row is ref:
            continue
        if row["runner"] == "tiler":
            found = compare.identical(ref["labels"], row["labels"])
            row["labels_vs_reference"] = "bit-identical" if found["identical"] else (
                f"DIFFERENT ({found['differing_pixels']} px)")  # fmt: skip
            row["areas_match_reference"] = compare.areas_match(
                ref["areas"], row["areas"], ordered=True
            )
        else:
            found = compare.same_partition(ref["labels"], row["labels"])
            row["labels_vs_reference"] = "equal up to renumbering" if found["same_partition"] else (
                f"DIFFERENT partition ({found['ref_labels']} vs {found['peer_labels']} labels, "
                f"{found['pairs']} pairs)")  # fmt: skip
            row["areas_match_reference"] = compare.areas_match(
                ref["areas"], row["areas"], ordered=False
            )
        row["comparison"] = found
        row["mask_agreement"] = found["mask_agreement"]
        row["threshold_equals_reference"] = row["threshold"] == ref["threshold"]


# ---------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def version_line(rows: list[dict[str, Any]]) -> str:
    own = versions()
    names = ("tiler", "dask", "distributed", "dask-image", "numpy", "scipy", "scikit-image",
             "opencv-python-headless", "rasterio", "rioxarray", "zarr", "numba")  # fmt: skip
    for row in rows:  # tiler's version as its child saw it
        own.update({k: v for k, v in row.get("versions", {}).items() if k == "tiler"})
    return ", ".join(f"{n} {own[n]}" for n in names if n in own) + f"; Python {own['python']}"


def header_lines(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    m = meta["machine"]
    h, w = meta["shape"]
    gen = meta["generation_seconds"]
    made = "cached" if gen is None else f"generated in {gen:.0f} s"
    size = meta["image_bytes"] / 2**20
    return [
        f"- Machine: {m['cores']} cores ({m['physical_cores']} physical), "
        f"{m['ram_bytes'] / GiB:.1f} GiB RAM, {m['cpu']}",
        f"- Versions: {version_line(rows)}",
        f"- Image: {h} x {w} = {h * w / 1e6:.1f} MP synthetic row-crop RGBA GeoTIFF "
        f"(tiled 512, deflate, {size:.0f} MiB, {made}); chunk {meta['chunk']}",
        f"- Run {meta['date']}; each pipeline in its own process, one after the other, "
        f"{meta['repeat']} round(s); the best run of each",
    ]


def ratio_line(rows: list[dict[str, Any]]) -> str:
    tiler = next((r for r in rows if r["label"] == "tiler" and r["ok"]), None)  # this checkout
    if tiler is None:
        return "- Throughput ratios: tiler did not finish"
    parts = []
    for row in rows:
        if row is tiler or not row["ok"]:
            continue
        ratio = row["wall_seconds"] / tiler["wall_seconds"]  # = MP/s ratio, same image
        parts.append(f"tiler/{row['label']} = {ratio:.2f}x")
    return "- Throughput ratios (MP/s, whole processes, best runs): " + (", ".join(parts) or "none")


TABLE_HEAD = (
    "| pipeline | wall s (best) | all runs s | in process s | CPU s | cluster start s | MP/s "
    "| peak RSS (tree) | peak RSS + /dev/shm | other CPU load | objects | threshold "
    "| labels vs reference | areas | mask agreement |"
)


def other_load(row: dict[str, Any]) -> float:
    """Share of the machine's CPU time that processes outside the measured tree used."""
    cores = os.cpu_count() or 1
    return row["other_cpu_seconds"] / (cores * row["wall_seconds"]) if row["wall_seconds"] else 0.0


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [TABLE_HEAD, "|---|" + "---:|" * 11 + "---|---|---:|"]
    for r in rows:
        if not r["ok"]:
            cells = [r["label"], f"failed (exit {r['returncode']})", "", "", "", "", "",
                     gib(r["peak_rss"])]  # fmt: skip
            lines.append("| " + " | ".join(cells + [""] * 7) + " |")
            continue
        areas = r.get("areas_match_reference")
        agreement = r.get("mask_agreement")
        cells = [
            r["label"],
            f"{r['wall_seconds']:.1f}",
            " / ".join(f"{w:.1f}" for w in r.get("runs_wall_seconds", [r["wall_seconds"]])),
            f"{r['seconds']:.1f}",
            f"{r['tree_cpu_seconds']:.1f}",
            f"{r['seconds_startup']:.1f}",
            f"{r['megapixels_per_second_whole_process']:.2f}",
            gib(r["peak_rss"]),
            gib(r["peak_rss_plus_shm"]),
            f"{100 * other_load(r):.0f} %",
            str(r["n_objects"]),
            f"{r['threshold']:.10g}",
            r.get("labels_vs_reference", "(reference)"),
            "-" if areas is None else ("equal" if areas else "DIFFERENT"),
            "-" if agreement is None else f"{agreement:.6f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


NOTES = [
    "- wall: the whole process, as a user's command pays it: interpreter start, imports, "
    "the pipeline, cluster start-up and shut-down where there is a cluster; the best of "
    "the runs (`all runs` lists them in order), every pipeline run once per round, in the "
    "order of the table. MP/s = image megapixels / wall. `in process s`: the pipeline as "
    "timed inside the process of the best run (imports left out). `CPU s`: user + system "
    "time of the best run's process tree, the figure least inflated by other work.",
    "- peak RSS: summed RSS of the process and all its descendants (dask nanny and worker "
    "processes), sampled every 50 ms; shared pages count once per process. `+ /dev/shm`: "
    "plus the files of `/dev/shm/tiler-*` folders created during the run (tiler's value "
    "cache; tmpfs files are RAM that no RSS shows).",
    "- other CPU load: CPU time used during the run by processes outside the measured tree, "
    "as a share of all cores; above a few % the machine was shared and times are inflated.",
]


def notes(rows: list[dict[str, Any]], peer_status: str | None) -> list[str]:
    out = ["", "Notes:", "", *NOTES]
    if peer_status:
        out.append(f"- dask 2025.3 peer: {peer_status}")
    own = versions()
    for r in rows:
        differ = {
            k: v for k, v in r.get("versions", {}).items() if k != "tiler" and own.get(k) != v
        }
        if differ:
            listed = ", ".join(f"{k} {v}" for k, v in differ.items())
            out.append(f"- {r['label']}: runs with {listed}")
        for note in r.get("notes", []):
            out.append(f"- {r['label']}: {note}")
        if r.get("warnings"):
            log = Path(r["log"]).relative_to(ROOT)
            shown = "; ".join(f"`{line}`" for line in r["warnings"][:3])
            out.append(f"- {r['label']}: {len(r['warnings'])} distinct warning/error line(s) "
                       f"in {log}: {shown}")  # fmt: skip
        if not r["ok"]:
            out.append(f"- {r['label']} failed: `{r['error'].splitlines()[-1]}`")
    return out


def write_report(out: Path, stem: str, title: str, lines: list[str], data: dict) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join([f"# {title}", "", *lines, ""])
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return text


def checkout_at(ref: str) -> Path:
    """A detached git worktree of ``ref`` in the scratch folder (made once), for ``--tiler-at``."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", f"{ref}^{{commit}}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    path = SCRATCH / f"tiler-{commit}"
    if not (path / "tiler").is_dir():
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--force", "--detach", str(path), commit],
            cwd=ROOT, capture_output=True, check=True,
        )  # fmt: skip
    return path


def jobs_for(names: list[str], peer_python: str | None, at: list[str] = ()) -> list[Job]:
    jobs = []
    for ref in at:  # tiler at other commits first, in the same environment
        checkout = checkout_at(ref)
        jobs.append(Job(f"tiler at {checkout.name.removeprefix('tiler-')}", "tiler",
                        sys.executable, checkout))  # fmt: skip
    for name in names:
        if name == "dask-image-2025.3":
            if peer_python:
                jobs.append(Job("dask-image (dask 2025.3)", "dask-image", peer_python))
        else:
            label = {"dask-image": "dask-image (dask " + versions().get("dask", "?") + ")"}
            jobs.append(Job(label.get(name, name), name, sys.executable))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--megapixels",
        type=float,
        default=64.0,
        help="square synthetic image of about this size (default 64 = 8000^2)",
    )
    parser.add_argument("--size", help="image size instead: N or HxW pixels")
    parser.add_argument("--chunk", type=int, default=2048, help="tile/chunk size (default 2048)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--pipelines",
        default="tiler,reference,dask-image,dask-image-2025.3",
        help="comma-separated subset of the default, in order",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of every pipeline; the table keeps each one's fastest run (default 3)",
    )
    parser.add_argument(
        "--no-peer-venv",
        action="store_true",
        help="do not create benchmarks/.venv-dask2025 (skips dask-image-2025.3)",
    )
    parser.add_argument(
        "--tiler-at",
        action="append",
        default=[],
        metavar="REF",
        help="also run tiler as of this git commit (a worktree in benchmarks/scratch), "
        "with the same interpreter and libraries: before/after in one run; repeatable",
    )
    args = parser.parse_args(argv)  # fmt: skip

    shape = image_shape(args.megapixels, args.size)
    src, gen_seconds = synthetic_image(shape)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    peer_python, peer_status = None, None
    if "dask-image-2025.3" in names:
        if args.no_peer_venv and not (PEER_VENV / ".installed").exists():
            peer_status = "skipped (--no-peer-venv)"
        else:
            peer_python, why = ensure_peer_venv()
            peer_status = f"venv {why}" if peer_python else f"left out: {why}"
    workdir = SCRATCH / "runs" / f"{shape[0]}x{shape[1]}"
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(names, peer_python, args.tiler_at)
    runs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    for round_ in range(max(1, args.repeat)):
        print(f"round {round_ + 1} of {max(1, args.repeat)}")
        for job, done in zip(jobs, runs, strict=True):
            done.append(run_job(job, src, args.chunk, workdir))
    rows = [best_of(done) for done in runs]
    check_against_reference(rows)

    mp = round(shape[0] * shape[1] / 1e6)
    meta = {
        "shape": list(shape), "chunk": args.chunk, "image": str(src),
        "image_bytes": src.stat().st_size, "generation_seconds": gen_seconds,
        "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repeat": max(1, args.repeat),
        "versions": versions(), "peer_dask2025": peer_status,
    }  # fmt: skip
    lines = (
        header_lines(meta, rows) + [ratio_line(rows), ""] + table(rows) + notes(rows, peer_status)
    )
    title = f"Benchmark: {shape[0]} x {shape[1]} ({mp} MP), chunk {args.chunk}"
    text = write_report(args.out, f"bench-{mp}mp", title, lines, {**meta, "rows": rows})
    print()
    print(text)
    print(f"written: {args.out / f'bench-{mp}mp.md'} and .json")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
