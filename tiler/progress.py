"""Progress of a run: one bar per pass (tiles done / total, MP/s, ETA).

On a terminal (or in a Jupyter notebook) the bars are tqdm's, redrawn in
place on stderr. In a log file
(a batch job's output) a pass prints a plain line at most every
``LOG_INTERVAL`` seconds instead, so a long job's log stays readable. Tiles
that a resumed run takes from its journal count as done from the start and
do not enter the rate.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO

from tqdm import tqdm

LOG_INTERVAL = 30.0


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
    """A line every ``interval`` seconds: ``labels: 120/323 tiles, 9.1 MP/s, ETA 0:00:05``."""

    def __init__(self, progress: Progress, name: str, total: int, done: int, megapixels: float):
        self.file, self.interval = progress.file, progress.interval
        self.name, self.total, self.done, self.first = name, total, done, done
        self.megapixels_per_tile = megapixels / total if total else 0.0
        self.started = self.last = time.monotonic()

    def update(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last < self.interval or self.done == self.total:
            return
        self.last = now
        rate = (self.done - self.first) / max(now - self.started, 1e-9)
        eta = timedelta(seconds=round((self.total - self.done) / rate))
        speed = rate * self.megapixels_per_tile
        self.file.write(
            f"  {self.name}: {self.done}/{self.total} tiles, {speed:.1f} MP/s, ETA {eta}\n"
        )
        self.file.flush()

    def close(self) -> None:
        pass

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

    def update(self) -> None:
        """One more tile done."""
        self.bar.update(1)
        rate = self.bar.format_dict.get("rate")
        if rate:
            self.bar.set_postfix_str(f"{rate * self.megapixels_per_tile:.1f} MP/s", refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> PassBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
