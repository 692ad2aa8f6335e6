"""Faults around the output directory, with real `tiler run` processes.

* SIGKILL at many points of a run's life (before, during and after the tile
  writes, while finishing): DST never looks complete unless it is, byte for
  byte, and ``--resume`` from what is left finishes with the clean run's bytes.
* A full disk (a small tmpfs, filled at chosen moments; and a file size
  limit, which runs everywhere): one line naming DST and the reason, no
  traceback, and nothing left that looks complete.
* Two runs into one DST: the second is refused, touching nothing.

Kill points are of two kinds: a hook (:data:`HOOK`, a few lines run with
``python -c`` that wrap one function of tiler and SIGKILL the process at its
n-th call) for the moments a timer would rarely hit, and delays drawn at
random over a clean run's duration.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_cluster import environment, tiler_command

from tiler.errors import OutputError
from tiler.io.destination import lock_destination
from tiler.io.output import LABELS, LOCK, MANIFEST, OBJECTS, WORKDIR
from tiler.synthetic import SyntheticField, write_geotiff

CHUNK = 48  # 5 x 6 = 30 tiles a pass, 5 passes: a run of about a second after its imports
FINAL = {LABELS, OBJECTS, MANIFEST}

# Run `tiler` with one function wrapped, as $TILER_TEST_HOOK (JSON) says:
# {"target": "module:attr[.attr]", "when": "before"|"after", "call": n, "action": "kill"|"fill",
#  "fill": path}. "kill" SIGKILLs this process at the n-th call; "fill" writes ``fill`` until
# its file system is full. Tiler itself knows nothing of it.
HOOK = r"""
import errno, importlib, json, os, signal, sys
spec = json.loads(os.environ["TILER_TEST_HOOK"])
module, _, attrs = spec["target"].partition(":")
owner = importlib.import_module(module)
*path, name = attrs.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, name)
calls = 0

def act():
    if spec["action"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    with open(spec["fill"], "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as exc:  # full: what the hook is for
            if exc.errno != errno.ENOSPC:
                raise

def hooked(*args, **kwargs):
    global calls
    calls += 1
    if spec["when"] == "before" and calls == spec["call"]:
        act()
    result = original(*args, **kwargs)
    if spec["when"] == "after" and calls == spec["call"]:
        act()
    return result

setattr(owner, name, hooked)
from tiler.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("field") / "field.tif"
    return write_geotiff(SyntheticField(height=240, width=288, seed=5), path, blocksize=64)


@pytest.fixture(scope="module")
def clean(field, tmp_path_factory) -> Path:
    """A clean run (sync scheduler): what every run, killed or not, must come to."""
    dst = tmp_path_factory.mktemp("clean") / "out"
    proc = run_tiler(field, dst, "--scheduler", "sync")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(dst)) == sorted(FINAL)
    files = final_files(dst)
    # The store is compared file by file: its metadata and one chunk file per tile.
    assert f"{LABELS}/labels/zarr.json" in files
    assert sum(k.startswith(f"{LABELS}/labels/c/") for k in files) == 30
    return dst


def command(src: Path, dst: Path, *args: object, hook: dict | bool | None = None) -> list[str]:
    """`tiler run SRC DST ARGS`, or with ``hook`` the same through :data:`HOOK`."""
    base = ("--chunk-size", CHUNK, "-q", *args)
    if not hook:
        return tiler_command(src, dst, *base)
    return [sys.executable, "-c", HOOK, "run", str(src), str(dst), *map(str, base)]


def hook_environment(hook: dict | None) -> dict[str, str]:
    return environment(**({} if hook is None else {"TILER_TEST_HOOK": json.dumps(hook)}))


def run_tiler(
    src: Path, dst: Path, *args: object, hook: dict | None = None, **options
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(src, dst, *args, hook=hook),
        env=hook_environment(hook),
        capture_output=True,
        text=True,
        timeout=180,
        **options,
    )


def start_tiler(src: Path, dst: Path, *args: object) -> subprocess.Popen:
    return subprocess.Popen(
        command(src, dst, *args),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def final_files(dst: Path) -> dict[str, bytes]:
    """Every file under a final name but ``run.json`` (whose timings differ), by path."""
    files = {}
    if (dst / LABELS).is_dir():
        for path in sorted((dst / LABELS).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(dst))] = path.read_bytes()
    if (dst / OBJECTS).exists():
        files[OBJECTS] = (dst / OBJECTS).read_bytes()
    return files


def differences(got: dict[str, bytes], want: dict[str, bytes]) -> list[str]:
    """The paths that are missing, extra or different (readable, unlike a diff of bytes)."""
    return sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))


