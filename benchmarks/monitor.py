"""Run a command and measure the peak memory of its whole process tree.

Every ``interval`` seconds the parent sums the resident set size (RSS) of the
child and of all its descendants (dask's nanny and worker processes) and
keeps the maximum. It also sums the files of the ``tiler-*`` folders that
appear in ``/dev/shm`` during the run (tiler's value cache): tmpfs files are
RAM that no process's RSS shows. (Only those folders, because other programs on
a shared machine use /dev/shm too.) Finally it counts the CPU time that the
process tree used and the CPU time the whole machine used, so that a run
disturbed by other work on the machine can be told apart.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

SHM = Path("/dev/shm")


@dataclass
class Measured:
    """What :func:`run_monitored` saw."""

    returncode: int
    wall_seconds: float  # the whole child process, interpreter start-up included
    peak_rss: int  # bytes, summed over the process tree, at the worst sample
    peak_rss_plus_shm: int  # the same plus the growth of /dev/shm since the start
    peak_shm: int  # bytes in new /dev/shm/tiler-* folders, at the worst sample
    peak_processes: int
    samples: int
    tree_cpu_seconds: float  # user + system time of the process tree (last sample of each)
    other_cpu_seconds: float  # busy CPU time of the machine not spent by the tree

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shm_entries() -> set[str]:
    try:
        return {entry.name for entry in os.scandir(SHM)}
    except OSError:
        return set()


def _shm_bytes(names: set[str], prefix: str = "tiler-") -> int:
    """Bytes in the files of the /dev/shm folders ``names`` that start with ``prefix``."""
    total = 0
    for name in names:
        if not name.startswith(prefix):
            continue
        try:
            with os.scandir(SHM / name) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except (NotADirectoryError, FileNotFoundError):
            pass
    return total


def _busy(times) -> float:
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def tree_rss(root: psutil.Process, cpu: dict[int, float] | None = None) -> tuple[int, int]:
    """Summed RSS of ``root`` and its descendants, and how many processes that was.

    ``cpu``, if given, is updated with each process's user + system seconds.
    """
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total, count = 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                total += proc.memory_info().rss
                if cpu is not None:
                    times = proc.cpu_times()
                    cpu[proc.pid] = times.user + times.system
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, count


def run_monitored(
    cmd: list[str],
    *,
    log: Path,
    cwd: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    interval: float = 0.05,
) -> Measured:
    """Run ``cmd`` to completion, writing its stdout and stderr to ``log``."""
    shm_before = _shm_entries()
    peak = peak_with_shm = peak_shm = peak_n = samples = 0
    cpu: dict[int, float] = {}
    busy0 = _busy(psutil.cpu_times())
    with open(log, "wb") as out:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            rss, n = tree_rss(root, cpu)
            shm = _shm_bytes(_shm_entries() - shm_before)
            peak, peak_n, peak_shm = max(peak, rss), max(peak_n, n), max(peak_shm, shm)
            peak_with_shm = max(peak_with_shm, rss + shm)
            samples += 1
            time.sleep(interval)
        wall = time.perf_counter() - started
    tree_cpu = sum(cpu.values())
    other = max(0.0, _busy(psutil.cpu_times()) - busy0 - tree_cpu)
    return Measured(
        child.returncode, wall, peak, peak_with_shm, peak_shm, peak_n, samples, tree_cpu, other
    )
