"""Taking a run's DST: one run at a time, what it may replace there, and cleaning up.

One run at a time writes a DST: it holds an exclusive ``flock`` on
``DST/.tiler-lock`` from before it touches anything until it is done (see
:func:`lock_destination`). A run killed outright loses the lock with its
process, so a lock is never stale: a lock file left behind is taken over.

A run killed while finishing (after the label store got its final name,
before ``run.json``) leaves its journal beside the final names; ``--resume``
takes them back as its own (see :func:`prepare_destination` and
:func:`tiler.io.label_store.create_label_store`). A full disk is the user's
to fix: :func:`raise_for_write_error` says so in one line.

A DST in object storage (:mod:`tiler.io.stores`) has no lock: one run at a
time per prefix is the user's to ensure. Its requests refused or failing
(credentials, a missing bucket, an endpoint gone) are one line too, and
what is written stays for ``--resume``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

from tiler.errors import OutputError
from tiler.io import remote, stores, targets
from tiler.io.output import (
    JOURNAL_IDENTITY,
    LABELS,
    LEFTOVERS,
    LOCK,
    MANIFEST,
    OBJECTS,
    PARTIAL_LABELS,
    RUN_OUTPUTS,
    WORKDIR,
)


def _check_destination(dst: Any, src: Path | None) -> None:
    """Refuse a ``dst`` that is, or holds, the input, or is not a directory (touches nothing)."""
    if src is not None and not stores.is_remote(dst):
        src = Path(src).resolve()
        if dst.resolve() == src or dst.resolve() in src.parents:
            raise OutputError(
                f"{dst}: the output directory must not be (or contain) the input {src}"
            )
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst}: exists and is not a directory")


class DestinationLock:
    """An exclusive ``flock`` on ``DST/.tiler-lock``, held while a run writes ``DST``.

    The lock belongs to the open file, so it dies with the process: a run
    killed with SIGKILL leaves at most an unlocked file, which the next run
    takes over. The file holds the pid of the run holding it, for the message
    of a run refused meanwhile. It is opened close-on-exec, so worker
    processes a run spawns do not keep it held after the run is gone.

    A complete run removes the file. A run that does not complete (refused
    on ``--resume``, say) removes it only if it made it: a file it took over
    from a killed run gets its old content back, so that such a run leaves
    ``dst`` as it found it.
    """

    def __init__(self, dst: Any, fd: int | None, previous: bytes | None = None):
        self.dst = dst
        self._fd = fd
        self._previous = previous  # the file's content before this run took it over
        self._complete = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def mark_complete(self) -> None:
        """The run is complete: on release, the lock file goes whoever made it."""
        self._complete = True

    def release(self, *, remove_dst: bool = False) -> None:
        """Let go of ``dst``; with ``remove_dst``, also remove ``dst`` if left empty.

        The file is unlinked while still locked: a run that opened it meanwhile
        then finds its lock on a file no longer in ``dst`` and starts over (see
        :func:`lock_destination`), so two runs never both hold ``dst``.
        """
        if self._fd is not None:
            try:
                if self._complete or self._previous is None or not self._restore():
                    (self.dst / LOCK).unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None
        if remove_dst and not stores.is_remote(self.dst):
            _remove_if_empty(self.dst)

    def _restore(self) -> bool:
        """Put back the content the file had before; False if the disk refuses (it is full,
        say: the file is then removed instead, being tiler's own)."""
        assert self._fd is not None and self._previous is not None
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, self._previous, 0)
        except OSError:
            return False
        return True