def assert_lock_free(dst: Path) -> None:
    """A lock file a killed run left is no longer locked: its lock died with it."""
    if not (dst / LOCK).exists():
        return
    fd = os.open(dst / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_killed(dst: Path, clean: Path) -> str:
    """What a killed run left must not look complete unless it is the clean run's bytes.

    Returns which final names were there, to tell the kill points apart.
    """
    names = set(os.listdir(dst)) if dst.exists() else set()
    want = final_files(clean)
    got = final_files(dst)
    if LABELS in names:  # renamed only once whole: must be the clean run's, file for file
        labels = {k: v for k, v in want.items() if k.startswith(f"{LABELS}/")}
        assert differences({k: v for k, v in got.items() if k != OBJECTS}, labels) == []
    if OBJECTS in names:
        assert got[OBJECTS] == want[OBJECTS]
    if MANIFEST in names:
        manifest = json.loads((dst / MANIFEST).read_text())  # never a torn file
        assert manifest["complete"] is True
        assert differences(got, want) == []
        expected = json.loads((clean / MANIFEST).read_text())
        assert manifest["object_count"] == expected["object_count"]
    assert_lock_free(dst)
    return "+".join(sorted(names & FINAL)) or "-"


def resume_and_compare(src: Path, dst: Path, clean: Path, *args: object) -> None:
    """``--resume`` finishes what a killed run left, with the clean run's bytes."""
    complete = (dst / MANIFEST).exists()  # killed after run.json: left as it is
    proc = run_tiler(src, dst, "--resume", *args)
    assert proc.returncode == 0, proc.stderr
    assert differences(final_files(dst), final_files(clean)) == []
    assert json.loads((dst / MANIFEST).read_text())["complete"] is True
    left = set(os.listdir(dst)) - FINAL
    # A run killed between run.json and removing its work folder left it: resuming
    # the complete run tidies it away.
    assert left == set(), (complete, left)


def kill_after(src: Path, dst: Path, delay: float, *args: object, anchored: bool = False) -> int:
    """Start `tiler run`, SIGKILL it after ``delay`` seconds; its exit status (0 if it
    finished first; anything else fails here, with its stderr).

    ``anchored``: count from when it has taken DST (its pid in the lock file), after its
    imports, rather than from its start.
    """
    with start_tiler(src, dst, *args) as run:
        try:
            while anchored and run.poll() is None and not holds(dst, run.pid):
                time.sleep(0.002)
            run.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            run.send_signal(signal.SIGKILL)
            run.wait(timeout=60)
        stderr = run.stderr.read()
    assert run.returncode in (0, -signal.SIGKILL), stderr
    return run.returncode


def holds(dst: Path, pid: int) -> bool:
    """Whether process ``pid`` has taken ``dst`` (it wrote its pid in the lock file)."""
    try:
        return (dst / LOCK).read_text() == f"{pid}\n"
    except FileNotFoundError:
        return False


def hook(target: str, when: str = "after", call: int = 1, **more) -> dict:
    return {"target": target, "when": when, "call": call, "action": "kill", **more}


# In order of a run's life, with the final names each leaves; each attempt resumes what the
# one before left, and is killed in turn.
KILL_POINTS = [
    (hook("tiler.io.destination:lock_destination"), "-"),  # DST holds the lock file only
    (hook("tiler.journal:PassLog.record", call=40), "-"),  # part-way through the histogram
    (hook("tiler.io.label_store:create_label_store"), "-"),  # every pass but the write pass done
    (hook("tiler.tasks:write_labels", call=7), "-"),  # label chunks written, not yet logged
    (hook("tiler.journal:PassLog.record", call=9), "-"),  # more chunks written and logged
    (hook("tiler.io.label_store:finish_label_store", when="before"), "-"),  # the store, whole
    (hook("tiler.io.label_store:finish_label_store"), LABELS),  # labels.zarr final, no table
    # Resuming took labels.zarr back as partial, and renamed it again: the table is written,
    # not renamed.
    (hook("pyarrow.parquet:ParquetWriter.close"), LABELS),
    (hook("tiler.io.objects_table:write_object_groups"), f"{LABELS}+{OBJECTS}"),  # no run.json
]
# Hooks in the driver, for the local scheduler (tasks run in its worker's threads).
LOCAL_KILL_POINTS = [
    (hook("tiler.journal:PassLog.record", call=20), "-"),
    (hook("tiler.io.label_store:finish_label_store"), LABELS),
    (hook("tiler.io.objects_table:write_object_groups"), f"{LABELS}+{OBJECTS}"),
]


def again(dst: Path) -> tuple[str, ...]:
    """A first run into a fresh DST, else ``--resume`` of what is there."""
    return ("--resume",) if dst.exists() else ()


def hooked_chain(src: Path, dst: Path, clean: Path, scheduler: str) -> None:
    """Kill at each deterministic point in turn, each attempt resuming what the last one left;
    then resume to the end."""
    args = ("--scheduler", scheduler)
    for point, names in KILL_POINTS if scheduler == "sync" else LOCAL_KILL_POINTS:
        proc = run_tiler(src, dst, *args, *again(dst), hook=point)
        assert proc.returncode == -signal.SIGKILL, (point, proc.stderr)  # the hook was reached
        assert check_killed(dst, clean) == names, point
    resume_and_compare(src, dst, clean, *args)


def random_chain(src: Path, tmp: Path, clean: Path, scheduler: str) -> list:
    """Kill at the very end (run.json written, the work folder not yet removed), timing that
    run from when it took DST (after its imports) to then. Then, in two chains of two kills,
    kill at delays drawn over that time. What was seen, for the log."""
    args = ("--scheduler", scheduler)
    dst = tmp / "committed"
    env = hook_environment(hook("tiler.io.run_record:write_manifest"))
    with subprocess.Popen(
        command(src, dst, *args, hook=True), env=env, stderr=subprocess.PIPE, text=True
    ) as proc:
        while not holds(dst, proc.pid) and proc.poll() is None:
            time.sleep(0.002)
        started = time.monotonic()
        stderr = proc.stderr.read()
    seconds = time.monotonic() - started  # from taking DST to run.json
    assert proc.returncode == -signal.SIGKILL, stderr
    assert check_killed(dst, clean) == "+".join(sorted(FINAL))
    resume_and_compare(src, dst, clean, *args)

    draw = random.Random(f"kills-{scheduler}")
    seen: list = [round(seconds, 2)]
    for chain in range(2):
        dst = tmp / f"random-{chain}"
        for attempt in range(2):
            # Mostly while DST is being written; once from the start (in the imports, mostly).
            anchored = not chain == attempt == 0
            delay = draw.uniform(0, seconds if anchored else 2.0)
            status = kill_after(src, dst, delay, *args, *again(dst), anchored=anchored)
            names = check_killed(dst, clean)
            passes = len(list((dst / WORKDIR / "journal").glob("*.log")))
            seen.append((anchored, round(delay, 2), status, f"{passes} pass logs", names))
        resume_and_compare(src, dst, clean, *args)
    return seen


@pytest.mark.parametrize("scheduler", ["sync", "local"])
def test_a_run_killed_anywhere_never_looks_complete_and_resumes_exactly(
    field, clean, tmp_path, scheduler
):
    """SIGKILL at deterministic points and at random delays; after each kill DST never looks
    complete unless it is the clean run's bytes, and --resume finishes it exactly.

    The two chains are independent (each its own DST) and run side by side, for time.
    """
    with ThreadPoolExecutor(2) as pool:
        hooked = pool.submit(hooked_chain, field, tmp_path / "hooked", clean, scheduler)
        randomly = pool.submit(random_chain, field, tmp_path, clean, scheduler)
        hooked.result()
        seen = randomly.result()
    print(
        f"{scheduler}: {seen[0]} s from taking DST to run.json; "
        f"(after taking DST, delay, exit status, journal, final names): {seen[1:]}"
    )


# ---------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------


def assert_disk_error(proc: subprocess.CompletedProcess, dst: Path, reason: str) -> None:
    """Non-zero, one line naming ``dst`` and ``reason``, no traceback; DST gone (the run
    created it), so nothing that could look complete is left."""
    assert proc.returncode == OutputError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"tiler: error: {dst}: "), lines[0]
    assert reason in lines[0], lines[0]
    assert not dst.exists(), sorted(os.listdir(dst))


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of ``size`` KiB under tmp_path (root only); unmounted afterwards."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root (the file size limit test runs anyway)")
        point = tmp_path / f"disk-{len(mounts)}"
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=True)


