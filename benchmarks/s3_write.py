"""``tiler run`` writing DST to a local S3 API server against writing it to disk.

    python -m benchmarks.s3_write --megapixels 64 --out benchmarks/results

Writes the synthetic orthomosaic of :mod:`benchmarks.s3_read` (a COG) on
local disk, starts moto's S3 server on 127.0.0.1 and times whole ``tiler
run SRC DST`` processes (the default pipeline and scheduler), alternately,
``--repeat`` times: DST a local folder (``disk``), DST ``s3://bucket/run-N/``
(``s3``), and SRC and DST both in the bucket (``s3-both``); with ``--s3-env
NAME=VALUE`` also disk -> bucket with that in the environment (``s3+env``:
fsspec's ``FSSPEC_S3_<OPTION>``, zarr's ``ZARR_<KEY>``, ...). Reports the best
time of each, the CPU seconds of tiler and of moto, and the ratio s3 / disk
(target: within 1.3x); checks that every
output but ``run.json`` is the same bytes as on disk, and counts, per run into
the bucket, from moto's request log: the PUT requests, the objects left under
DST (``list_objects_v2``) and the distinct keys written (the work folder's
included: an upper bound of the objects there at once, the work folder being
removed only at the end). An untimed first run into the bucket also lists
DST every half second while it runs (a lower bound of that peak). The counts
at 1 GP are computed from the tile grid with the per-tile counts measured
here, or measured with ``--large-size 32768``.

moto is a Python server sharing the CPUs with the run: a real S3 endpoint or
MinIO answers faster, so the ratio here is an upper bound for a local network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.s3_objects import (
    Lister,
    bucket_keys,
    extrapolate,
    grid_tiles,
    kind,
    request_counts,
    requests_in,
)
from benchmarks.s3_read import BUCKET, KEY, s3_client, s3_env, start_moto, timed_run, write_cog

MANIFEST = "run.json"


def same_outputs(s3: Any, folder: Path, prefix: str) -> bool:
    """Whether the bucket's DST holds the files of ``folder`` with the same bytes (not run.json)."""
    local = {
        p.relative_to(folder).as_posix(): p
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    remote = [k.removeprefix(prefix) for k in bucket_keys(s3, prefix)]
    if sorted(local) != sorted(name for name in remote if name != MANIFEST):
        return False
    return all(
        s3.get_object(Bucket=BUCKET, Key=prefix + name)["Body"].read() == path.read_bytes()
        for name, path in local.items()
    )


def timings(manifest: bytes) -> dict[str, float]:
    """run.json's seconds per pass."""
    return json.loads(manifest)["timings_seconds"]


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user and system) of process ``pid``, or of this one's waited-for children."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    """The moto server, its log, the bucket and the runs made so far."""

    def __init__(self, tmp: Path, chunk: int):
        self.tmp, self.chunk, self.runs = tmp, chunk, 0
        self.log = tmp / "moto.log"
        self.server, endpoint = start_moto(self.log)
        self.env, self.s3 = s3_env(endpoint), s3_client(endpoint)
        self.s3.create_bucket(Bucket=BUCKET)

    def timed(self, src: str, dst: str | Path, extra: dict[str, str]) -> dict[str, float]:
        """Run ``tiler run src dst`` (``extra`` added to the environment): its seconds, and
        the CPU seconds of it and of moto."""
        before = cpu_seconds(), cpu_seconds(self.server.pid)
        seconds = timed_run(src, dst, {**self.env, **extra}, self.chunk)
        tiler_cpu = cpu_seconds() - before[0]
        moto_cpu = cpu_seconds(self.server.pid) - before[1]
        return {"seconds": seconds, "tiler_cpu_s": tiler_cpu, "moto_cpu_s": moto_cpu}

    def to_disk(self, src: str, extra: dict[str, str]) -> tuple[dict[str, Any], Path]:
        """One run into a new local folder: its seconds and pass timings, and the folder."""
        self.runs += 1
        dst = self.tmp / f"run-{self.runs}"
        run = self.timed(src, dst, extra)
        return {**run, "timings": timings((dst / MANIFEST).read_bytes())}, dst

    def to_bucket(self, src: str, extra: dict[str, str], *, watch: bool = False) -> dict[str, Any]:
        """One run into ``s3://BUCKET/run-N/``: its seconds, requests and objects."""
        self.runs += 1
        prefix = f"run-{self.runs}/"
        lister = Lister(self.s3, prefix)
        if watch:
            lister.start()
        offset = self.log.stat().st_size
        run = self.timed(src, f"s3://{BUCKET}/{prefix}", extra)
        lister.stop.set()
        requests = requests_in(self.log, offset)
        manifest = self.s3.get_object(Bucket=BUCKET, Key=prefix + MANIFEST)["Body"].read()
        left = bucket_keys(self.s3, prefix)
        return {
            **run,
            "prefix": prefix,
            "objects_left": len(left),
            "objects_left_by_kind": dict(sorted(Counter(kind(k) for k in left).items())),
            **request_counts(requests, prefix),
            **({"peak_objects_listed": lister.peak} if watch else {}),
            "timings": timings(manifest),
        }

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.s3_write", description=__doc__)
    parser.add_argument("--megapixels", type=float, default=64.0)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-src-in-bucket", action="store_true", help="skip the s3-both runs")
    parser.add_argument(
        "--large-size", type=int, default=0, help="also run a SIDE x SIDE image into the bucket"
    )
    parser.add_argument(
        "--s3-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also time disk -> bucket with this in the environment (s3+env; repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    import tempfile

    side = int(round((args.megapixels * 1e6) ** 0.5))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tiler-s3-write-") as tmp_name:
        tmp = Path(tmp_name)
        cog = tmp / "ortho.tif"
        print(f"writing a {side} x {side} COG ...", flush=True)
        write_cog(cog, side)
        bench = Bench(tmp, args.chunk)
        try:
            variants = {"disk": (str(cog), {}), "s3": (str(cog), {})}
            if args.s3_env:
                variants["s3+env"] = (str(cog), dict(e.split("=", 1) for e in args.s3_env))
            if not args.no_src_in_bucket:
                bench.s3.upload_file(str(cog), BUCKET, KEY)
                variants["s3-both"] = (f"s3://{BUCKET}/{KEY}", {})
            print("untimed first run into the bucket, listing DST meanwhile ...", flush=True)
            watched = bench.to_bucket(str(cog), {}, watch=True)
            times: dict[str, list[float]] = {name: [] for name in variants}
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
            for i in range(args.repeat):
                for name, (src, extra) in variants.items():
                    if name == "disk":
                        run, disk_dst = bench.to_disk(src, extra)
                    else:
                        run = bench.to_bucket(src, extra)
                    runs[name].append(run)
                    seconds = run["seconds"]
                    times[name].append(seconds)
                    print(f"run {i + 1} {name}: {seconds:.1f} s", flush=True)
            identical = {
                name: same_outputs(bench.s3, disk_dst, runs[name][-1]["prefix"])
                for name in variants
                if name != "disk"
            }
            large = None
            if args.large_size:
                large_cog = tmp / "large.tif"
                print(f"writing a {args.large_size} x {args.large_size} COG ...", flush=True)
                write_cog(large_cog, args.large_size)
                large = bench.to_bucket(str(large_cog), {}, watch=True)
                large["megapixels"] = round(args.large_size**2 / 1e6, 1)
                large["tiles"] = grid_tiles(args.large_size, args.chunk)
        finally:
            bench.close()
    result = summarise(args, side, times, runs, watched, identical, large)
    result["load_average"] = [load_before[0], os.getloadavg()[0]]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"s3-write-{round(side * side / 1e6)}mp"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = render(result)
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def summarise(args, side, times, runs, watched, identical, large) -> dict[str, Any]:
    best = {name: min(values) for name, values in times.items()}
    fastest = {name: runs[name][values.index(best[name])] for name, values in times.items()}
    tiles = grid_tiles(side, args.chunk)
    large_tiles = grid_tiles(32768, args.chunk)
    return {
        "megapixels": round(side * side / 1e6, 1),
        "s3_env": args.s3_env,
        "chunk": args.chunk,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "seconds": times,
        "best": best,
        "ratio_s3_over_disk": round(best["s3"] / best["disk"], 3),
        "within_1_3x": best["s3"] / best["disk"] <= 1.3,
        "ratios_over_disk": {n: round(best[n] / best["disk"], 3) for n in best if n != "disk"},
        "requests_of_best": {
            n: {"total": sum(run["requests"].values()), **run["requests_by_purpose"]}
            for n, run in fastest.items()
            if n != "disk"
        },
        "identical_to_disk_but_run_json": identical,
        "pass_seconds_of_best": {name: run["timings"] for name, run in fastest.items()},
        "cpu_seconds_of_best": {
            name: {k: round(run[k], 2) for k in ("tiler_cpu_s", "moto_cpu_s")}
            for name, run in fastest.items()
        },
        "tiles": tiles,
        "counts": {k: v for k, v in fastest["s3"].items() if k not in ("timings", "seconds")},
        "watched_run": {k: v for k, v in watched.items() if k != "timings"},
        "counts_1gp_from_grid": extrapolate(fastest["s3"], tiles, large_tiles),
        "counts_large_measured": large,
    }


def render(r: dict[str, Any]) -> list[str]:
    best, counts, watched = r["best"], r["counts"], r["watched_run"]
    grid, large, load = r["counts_1gp_from_grid"], r["counts_large_measured"], r["load_average"]
    names = {"disk": "disk -> disk", "s3": "disk -> bucket", "s3-both": "bucket -> bucket"}
    names["s3+env"] = f"disk -> bucket, {' '.join(f'`{e}`' for e in r['s3_env'])}"
    lines = [
        f"# Writing DST to a local S3 server (moto) vs to disk, {r['megapixels']} MP",
        "",
        f"Synthetic COG on local disk; default pipeline, chunk {r['chunk']} ({r['tiles']} tiles), "
        f"default scheduler; whole `tiler run` processes, alternated, best of {r['repeat']}; "
        f"{r['cpus']} CPUs shared with other work: load average {load[0]:.2f} before, "
        f"{load[1]:.2f} after.",
        "",
        "| SRC -> DST | best (s) | all runs (s) | CPU s of the best: tiler | moto |",
        "|---|---:|---|---:|---:|",
    ]
    for name, values in r["seconds"].items():
        cpu = r["cpu_seconds_of_best"][name]
        lines.append(
            f"| {names[name]} | {best[name]:.1f} | {', '.join(f'{s:.1f}' for s in values)} "
            f"| {cpu['tiler_cpu_s']:.1f} | {cpu['moto_cpu_s']:.1f} |"
        )
    others = [f"{names[n]}: {v:.2f}x" for n, v in r["ratios_over_disk"].items() if n != "s3"]
    lines += [
        "",
        f"Ratio bucket / disk: **{r['ratio_s3_over_disk']:.2f}x** (target 1.3x: "
        f"{'met' if r['within_1_3x'] else 'NOT met'}); over disk -> disk, "
        + "; ".join(others)
        + ". Every output but run.json the same bytes as on disk: "
        + f"{r['identical_to_disk_but_run_json']}.",
        "",
        "Requests of the best runs, by purpose:",
        "",
        *(
            f"- {names[n]}: {q['total']}: "
            + ", ".join(f"{v} {k}" for k, v in q.items() if k != "total")
            for n, q in r["requests_of_best"].items()
        ),
        "",
        "Seconds per pass (run.json `timings_seconds`) of the best runs:",
        "",
        "| pass | " + " | ".join(names[n] for n in r["pass_seconds_of_best"]) + " |",
        "|---|" + "---:|" * len(r["pass_seconds_of_best"]),
    ]
    for step in r["pass_seconds_of_best"]["disk"]:
        cells = " | ".join(f"{t.get(step, 0):.2f}" for t in r["pass_seconds_of_best"].values())
        lines.append(f"| {step} | {cells} |")
    lines += [
        "",
        f"## Objects, {r['megapixels']} MP ({r['tiles']} tiles): measured, best disk -> bucket",
        "",
        f"- objects left under DST: **{counts['objects_left']}** {counts['objects_left_by_kind']}",
        f"- PUT requests: **{counts['puts']}** {counts['puts_by_kind']}",
        f"- distinct keys written: {counts['keys_written']} {counts['keys_written_by_kind']}, "
        f"{counts['work_keys_written']} of them in `.tiler-work/`: the most objects there at once "
        f"(nothing is removed before the end but all-empty chunks); DST listed every 0.5 s "
        f"during the untimed first run: {watched['peak_objects_listed']} at once "
        f"(that run: {watched['puts']} PUTs, {watched['keys_written']} keys)",
        f"- all requests by method: {counts['requests']}",
        "",
        f"## Objects, 1 GP (32768 x 32768, {grid['tiles']} tiles)",
        "",
        f"From the grid (per tile: the chunks and journal segments measured above; the rest "
        f"fixed): objects left **{grid['objects_left']}**, PUT requests about **{grid['puts']}**, "
        f"distinct keys written (the most objects at once) about {grid['keys_written']}.",
    ]
    if large:
        lines += [
            "",
            f"Measured, one run of {large['megapixels']} MP ({large['tiles']} tiles) into the "
            f"bucket in {large['seconds']:.0f} s: objects left **{large['objects_left']}** "
            f"{large['objects_left_by_kind']}, PUT requests **{large['puts']}** "
            f"{large['puts_by_kind']}, distinct keys {large['keys_written']}, at most "
            f"{large['peak_objects_listed']} listed at once.",
        ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
