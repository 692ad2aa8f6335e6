"""A run's destination while it runs: locked, prepared, journaled, cleaned up on failure.

:func:`workspace` holds DST's lock for the run, prepares DST and its work
folder and starts (or continues) the journal. A run interrupted, or one
whose tile failed, keeps what is done for ``--resume`` and says so; any
other failure (a full disk included) removes what the run wrote, and a full
disk is one line. :meth:`Workspace.complete` marks the run complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiler import cache as value_cache
from tiler import resumption
from tiler.api.job import Job
from tiler.api.record import RunResult, finished
from tiler.cluster import in_this_process, on_this_machine
from tiler.errors import TileError
from tiler.executor import Executor
from tiler.io import destination, output, stores
from tiler.journal import Journal
from tiler.tiling import TileGrid

# Values kept in memory for the Otsu passes at most (9 bytes per pixel: 2 GiB is
# about 230 megapixels); larger images use tmpfs, or recompute.
MEMORY_CACHE_BYTES = 2 * 2**30


@dataclass
class Workspace:
    """DST while a run writes it: its work folder, the journal and the lock."""

    workdir: Any  # a Path, or a UPath in object storage (tiler.io.stores)
    journal: Journal
    lock: destination.DestinationLock
    log: Callable[[str], None]
    cache: str | None = None  # the Otsu passes' value cache, dropped when the run ends

    def value_cache(self, grid: TileGrid, executor: Executor, remote_input: bool) -> str:
        """The run's value cache (:func:`choose_value_cache`), noted in the journal."""
        self.cache = choose_value_cache(grid, executor, self.workdir, remote_input)
        self.journal.note_cache(self.cache)
        return self.cache

    def complete(self) -> None:
        """The run is complete (run.json written): no lock file, no work folder.

        The journal goes only now, so that a run killed while finishing can be
        resumed; failing to remove it must not undo a complete run.
        """
        self.lock.mark_complete()  # a complete DST keeps no lock file
        try:
            stores.remove(self.workdir)
        except Exception as exc:  # the run is complete all the same; say what is left
            self.log(f"{self.workdir}: could not remove the work folder ({exc!r}); remove it")


@contextlib.contextmanager
def workspace(
    job: Job, *, overwrite: bool, resume: bool, log: Callable[[str], None]
) -> Iterator[Workspace]:
    """DST locked and prepared for ``job``, its journal started, until the run ends."""
    dst, grid = job.dst, job.grid
    try:
        created = not dst.exists()
        # Held until the run returns or raises; a second run into dst is refused here, touching
        # nothing.
        lock = destination.lock_destination(dst, job.src_path)
    except Exception as exc:  # object storage refusing the credentials, say: one line
        destination.raise_for_write_error(dst, exc)
        raise
    try:
        workdir = destination.prepare_destination(
            dst, job.src_path, overwrite=overwrite, resume=resume
        )
        log(
            f"{job.source.name}: {grid.shape[0]} x {grid.shape[1]} px, "
            f"{len(grid)} tile(s) of {grid.chunks}"
        )
        journal = Journal.start(workdir, job.identity, resume=resume)  # refusing touches nothing
    except BaseException as exc:
        if destination.disk_error(exc) is not None:  # a full disk: remove all, as below
            destination.discard_partial(dst, created=created)
        lock.release(remove_dst=created)
        destination.raise_for_write_error(dst, exc)
        raise
    space = Workspace(workdir, journal, lock, log)
    try:
        for stale in journal.stale_caches:
            value_cache.drop(stale)
        if journal.attempt > 1:
            log(f"resuming: attempt {journal.attempt}")
        yield space
    except BaseException as exc:
        lost = destination.storage_error(dst, exc) is not None
        if lost or (
            isinstance(exc, (KeyboardInterrupt, TileError)) and destination.disk_error(exc) is None
        ):
            # Interrupted, a tile's workers died, or object storage failed: keep what is done
            # for --resume (in object storage, the journal is there if the run got this far).
            if lost or (workdir / "journal").exists():
                log(f"{dst}: {resumption.RESUME_HINT}")
            destination.raise_for_write_error(dst, exc)
            raise
        # Anything else, a full disk included (in a tile or not): remove what was written.
        destination.discard_partial(dst, created=created)
        destination.raise_for_write_error(dst, exc)  # a full disk: one line, no traceback
        raise
    finally:
        if space.cache is not None:
            value_cache.drop(space.cache)
        lock.release(remove_dst=created)


def already_complete(job: Job, log: Callable[[str], None]) -> RunResult | None:
    """The result in DST if it holds this very run, complete (its leftover work removed)."""
    dst = job.dst
    if (done := finished(dst, job.identity)) is None:
        return None
    log(f"{dst}: already complete; nothing to resume")
    if (dst / output.WORKDIR).exists():  # killed between run.json and removing its work
        lock = destination.lock_destination(dst, job.src_path)
        lock.mark_complete()
        try:
            stores.remove(dst / output.WORKDIR)
        finally:
            lock.release()
    return done


def choose_value_cache(
    grid: TileGrid, executor: Executor, workdir: Any, remote_input: bool = False
) -> str:
    """Where the Otsu passes keep each tile's values (see :mod:`tiler.cache`).

    In memory when every task runs in this process and the values (9 bytes
    per pixel) fit both ``MEMORY_CACHE_BYTES`` and a quarter of the free
    memory: the arrays are kept as computed, at no cost. Otherwise on
    /dev/shm when every worker is on this machine and they fit a quarter of
    the free memory. Otherwise, with workers on this machine, the range pass
    keeps the decoded input pixels for the histogram pass (up to
    ``tiler.cache.PIXELS_MEMORY`` of them in memory when the tasks run in this
    process; with a ``remote_input``, the rest in files rather than
    downloaded again), and the histogram pass compressed bin codes for the
    mask pass, in DST's work folder (writing the values themselves there is
    slower than recomputing them: see :mod:`tiler.cache`); for a DST in
    object storage, in a local temporary folder. Remote workers recompute.
    """
    estimate = 9 * grid.shape[0] * grid.shape[1] * 1.1
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if in_this_process(executor) and estimate <= min(MEMORY_CACHE_BYTES, 0.25 * available):
        return value_cache.memory_cache()
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and on_this_machine(executor):
        if estimate < 0.25 * min(shutil.disk_usage(shm).free, available):
            return tempfile.mkdtemp(prefix="tiler-values-", dir=shm)
    if on_this_machine(executor):
        memory = value_cache.PIXELS_MEMORY if in_this_process(executor) else 0
        remote = stores.is_remote(workdir)
        local = Path(tempfile.mkdtemp(prefix="tiler-codes-")) if remote else workdir / "codes"
        return value_cache.codes_cache(local, memory, files=remote_input)
    return value_cache.NONE
