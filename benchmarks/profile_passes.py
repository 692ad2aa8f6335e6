"""Where the time goes: a profile of each pass of a default ``tiler run``.

    python -m benchmarks.profile_passes [--input ORTHOMOSAIC.tif]

Runs ``tiler.run`` in this process on the synchronous scheduler (one thread:
cProfile sees only the thread it runs in, and the passes then take their
CPU time as wall time), with one profile per pass, and writes
``benchmarks/results/profile-passes.md``: each pass's time, and the functions
that spent most of it (their own time, the kernels' included). The threaded
default runs the same tasks on two threads; its per-pass times are in run.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks.bench import HERE, machine, synthetic_image, version_line

TOP = 8


def _label(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name  # a built-in
    parts = Path(path).parts
    where = "/".join(parts[parts.index("tiler") :]) if "tiler" in parts else Path(path).name
    return f"{name} ({where}:{line})"


def profile_run(src: Path) -> tuple[dict[str, pstats.Stats], dict, float]:
    """Run tiler on ``src``, a profile per pass; the profiles, run.json and the wall time."""
    import tiler
    from tiler.passes.runner import PassRunner

    profiles: dict[str, cProfile.Profile] = {}
    compute = PassRunner.compute

    def profiled(self, name, graph):
        profile = profiles.setdefault(name.split(":")[0], cProfile.Profile())
        profile.enable()
        try:
            return compute(self, name, graph)
        finally:
            profile.disable()

    PassRunner.compute = profiled  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory(prefix="tiler-profile-") as folder:
            start = time.perf_counter()
            tiler.run(src, Path(folder) / "out", scheduler="sync", progress=False)
            wall = time.perf_counter() - start
            record = json.loads((Path(folder) / "out" / "run.json").read_text())
    finally:
        PassRunner.compute = compute  # type: ignore[method-assign]
    return {name: pstats.Stats(p) for name, p in profiles.items()}, record, wall


def report(src: Path, stats: dict[str, pstats.Stats], record: dict, wall: float) -> str:
    timings = record["timings_seconds"]
    m = machine()
    lines = [
        f"# Where the time goes: each pass of a default `tiler run` on {src.name}",
        "",
        f"- Machine: {m['cores']} cores, {m['ram_bytes'] / 2**30:.1f} GiB RAM, {m['cpu']}",
        f"- Versions: {version_line([])}",
        f"- {record['input']['width']} x {record['input']['height']} px, "
        f"{record['object_count']} objects; the synchronous scheduler (one thread) so that "
        "cProfile sees every task; the default (two threads) runs the same tasks.",
        f"- Wall time in process: {wall:.1f} s; passes (run.json): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"),
        "",
    ]
    for name, st in stats.items():
        total = sum(entry[2] for entry in st.stats.values())  # type: ignore[attr-defined]
        lines += [f"## {name}: {total:.1f} s of CPU in its functions", ""]
        lines += ["| function | own s | share |", "|---|---:|---:|"]
        ranked = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
        for func, entry in ranked[:TOP]:
            lines.append(f"| {_label(func)} | {entry[2]:.2f} | {entry[2] / total:.0%} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="default: the 1 GP field (made if missing)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile-passes.md")
    args = parser.parse_args()
    src = args.input or synthetic_image((32768, 32768))[0]
    stats, record, wall = profile_run(src)
    text = report(src, stats, record, wall)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