DISK_FULL_AT = {
    "start": None,  # a disk too small for even the first pass
    "tile writes": hook("tiler.io.label_store:create_label_store", when="before", action="fill"),
    "table": hook("tiler.io.objects_table:write_object_groups", when="before", action="fill"),
    "manifest": hook("tiler.io.run_record:write_manifest", when="before", action="fill"),
}


@pytest.mark.parametrize("moment", DISK_FULL_AT)
def test_a_full_disk_is_one_line_naming_dst_and_leaves_nothing(field, tmp_path, small_disk, moment):
    """The disk fills up at a chosen moment (another process fills it, or it is too small)."""
    disk = small_disk(64 if moment == "start" else 2048)
    dst = disk / "out"
    spec = DISK_FULL_AT[moment]
    if spec is not None:
        spec = {**spec, "fill": str(disk / "filler")}
    proc = run_tiler(field, dst, "--scheduler", "sync", hook=spec)
    assert_disk_error(proc, dst, "no space left on device")
    # What the run wrote is gone: only the filler takes room on the disk.
    assert sorted(os.listdir(disk)) == ([] if spec is None else ["filler"])


def no_bigger_files_than(limit: int):
    """For ``preexec_fn``: files may not grow past ``limit`` bytes (writes fail with EFBIG)."""

    def limit_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killing signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_size


