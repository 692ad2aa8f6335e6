"""Progress of a run: one bar per pass (tiles done / total, MP/s, ETA).

On a terminal (or in a Jupyter notebook) the bars are tqdm's, drawn as a
pass starts and redrawn in place on stderr at least every ``REFRESH``
seconds while a tile runs, so the time shown moves. In a log file (a batch
job's output) a pass still running after ``FIRST_LINE`` seconds prints a
line, then one every ``LOG_INTERVAL`` seconds whether or not a tile
finished meanwhile: a long job's log stays readable, a pass whose first
tile takes long is seen running from the first second, and passes that
take less print nothing. Tiles that a resumed run takes from its journal
count as done from the start and do not enter the rate.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0
FIRST_LINE = 1.0
REFRESH = 1.0


class _Heartbeat:
    """Calls ``beat`` after ``first`` seconds, then every ``period``, on a daemon thread."""

    def __init__(self, period: float, beat: Callable[[], None], first: float | None = None):
        self._stop = threading.Event()
        args = (period, beat, period if first is None else first)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()

    def _run(self, period: float, beat: Callable[[], None], first: float) -> None:
        wait = first
        while not self._stop.wait(wait):
            beat()
            wait = period

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Progress:
    """Makes the bar of each pass; disabled, it makes bars that draw nothing."""

    def __init__(
        self, enabled: bool = True, file: TextIO | None = None, interval: float = LOG_INTERVAL
    ):
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        self.interval = interval

    def bar(self, name: str, total: int, done: int, megapixels: float) -> PassBar | LogLines:
        """The bar of one pass over ``total`` tiles of ``megapixels`` in all, ``done`` already."""
        if self.enabled and not (self.file.isatty() or _in_a_notebook()):
            return LogLines(self, name, total, done, megapixels)
        return PassBar(self, name, total, done, megapixels)


def _in_a_notebook() -> bool:
    """Whether this runs in a Jupyter kernel, whose output redraws a line on \\r as a terminal."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class LogLines:
    """A line after the first second, then one every ``interval`` seconds:
    ``labels: 120/323 tiles, 9.1 MP/s, ETA 0:00:05``, or
    ``labels: 0/323 tiles, running for 0:00:01`` while no tile has finished."""

    def __init__(self, progress: Progress, name: str, total: int, done: int, megapixels: float):
        self.file, self.interval = progress.file, progress.interval
        self.name, self.total, self.done, self.first = name, total, done, done
        self.megapixels_per_tile = megapixels / total if total else 0.0
        self.started = time.monotonic()
        first = min(FIRST_LINE, self.interval)
        self.last = self.started - self.interval + first  # the first line is due at ``first``
        self._lock = threading.Lock()
        self._heartbeat = _Heartbeat(self.interval, self._beat, first)

    def _write(self, text: str) -> None:
        self.file.write(f"  {self.name}: {text}\n")
        self.file.flush()

    def update(self) -> None:
        with self._lock:
            self.done += 1
            if self.done < self.total:
                self._report(time.monotonic())

    def _beat(self) -> None:
        with self._lock:
            if self.done < self.total:
                self._report(time.monotonic())

    def _report(self, now: float) -> None:
        """The progress line, if ``interval`` has passed since the last one (lock held)."""
        if now - self.last < self.interval:
            return
        self.last = now
        if self.done == self.first:
            elapsed = timedelta(seconds=round(now - self.started))
            self._write(f"{self.done}/{self.total} tiles, running for {elapsed}")
            return
        rate = (self.done - self.first) / max(now - self.started, 1e-9)
        eta = timedelta(seconds=round((self.total - self.done) / rate))
        speed = rate * self.megapixels_per_tile
        self._write(f"{self.done}/{self.total} tiles, {speed:.1f} MP/s, ETA {eta}")

    def close(self) -> None:
        self._heartbeat.stop()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PassBar:
    """A tqdm bar redrawn in place on a terminal."""

    def __init__(self, progress: Progress, name: str, total: int, done: int, megapixels: float):
        self.megapixels_per_tile = megapixels / total if total else 0.0
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=f"{name:<20}",
            unit="tile",
            file=progress.file,
            disable=not progress.enabled,
            mininterval=0.2,
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} tiles "
            "[{elapsed}<{remaining}{postfix}]",
        )
        # tqdm draws only on updates: redrawn meanwhile, the elapsed time moves during a long tile.
        self._heartbeat = _Heartbeat(REFRESH, self.bar.refresh) if progress.enabled else None

    def update(self) -> None:
        """One more tile done."""
        self.bar.update(1)
        rate = self.bar.format_dict.get("rate")
        if rate:
            self.bar.set_postfix_str(f"{rate * self.megapixels_per_tile:.1f} MP/s", refresh=False)

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        self.bar.close()

    def __enter__(self) -> PassBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
