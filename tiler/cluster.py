"""Where a run's tasks execute: dask's local schedulers, a local cluster, or a remote one.

* ``sync`` / ``threads`` – dask's synchronous and threaded schedulers, in this process;
  ``threads`` is the default (:func:`default_scheduler`);
* ``local`` – a ``distributed.LocalCluster`` bound to 127.0.0.1, with its
  dashboard: one worker whose threads run in this process, or ``workers``
  worker processes (each with a nanny, ``threads_per_worker`` threads and a
  ``memory_limit``); the default when one of those is asked for;
* ``tcp://HOST:PORT`` / ``tls://HOST:PORT`` – an existing scheduler (TLS
  through :func:`security`, or dask's ``distributed.comm.tls`` configuration);
* ``slurm`` / ``pbs`` – a dask-jobqueue cluster from the ``jobqueue.slurm`` /
  ``jobqueue.pbs`` configuration, scaled to ``workers`` workers;
* a ``distributed.Client`` – used as it is.

Tasks open the input by path and set GDAL's options themselves
(:mod:`tiler.io.raster`), so workers need no set-up however they were started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tiler.errors import ConfigError

if TYPE_CHECKING:  # imported where a run starts: the command line's help needs none of dask
    from tiler.executor import Executor

SCHEDULERS = ("local", "threads", "sync")
JOBQUEUES = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub")}
REMOTE = ("tcp://", "tls://", "inproc://")


def default_scheduler(
    workers: int | None = None,
    memory_limit: str | None = None,
    dashboard: bool = False,
    performance_report: Any = None,
) -> str:
    """The scheduler of a run that names none: ``threads``, unless a LocalCluster is asked for.

    dask's threaded scheduler runs the tasks in this process, as the default
    LocalCluster's one worker did, and starts in no time: the LocalCluster
    (scheduler, worker, dashboard, and importing distributed and bokeh) cost
    about a second of a 64-megapixel run (benchmarks/results/fixed-costs.md).
    A LocalCluster is started where it gives something the threads do not:
    several worker processes, a memory limit per worker, the dashboard, or
    dask's performance report.
    """
    cluster = (workers or 1) > 1 or memory_limit is not None or dashboard
    return "local" if cluster or performance_report is not None else "threads"


def check_scheduler(scheduler: Any) -> None:
    """Refuse an unknown scheduler name before anything is written."""
    if (
        isinstance(scheduler, str)
        and scheduler not in SCHEDULERS
        and scheduler not in JOBQUEUES
        and not scheduler.startswith(REMOTE)
    ):
        allowed = ", ".join(SCHEDULERS)
        raise ConfigError(
            f"scheduler: expected one of {allowed}, tcp://HOST:PORT or tls://HOST:PORT, "
            f"got {scheduler!r}"
        )


def security(
    ca_file: str | os.PathLike | None = None,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
):
    """A ``distributed.Security`` for TLS to a remote scheduler, or ``None`` if no file is given.

    The three files are PEM: the certificate authority that signed the
    cluster's certificates, and this client's certificate and private key
    (``key`` may be omitted when ``cert`` holds both).
    """
    if ca_file is None and cert is None and key is None:
        return None
    for flag, path in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"{flag}: {path}: no such file")
    if ca_file is None or cert is None:
        raise ConfigError("TLS needs --tls-ca-file and --tls-cert (and --tls-key unless in cert)")
    from distributed import Security

    return Security(
        tls_ca_file=str(ca_file),
        tls_client_cert=str(cert),
        tls_client_key=None if key is None else str(key),
        require_encryption=True,
    )


@contextlib.contextmanager
def executor_for(
    scheduler: Any = "local",
    *,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | None = None,
    security: Any = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Executor]:
    """An :class:`Executor` for a scheduler name, an address or a ``distributed.Client``.

    ``threads`` runs ``threads_per_worker`` threads (default: one per core) in
    this process. The ``local`` cluster is one worker whose threads (one per
    core) run in this process, with its dashboard on 127.0.0.1 and no other
    listening socket. tiler's kernels (GDAL, OpenCV, numba, NumPy, the Zarr
    codecs) release the GIL, so threads use every core, start in
    milliseconds, and let the Otsu passes keep values in memory. ``workers``
    > 1 starts that many worker processes instead (still on 127.0.0.1).
    """
    from tiler.executor import Executor

    log = log or (lambda message: None)
    check_scheduler(scheduler)
    if scheduler in ("sync", "threads"):
        yield Executor(scheduler, threads=threads_per_worker if scheduler == "threads" else None)
        return
    if not isinstance(scheduler, str):  # a distributed Client
        yield Executor(scheduler)
        return
    from distributed import Client

    if scheduler == "local":
        with _local_cluster(workers, threads_per_worker, memory_limit, log) as cluster:
            with Client(cluster) as client:
                yield Executor(client)
        return
    if scheduler in JOBQUEUES:
        with _jobqueue_cluster(scheduler, workers, log) as cluster, Client(cluster) as client:
            log(f"waiting for the first of {workers or 1} {scheduler} worker(s) ...")
            client.wait_for_workers(1)
            yield Executor(client)
        return
    try:
        client = Client(scheduler, timeout="30s", security=security)
    except (OSError, TypeError, ValueError) as exc:  # refused, timed out, or TLS not set up
        hint = ""
        if scheduler.startswith("tls://") and security is None:
            hint = "; a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key"
        raise ConfigError(f"scheduler {scheduler}: cannot connect ({exc}){hint}") from None
    with client:
        n = len(client.scheduler_info().get("workers", {}))
        log(f"connected to {scheduler} ({n} worker(s)), dashboard {client.dashboard_link}")
        yield Executor(client)


@contextlib.contextmanager
def _local_cluster(workers, threads_per_worker, memory_limit, log):
    from distributed import LocalCluster

    cores = os.cpu_count() or 1
    processes = workers is not None and workers > 1
    n = workers if processes else 1
    threads = threads_per_worker or (max(1, cores // n) if processes else cores)
    with LocalCluster(
        n_workers=n,
        threads_per_worker=threads,
        processes=processes,
        host="127.0.0.1" if processes else None,
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
        memory_limit="auto" if memory_limit is None else memory_limit,
        silence_logs=logging.CRITICAL,
    ) as cluster:
        port = urlsplit(cluster.dashboard_link).port
        kind = f"{n} worker process(es) x {threads} thread(s)" if processes else ""
        kind = kind or f"{threads} thread(s) in this process"
        log(f"local cluster: {kind}, dashboard http://127.0.0.1:{port}/status")
        yield cluster


@contextlib.contextmanager
def _jobqueue_cluster(kind: str, workers: int | None, log):
    """A dask-jobqueue cluster from the ``jobqueue.<kind>`` configuration, scaled to ``workers``."""
    name, submit = JOBQUEUES[kind]
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(
            f"--cluster {kind} needs dask-jobqueue: pip install 'tiler[jobqueue]'"
        ) from None
    if shutil.which(submit) is None:
        raise ConfigError(
            f"--cluster {kind}: {submit} not found on PATH; run tiler on a {kind.upper()} "
            "login node or inside a job"
        )
    try:
        cluster = getattr(dask_jobqueue, name)()
    except ValueError as exc:  # cores or memory missing from the configuration
        raise ConfigError(
            f"--cluster {kind}: {exc} (set jobqueue.{kind} in a dask config file, "
            "see cluster/README.md)"
        ) from None
    with cluster:
        cluster.scale(workers or 1)
        log(f"{kind}: {workers or 1} worker(s) requested, dashboard {cluster.dashboard_link}")
        yield cluster


def worker_addresses(executor: Executor) -> set[str]:
    return set(executor.scheduler.scheduler_info().get("workers", {}))


def in_this_process(executor: Executor) -> bool:
    """Whether every task runs in this process (so an in-memory cache is seen by all)."""
    if isinstance(executor.scheduler, str):
        return True
    addresses = worker_addresses(executor)
    return bool(addresses) and all(a.startswith("inproc://") for a in addresses)


def on_this_machine(executor: Executor) -> bool:
    """Whether every worker shares this machine's memory (so a tmpfs cache is visible to all)."""
    if in_this_process(executor):
        return True
    hosts = {a.split("://")[-1].rsplit(":", 1)[0] for a in worker_addresses(executor)}
    return bool(hosts) and hosts <= {"127.0.0.1", "localhost", "[::1]", socket.gethostname()}
