"""Where a pass's graph runs: dask's local schedulers, a batch of keys at a time, or a client.

The graphs come from :mod:`tiler.plan`; :class:`tiler.passes.runner.PassRunner`
gives each pass's graph to one :class:`Executor` and hangs the journal and the
progress bar on the results as they arrive. A tile whose task fails raises
(:class:`tiler.errors.TileError` names it); the journal keeps the tiles done
for ``--resume``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import dask
import dask.threaded
from dask.callbacks import Callback

from tiler.errors import TileError
from tiler.taskgraph import Graph


class Executor:
    """Runs graphs on a named scheduler (``sync``, ``threads``) or a distributed client.

    ``threads``: the threaded scheduler's thread count (default: one per core).
    """

    def __init__(self, scheduler: Any = "threads", threads: int | None = None):
        self.scheduler = scheduler
        self.threads = threads

    def compute(
        self,
        graph: Graph,
        keys: list[str] | None = None,
        on_result: Callable[[str, Any], None] | None = None,
    ) -> list[Any]:
        """The values of ``keys`` (default: ``graph.keys``), in order.

        ``on_result(key, value)`` is called in this thread as each key's value
        arrives, in completion order: the journal and the progress bar hang on it.
        Only the tasks these keys need run.
        """
        keys = list(graph.keys if keys is None else keys)
        on_result = on_result or (lambda key, value: None)
        if not keys:
            return []
        if isinstance(self.scheduler, str):
            return self._local(graph, keys, on_result)
        return self._distributed(graph, keys, on_result)

    def _local(self, graph: Graph, keys: list[str], on_result) -> list[Any]:
        """The keys' values on dask's synchronous or threaded scheduler, in batches.

        dask's local schedulers convert, order and index all of the graph
        they are given before its first task runs, and keep that until the
        last: about 5 KB a tile of a label pass besides the graph itself (a
        524 288-tile pass ran out of 2 GiB there). Given ``BATCH`` keys at a
        time (see :func:`run_batches`), that memory is bounded by a batch,
        and the first tasks start at once.
        """
        pending = set(keys)

        def posttask(key, value, dsk, state, worker_id):
            if key in pending:  # once, though a later batch may pass its value on
                pending.discard(key)
                on_result(key, value)

        get = dask.get if self.scheduler == "sync" else dask.threaded.get
        if self.threads is not None and self.scheduler != "sync":
            get = partial(get, num_workers=self.threads)
        with Callback(posttask=posttask):
            values = run_batches(graph.tasks, keys, BATCH, get)
        return [values[key] for key in keys]

    def _distributed(self, graph: Graph, keys: list[str], on_result) -> list[Any]:
        from distributed import as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        client = self.scheduler
        futures = client.get(graph.tasks, keys, sync=False)
        values: dict[str, Any] = {}
        try:
            for future in as_completed(futures):
                try:
                    value = future.result()
                except KilledWorker as exc:
                    task = getattr(exc, "task", None) or future.key
                    raise TileError(
                        f"{graph.tile_of(task)}: the workers running it died "
                        f"{getattr(exc, 'allowed_failures', 0) + 1} times (it, or a task beside "
                        "it on the same worker, was killed: memory limit, OOM killer, node "
                        "loss; see the workers' logs)"
                    ) from exc
                except FutureCancelledError as exc:
                    raise TileError(
                        f"{graph.tile_of(future.key)}: cancelled by the scheduler ({exc})"
                    ) from exc
                values[future.key] = value
                on_result(future.key, value)
        finally:
            client.cancel([f for f in futures if f.key not in values])
            del futures
        return [values[key] for key in keys]


# Keys a local scheduler is given at a time (see Executor._local): enough that
# threads idle while a batch's last tasks finish cost nothing next to the
# batch; few enough that dask's bookkeeping of a batch (about 2.5 KB a task)
# stays a few tens of MB.
BATCH = 4096


class _Computed:
    """A value an earlier batch computed, opaque to dask's parsing of the graph."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _computed(box: _Computed) -> Any:
    return box.value


def _dependencies(dsk: dict[str, tuple], key: str) -> list[str]:
    """The keys a task takes as arguments (only top-level arguments are keys; see Graph)."""
    return [a for a in dsk[key][1:] if isinstance(a, str) and a in dsk]


def run_batches(dsk: dict[str, tuple], keys: list[str], size: int, get: Callable) -> dict[str, Any]:
    """The values of ``keys``, computed ``size`` keys at a time, in order, with ``get``.

    Each batch is the keys' tasks and the tasks they need, not computed by an
    earlier batch: every task runs once. A value that a later batch needs (a
    tile of the next row, for the seams of a label pass) is kept, given to
    that batch as data, and dropped after the last batch that needs it.
    """
    batches = [keys[i : i + size] for i in range(0, len(keys), size)]
    last: dict[str, int] = {}  # the last batch that needs each task
    for b, batch in enumerate(batches):
        stack = list(batch)
        while stack:
            key = stack.pop()
            seen = last.get(key)
            if seen == b:
                continue
            last[key] = b
            if seen is None:  # computed in this batch
                stack.extend(_dependencies(dsk, key))
    wanted = set(keys)
    values: dict[str, Any] = {}  # of keys, and of the tasks a later batch needs
    for b, batch in enumerate(batches):
        sub: dict[str, tuple] = {}
        stack = list(batch)
        while stack:
            key = stack.pop()
            if key in sub:
                continue
            if key in values:
                sub[key] = (_computed, _Computed(values[key]))
                continue
            sub[key] = dsk[key]
            stack.extend(_dependencies(dsk, key))
        new = [k for k in sub if k not in values]
        out = list(dict.fromkeys(batch + [k for k in new if k in wanted or last[k] > b]))
        values.update(zip(out, get(sub, out), strict=True))
        for key in [k for k in sub if k not in wanted and last[k] == b and k in values]:
            del values[key]
    return values