def _holder(path: Path) -> str:
    """Who holds the lock file ``path``, in words, from the pid written in it."""
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):  # not yet written by its holder, or gone since
        return "another tiler run"
    return f"another tiler run (pid {pid})"


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """Open (creating if need be) the lock file; the descriptor, and whether it was made."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644), True
    except FileExistsError:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC), False


def lock_destination(dst: Any, src: Path | None = None) -> DestinationLock:
    """Take ``dst`` for this run (creating it if need be), or refuse if another run has it.

    Refused, or refused for the reasons :func:`prepare_destination` checks
    first (``dst`` is the input, or a file), nothing in ``dst`` is touched.
    On a file system without ``flock`` (some network file systems), or in
    object storage, the run goes ahead unprotected: refusing every run there
    would be worse.
    """
    dst = stores.folder(dst)
    _check_destination(dst, src)
    if stores.is_remote(dst):
        return DestinationLock(dst, None)
    created = not dst.exists()
    path = dst / LOCK
    while True:
        try:
            dst.mkdir(parents=True, exist_ok=True)
            fd, made = _open_lock_file(path)
        except FileNotFoundError:  # dst or the file removed meanwhile by a run letting go
            continue
        except OSError as exc:
            raise OutputError(f"{dst}: cannot write here: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{dst}: {_holder(path)} is writing here; wait for it to finish"
            ) from None
        except OSError:  # no flock here (ENOLCK, EOPNOTSUPP, ...): go ahead without
            os.close(fd)
            if made:
                path.unlink(missing_ok=True)
            return DestinationLock(dst, None)
        # The run before may have unlinked the file between our open and our lock
        # (see DestinationLock.release): a lock on that file guards nothing.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    lock = DestinationLock(dst, fd, None if made else os.pread(fd, 4096, 0))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # a full disk, say: give the lock back before saying so
        lock.release(remove_dst=created)
        raise_for_write_error(dst, exc)
        raise
    return lock


def prepare_destination(
    dst: Any, src: Path | None, *, overwrite: bool, resume: bool = False
) -> Any:
    """Check ``dst`` can take a run's outputs, empty it if allowed, and return its work folder.

    ``dst`` may hold only tiler's own outputs (:data:`RUN_OUTPUTS`, see
    :func:`tiler.io.targets.claim`): a previous run, replaced with
    ``overwrite``, or what an interrupted one left. An unfinished run (its
    journal) is continued with ``resume`` and refused without it or
    ``overwrite``: a plain rerun does not throw its work away. Resuming, the
    work folder (the journal, stage stores) and the partial label store are
    kept; a run killed while finishing has its journal beside ``labels.zarr``
    (and maybe ``objects.parquet``) and no ``run.json``: those are kept too,
    as this run's own (the journal's identity is checked next). Refused,
    nothing is touched. The lock file (:func:`lock_destination`) never is.
    """
    dst = stores.folder(dst)
    _check_destination(dst, src)
    unfinished = (dst / JOURNAL_IDENTITY).is_file()
    if unfinished and not (resume or overwrite):
        raise OutputError(
            f"{dst}: holds an unfinished run; pass --resume to continue it, "
            "or --overwrite to start again"
        )
    keep = {LOCK}
    if resume and unfinished:
        keep |= {WORKDIR, PARTIAL_LABELS, LABELS, OBJECTS}
    entries = targets.claim(
        dst, RUN_OUTPUTS, overwrite=overwrite, keep=keep, holds="the outputs of a tiler run"
    )
    # The manifest goes first, so the directory never looks complete meanwhile.
    for entry in sorted(entries, key=lambda e: e.name != MANIFEST):
        stores.remove(entry)
    work = dst / WORKDIR
    stores.make_folder(work)
    return work


def discard_partial(dst: Any, *, created: bool) -> None:
    """After a failed run: remove what it wrote, and ``dst`` itself if the run created it.

    That includes ``labels.zarr`` and ``objects.parquet`` if the run got as
    far as finishing: any there now are this run's, as :func:`prepare_destination`
    removed or refused any others. The lock file is its holder's to remove.
    """
    dst = stores.folder(dst)
    for name in (*LEFTOVERS, LABELS, OBJECTS):
        stores.remove(dst / name)
    if created and not stores.is_remote(dst):
        _remove_if_empty(dst)


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


# Why the disk refused a write, for errors that are the disk's and not tiler's.
DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def disk_error(exc: BaseException) -> OSError | None:
    """The disk refusing a write behind ``exc`` (itself, or its ``__cause__``s), if any.

    Tile tasks wrap their errors in a :class:`~tiler.errors.TileError` naming
    the tile; the disk's error is then its cause.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in DISK_ERRORS:
            return cause
        cause = cause.__cause__
    return None


# Where the errors of object storage's clients come from (besides OSError's kinds).
STORAGE_MODULES = frozenset(
    {"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "azure"}
)


def client_error(exc: BaseException, *, os_errors: bool = False) -> BaseException | None:
    """The error of an object storage client (botocore, aiohttp, s3fs, ...) behind ``exc``.

    ``exc`` itself or any exception it came from: a tile's
    :class:`~tiler.errors.TileError` has the client's error as its cause.
    ``os_errors``: Python's ``OSError``s count too (s3fs raises ``PermissionError``
    or ``FileNotFoundError`` from botocore's error).
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        client = type(cause).__module__.split(".")[0] in STORAGE_MODULES
        if client or (os_errors and isinstance(cause, OSError)):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def storage_error(dst: Any, exc: BaseException) -> BaseException | None:
    """Object storage refusing or failing a request behind ``exc``, if ``dst`` is in one."""
    return client_error(exc, os_errors=True) if stores.is_remote(dst) else None


def raise_for_write_error(dst: Any, exc: BaseException) -> None:
    """Raise an :class:`OutputError` naming ``dst`` if ``exc`` is the disk refusing a write.

    A full disk (or quota, file size limit, read-only file system) is for the
    user to fix: one line naming ``dst`` and the reason, not a traceback.
    The OS's own words are used (pyarrow's message for ENOSPC is longer).
    So is object storage refusing or failing a request (:func:`storage_error`):
    access denied, no such bucket, the endpoint does not answer. Anything
    else returns, for the caller to re-raise as it was.
    """
    if isinstance(exc, OutputError):
        return
    if (failed := storage_error(dst, exc)) is not None:
        where = remote.endpoint_note(str(dst))
        raise OutputError(
            f"{dst}: cannot write the outputs{where}: {remote.reason(failed)}"
        ) from exc
    cause = disk_error(exc)
    if cause is None:
        return
    where = f" ({cause.filename})" if cause.filename else ""
    raise OutputError(
        f"{dst}: cannot write the outputs: {os.strerror(cause.errno).lower()}{where}"
    ) from exc