@pytest.mark.parametrize("limit", [1024, 8192])
def test_a_file_size_limit_is_one_line_naming_dst(field, tmp_path, limit):
    """Writes refused by the OS anywhere (1 KiB: the journal's first file; 8 KiB: a pass's
    log), without mounting anything: the same one line, nothing left."""
    dst = tmp_path / "out"
    proc = run_tiler(field, dst, "--scheduler", "sync", preexec_fn=no_bigger_files_than(limit))
    assert_disk_error(proc, dst, os.strerror(errno.EFBIG).lower())


# ---------------------------------------------------------------------------
# Two runs into one DST
# ---------------------------------------------------------------------------


def snapshot(dst: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(dst)): p.read_bytes() if p.is_file() else None
        for p in sorted(dst.rglob("*"))
    }


def test_a_second_run_into_the_same_dst_is_refused_touching_nothing(field, clean, tmp_path):
    reference = clean
    dst = tmp_path / "out"
    first = start_tiler(field, dst, "--scheduler", "sync")
    try:
        deadline = time.monotonic() + 120
        while not list((dst / WORKDIR / "journal").glob("*.log")):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.002)
        first.send_signal(signal.SIGSTOP)  # frozen mid-run, holding DST for as long as needed
        before = snapshot(dst)
        for extra in ((), ("--overwrite",), ("--resume",)):
            proc = run_tiler(field, dst, "--scheduler", "sync", *extra)
            assert proc.returncode == OutputError.exit_code, proc.stderr
            assert "Traceback" not in proc.stderr
            assert proc.stderr.strip().splitlines() == [
                f"tiler: error: {dst}: another tiler run (pid {first.pid}) is writing here; "
                "wait for it to finish"
            ]
            assert snapshot(dst) == before, extra
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
            first.wait()
        first.stdout.close()
        first.stderr.close()
    # The first run was not disturbed, and left no lock file behind.
    assert sorted(os.listdir(dst)) == sorted(FINAL)
    assert differences(final_files(dst), final_files(reference)) == []

    # A run killed outright lets go of DST with its process.
    kill = hook("tiler.io.label_store:create_label_store")
    proc = run_tiler(field, dst, "--scheduler", "sync", "--overwrite", hook=kill)
    assert proc.returncode == -signal.SIGKILL
    assert (dst / LOCK).read_text().strip().isdigit()  # its pid, for nobody now
    assert_lock_free(dst)
    resume_and_compare(field, dst, reference, "--scheduler", "sync")


def test_the_lock_in_one_process(tmp_path, monkeypatch):
    """Two takes of one DST conflict even in one process; release removes the file it made
    (and an empty DST on request); a lock taken on a file its holder unlinked is not
    trusted; a lock file taken over is left as found unless the run completes."""
    dst = tmp_path / "out"
    lock = lock_destination(dst)
    assert (dst / LOCK).read_text() == f"{os.getpid()}\n"
    with pytest.raises(OutputError, match=rf"another tiler run \(pid {os.getpid()}\)"):
        lock_destination(dst)
    lock.release(remove_dst=True)
    assert not dst.exists()
    lock.release()  # a second release does nothing

    # Between this run's open and its lock, the holder let go (unlinking the file) and a third
    # run made a new one: a lock on the unlinked file guards nothing, so it starts over.
    dst.mkdir()
    flocks = []

    def racing(fd: int, operation: int) -> None:
        if not flocks:
            os.unlink(dst / LOCK)
            (dst / LOCK).write_text("")
        flocks.append(fd)
        real_flock(fd, operation)

    real_flock = fcntl.flock
    monkeypatch.setattr(fcntl, "flock", racing)
    lock = lock_destination(dst)
    monkeypatch.undo()
    assert len(flocks) == 2
    assert os.stat(dst / LOCK).st_ino == os.fstat(flocks[1]).st_ino
    with pytest.raises(OutputError, match="is writing here"):
        lock_destination(dst)
    lock.release()
    # The file was the third run's: what it held is put back, and the file kept.
    assert (dst / LOCK).read_bytes() == b""

    # A lock file a killed run left: a run that does not complete leaves it as it was; a
    # complete run removes it.
    (dst / LOCK).write_text("12345\n")
    lock = lock_destination(dst)
    assert (dst / LOCK).read_text() == f"{os.getpid()}\n"
    lock.release()
    assert (dst / LOCK).read_text() == "12345\n"
    lock = lock_destination(dst)
    lock.mark_complete()
    lock.release()
    assert sorted(os.listdir(dst)) == []

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        lock_destination(tmp_path / "file")
