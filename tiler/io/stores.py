"""Where a run's outputs live: a local folder, or a prefix in object storage.

DST (and anything read back from it) may be a local path or a URL of a
bucket prefix: ``s3://bucket/out/``, ``gs://bucket/out/``, ``az://container/out/``.
:func:`folder` gives either as a path object with pathlib's methods: a
:class:`pathlib.Path`, or a :class:`upath.UPath` over fsspec (``s3fs``,
``gcsfs``, ``adlfs``). Code that lists, reads or writes small files of DST
(the manifest, the journal, the object table) is then the same for both,
and differs where the two differ:

* object storage has no renames: an object appears whole when its one PUT
  ends, so a file is written under its final name (:func:`tiler.io.atomic`
  does), and a Zarr store is written in place; a run is complete exactly
  when ``run.json`` is there (it is written last);
* it has no locks: one run at a time per DST is the user's to ensure;
* a prefix exists when an object is under it: nothing to create or remove.

Zarr stores are opened by :func:`open_array` and :func:`open_group` from the
same string on every worker (a path, or a URL through zarr's ``FsspecStore``),
so a task's arguments stay plain strings. Credentials come from each
process's environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server, or a
profile; ``GOOGLE_APPLICATION_CREDENTIALS``; ``AZURE_STORAGE_*``), never
from the run.

Imports nothing of tiler but its errors: the tasks that open work stores
(below the io layer) use it as the io layer does.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

from tiler.errors import OutputError

# The object stores DST may be in, and the package fsspec reads each through.
SCHEMES = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs"}
# An S3 endpoint that does not answer fails in seconds, and a failed request is retried
# twice, not botocore's and s3fs's defaults (a minute's timeout, retried with backoff).
# One request per whole-object read: with more, s3fs asks each object's size first (a HEAD)
# to split the read, which doubled the requests of a run (benchmarks/results/s3-write-64mp.md).
_S3_OPTIONS: dict[str, Any] = {
    "max_concurrency": 1,
    "config_kwargs": {
        "connect_timeout": 5,
        "read_timeout": 60,
        "retries": {"max_attempts": 3, "mode": "standard"},
    },
}


def is_remote(where: object) -> bool:
    """Whether ``where`` is in object storage: a URL of :data:`SCHEMES`, or a path of one."""
    if hasattr(where, "protocol") and not isinstance(where, PurePath):  # a UPath
        return str(where.protocol).split("://")[0] in SCHEMES  # type: ignore[attr-defined]
    return isinstance(where, str) and "://" in where and urlsplit(where).scheme.lower() in SCHEMES


def storage_options(url: str) -> dict[str, Any]:
    """fsspec's options for ``url``'s file system (timeouts and retries; never credentials).

    fsspec keeps one client per set of options; one made before the
    process's cloud environment changed (a notebook setting other keys or
    another endpoint, the tests) is dropped, so that clients always follow
    the environment.
    """
    scheme = urlsplit(url).scheme.lower()
    _follow_environment(scheme)
    return dict(_S3_OPTIONS) if scheme == "s3" else {}


# The cloud environment each scheme's cached clients were made under (a digest, not the values).
_ENVIRONMENT_SEEN: dict[str, str] = {}
_CLOUD_VARIABLES = ("AWS_", "GOOGLE_", "AZURE_", "GCS")


def _follow_environment(scheme: str) -> None:
    import hashlib

    pairs = sorted((k, v) for k, v in os.environ.items() if k.startswith(_CLOUD_VARIABLES))
    digest = hashlib.sha256(repr(pairs).encode()).hexdigest()
    if _ENVIRONMENT_SEEN.get(scheme, digest) != digest:
        import fsspec

        try:
            fsspec.get_filesystem_class(scheme).clear_instance_cache()
        except ImportError:  # the package is missing: folder() says so
            return
    _ENVIRONMENT_SEEN[scheme] = digest


def folder(where: str | os.PathLike) -> Any:
    """``where`` as a path object: a ``Path``, or a ``UPath`` for a URL in object storage.

    Raises
    ------
    OutputError
        A URL that tiler cannot write or list (``https://``), or one whose
        package is not installed.
    """
    if is_remote(where):
        if not isinstance(where, str):
            return where
        scheme = urlsplit(where).scheme.lower()
        try:
            from upath import UPath

            return UPath(where.rstrip("/"), **storage_options(where))
        except ImportError as exc:
            package = exc.name or SCHEMES[scheme]
            raise OutputError(
                f"{where}: {scheme}:// needs the package {package} (pip install {package})"
            ) from None
    if isinstance(where, str) and "://" in where:
        scheme = urlsplit(where).scheme
        raise OutputError(
            f"{where}: cannot write to or list {scheme}:// URLs; give a local folder or "
            f"an object storage prefix ({', '.join(f'{s}://' for s in SCHEMES)})"
        )
    return Path(where)


def location(where: str | os.PathLike) -> str:
    """The string that :func:`open_array` opens: a local path, or the URL."""
    return str(folder(where)) if is_remote(where) else os.fspath(where)


def store(where: str | os.PathLike, *, read_only: bool = False) -> Any:
    """What zarr opens for ``where``: the path itself, or an ``FsspecStore`` of the URL."""
    if not is_remote(where):
        return os.fspath(where)
    from zarr.storage import FsspecStore

    url = location(where)
    return FsspecStore.from_url(url, storage_options=storage_options(url), read_only=read_only)


def open_array(where: str | os.PathLike, mode: str = "r", **kwargs: Any) -> Any:
    """``zarr.open_array`` of a path or a URL (``mode``: ``r`` or ``r+``).

    Zarr v3, as tiler writes: zarr does not then look for v2's metadata first
    (in a bucket, two requests for each missing file).
    """
    import zarr

    kwargs.setdefault("zarr_format", 3)
    return zarr.open_array(store(where, read_only=mode == "r"), mode=mode, **kwargs)


def open_group(where: str | os.PathLike, mode: str = "r", **kwargs: Any) -> Any:
    """``zarr.open_group`` of a path or a URL (Zarr v3, as :func:`open_array`)."""
    import zarr

    kwargs.setdefault("zarr_format", 3)
    return zarr.open_group(store(where, read_only=mode == "r"), mode=mode, **kwargs)


def file_system(where: Any) -> tuple[str, Any]:
    """``(path, filesystem)`` of a file for readers that take an fsspec file system.

    pyarrow and geopandas (``read_parquet(path, filesystem=...)``) read a
    local file by its path (``filesystem`` ``None``), and a file in object
    storage through this module's fsspec file system, with its timeouts.
    """
    if not is_remote(where):
        return os.fspath(where), None
    entry = folder(where)
    return entry.path, entry.fs


def remove(entry: Any) -> None:
    """Remove a file or a folder tree, local or in object storage (nothing if not there)."""
    if is_remote(entry):
        fs, path = entry.fs, entry.path
        if fs.exists(path):
            fs.rm(path, recursive=True)
        return
    import shutil

    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    elif entry.exists() or entry.is_symlink():
        entry.unlink()


def make_folder(path: Any) -> None:
    """Create a local folder and its parents; nothing in object storage.

    A prefix is there once an object is under it; making one would make a
    missing bucket (s3fs does), where a missing bucket must be an error.
    """
    if not is_remote(path):
        Path(path).mkdir(parents=True, exist_ok=True)
