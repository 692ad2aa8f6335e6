"""What a `tiler` command costs before any pixel: imports, the scheduler, compiling the kernels.

Whole processes, each measured ``--repeats`` times: the best wall time, and the
least CPU time (user + sys of the process and its children, which other work
on a shared machine disturbs less than the wall time). With ``--before REF``
the same is measured on the package as it was at git commit REF (extracted
to a temporary folder), interleaved with this tree's runs so that both see
the same load; the table has a column for each.

* ``tiler --help``, ``tiler run --help``;
* the start of ``tiler run``: importing the command line and the API a run calls;
* the default ``tiler run`` on the 64 MP synthetic field of ``make bench``
  (benchmarks/bench.py's, generated once into benchmarks/scratch), and the same
  with ``--scheduler threads`` and ``--scheduler local`` (a LocalCluster);
* the numba kernels: a run on a 1 MP field with an empty kernel cache
  (``NUMBA_CACHE_DIR``, a fresh folder: every kernel compiled) and again with
  the cache that run left (every kernel loaded from disk).

    python -m benchmarks.fixed_costs --before b3eec94 --out benchmarks/results/fixed-costs.md
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import ROOT, machine, synthetic_image

# Modules that `tiler --help` and a default run's start should not import.
HEAVY = ("distributed", "bokeh", "geopandas", "matplotlib", "pyarrow", "dask", "rasterio")


@dataclass
class Timing:
    """The best of several runs of one command."""

    wall: float  # seconds, best
    cpu: float  # user + sys seconds, least


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + sys of the child tree) seconds of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def environment(tree: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), **extra)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def best(runs: list[tuple[float, float]]) -> Timing:
    return Timing(min(w for w, _ in runs), min(c for _, c in runs))


def loaded(tree: Path, code: str, cwd: Path) -> list[str]:
    """Which of :data:`HEAVY` ``code`` leaves imported, in a fresh interpreter on ``tree``
    (run in ``cwd``: a folder with a tiler/ in it would shadow ``tree``'s)."""
    probe = (
        "import contextlib, io, sys\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    {code}\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, env=environment(tree), cwd=cwd, capture_output=True, text=True)
    return done.stdout.split()


def modules(trees: dict[str, Path], src1: Path, out: Path) -> list[str]:
    """Lines saying which heavy modules each tree imports for --help, a run's start, a run."""
    args = [str(src1), str(out / "m"), "-q", "--overwrite"]
    run = f"from tiler.cli import main; main(['run', *{args!r}])"
    lines = []
    for label, code in (
        ("`import tiler`", "import tiler"),
        ("`tiler --help`", "from tiler.cli import main; main(['--help'])"),
        ("start of `tiler run`", "import tiler.cli, tiler.api"),
        ("a default `tiler run`, start to end", run),
    ):
        found = {n: loaded(t, code, out) for n, t in trees.items()}
        said = "; ".join(f"{n}: {', '.join(f) or 'none'}" for n, f in found.items())
        lines.append(f"- {label}: {said}")
    return lines


def cases(src64: Path, src1: Path, out: Path) -> dict[str, list[str]]:
    tiler = [sys.executable, "-m", "tiler.cli"]
    run = [*tiler, "run", str(src64), str(out / "run"), "--overwrite", "-q"]
    return {
        "`tiler --help`": [*tiler, "--help"],
        "`tiler run --help`": [*tiler, "run", "--help"],
        "start of `tiler run` (import tiler.cli, tiler.api)": [
            sys.executable,
            "-c",
            "import tiler.cli, tiler.api",
        ],
        "64 MP `tiler run`, default scheduler": run,
        "64 MP `tiler run --scheduler threads`": [*run, "--scheduler", "threads"],
        "64 MP `tiler run --scheduler local` (LocalCluster)": [*run, "--scheduler", "local"],
        "1 MP `tiler run`": [*tiler, "run", str(src1), str(out / "small"), "--overwrite", "-q"],
    }


def measure(
    trees: dict[str, Path], repeats: int, log=print
) -> tuple[dict[str, dict[str, Timing]], list[str]]:
    """Every case on every tree, interleaved, ``repeats`` times; kernels cached as a user's."""
    src64, _ = synthetic_image((8000, 8000), log=log)
    src1, _ = synthetic_image((1000, 1000), log=log)
    results: dict[str, dict[str, Timing]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        commands = cases(src64, src1, out)
        caches = {name: out / f"numba-{i}" for i, name in enumerate(trees)}
        for name, tree in trees.items():  # compile once: the runs below load the kernels
            subprocess.run(
                commands["1 MP `tiler run`"],
                env=environment(tree, NUMBA_CACHE_DIR=str(caches[name])),
                check=True,
                capture_output=True,
            )
        for case, command in commands.items():
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
            for _ in range(repeats):
                for name, tree in trees.items():
                    env = environment(tree, NUMBA_CACHE_DIR=str(caches[name]))
                    runs[name].append(timed(command, env, out))
            results[case] = {name: best(r) for name, r in runs.items()}
            log(
                f"{case}: "
                + ", ".join(
                    f"{n} {t.wall:.2f} s ({t.cpu:.2f} s CPU)" for n, t in results[case].items()
                )
            )
        case = "1 MP `tiler run`, kernels compiled (empty cache)"
        runs = {name: [] for name in trees}
        for i in range(repeats):
            for name, tree in trees.items():
                cache = out / f"cold-{name}-{i}"  # a new empty cache each time
                runs[name].append(
                    timed(
                        commands["1 MP `tiler run`"],
                        environment(tree, NUMBA_CACHE_DIR=str(cache)),
                        out,
                    )
                )
                shutil.rmtree(cache, ignore_errors=True)
        results[case] = {name: best(r) for name, r in runs.items()}
        log(
            f"{case}: "
            + ", ".join(f"{n} {t.wall:.2f} s ({t.cpu:.2f} s CPU)" for n, t in results[case].items())
        )
        found = modules(trees, src1, out)
    return results, found


def report(
    results: dict[str, dict[str, Timing]],
    trees: dict[str, Path],
    repeats: int,
    load: tuple[float, float],
    found: list[str],
    before: str | None,
) -> str:
    names = list(trees)
    m = machine()
    lines = [
        "# Fixed costs: imports, scheduler start, kernel compilation",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['ram_bytes'] / 2**30:.0f} GiB; shared "
        f"with other work: load average {load[0]:.1f} before, {load[1]:.1f} after.",
        f"- Whole processes (`python -m benchmarks.fixed_costs`), best of {repeats}, the trees "
        "interleaved; wall = best wall time, CPU = least user + sys of the process tree.",
        "- Trees: "
        + (f"before = git {before} (its tiler/), after = " if before else "")
        + "this checkout.",
        "",
        "| | " + " | ".join(f"{n} wall | {n} CPU" for n in names) + " |",
        "|---|" + "---:|---:|" * len(names),
    ]
    for case, by_tree in results.items():
        cells = " | ".join(f"{by_tree[n].wall:.2f} s | {by_tree[n].cpu:.2f} s" for n in names)
        lines.append(f"| {case} | {cells} |")
    compiled, cached = "1 MP `tiler run`, kernels compiled (empty cache)", "1 MP `tiler run`"
    lines += ["", "Compiling the kernels (compiled minus cached, 1 MP run): " + ", ".join(
        f"{n} {results[compiled][n].wall - results[cached][n].wall:.2f} s wall, "
        f"{results[compiled][n].cpu - results[cached][n].cpu:.2f} s CPU" for n in names
    ) + "."]  # fmt: skip
    lines += ["", "Heavy modules imported (of " + ", ".join(HEAVY) + "):", "", *found]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="git commit to compare with (its tiler/ extracted)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the Markdown table here")
    args = parser.parse_args(argv)
    trees: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as old:
        if args.before:
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.before, "tiler"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            trees["before"] = Path(old)
        trees["after" if args.before else "this tree"] = ROOT
        load_before = os.getloadavg()[0]
        results, found = measure(trees, args.repeats)
        load = (load_before, os.getloadavg()[0])
        text = report(results, trees, args.repeats, load, found, args.before)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
