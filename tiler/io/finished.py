"""A finished run read back: the check that it is complete, and its label store's layout.

The one place that decides whether DST holds a finished run (DESIGN.md
section 4: ``run.json`` saying ``"complete": true``): :func:`check_complete`
refuses any other in one line, for whatever reads a run (the API, the report,
the exports); :func:`complete_manifest` asks, for a run deciding what to do
with DST. :func:`open_run` reads the label array's shape, chunks, dtype and
georeferencing from ``labels.zarr``; :func:`read_objects` its object table.

DST may be a folder or a URL in object storage (``s3://bucket/out/``,
:mod:`tiler.io.stores`): a run there is read as a local one, and object
storage refusing a request (credentials, a missing bucket, an endpoint that
does not answer) is one line naming the URL (:func:`storage_errors`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

from tiler.errors import OutputError, TilerError
from tiler.io import output, remote, run_record, stores
from tiler.io.destination import client_error

# The S3 operations that write (botocore's operation names).
WRITE_OPERATIONS = ("Put", "Delete", "Create", "Upload", "Complete", "Abort", "Copy")


def _manifest_or_why(dst: Any) -> tuple[dict[str, Any] | None, str]:
    """``dst``'s manifest if it says the run completed, else ``None`` and why not."""
    try:
        manifest = run_record.read_manifest(dst)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if stores.is_remote(dst) and remote.reason(exc) != "no such object":  # no bucket, say
            return None, unreadable(dst, exc)
        return None, "no run.json; not a finished tiler run"
    except ValueError as exc:  # not JSON, or not UTF-8
        return None, f"run.json is not valid JSON ({exc})"
    except Exception as exc:  # the disk's error, or object storage's (botocore, aiohttp, s3fs)
        if stores.is_remote(dst):
            return None, unreadable(dst, exc)
        if isinstance(exc, OSError):
            return None, f"cannot read run.json ({exc.strerror})"
        raise
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        return None, "run.json does not say complete; the run did not finish"
    return manifest, ""


def unreadable(dst: Any, exc: BaseException) -> str:
    """Why object storage would not give ``dst``'s files, in words (no keys, no request)."""
    return f"cannot read{remote.endpoint_note(str(dst))}: {remote.reason(exc)}"


@contextlib.contextmanager
def storage_errors(dst: Any, out: Any = None, what: str = "the outputs") -> Iterator[None]:
    """Object storage refusing or failing a request while the run in ``dst`` is read (and
    ``out`` written): one line naming the one it was for, no traceback, no keys.

    A request failing in ``out`` when only ``out`` is in object storage, or one
    that writes (``PutObject``, ...), is ``out``'s; any other is ``dst``'s.
    """
    try:
        yield
    except TilerError:
        raise
    except Exception as exc:
        failed = client_error(exc)
        if failed is None:
            raise
        writes = str(getattr(failed, "operation_name", "")).startswith(WRITE_OPERATIONS)
        if out is not None and stores.is_remote(out) and (writes or not stores.is_remote(dst)):
            where = remote.endpoint_note(str(out))
            raise OutputError(
                f"{out}: cannot write {what}{where}: {remote.reason(failed)}"
            ) from None
        raise OutputError(f"{dst}: {unreadable(dst, failed)}") from None


def complete_manifest(dst: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the finished run in ``dst``, or ``None`` if it holds none."""
    return _manifest_or_why(stores.folder(dst))[0]


def check_complete(dst: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the finished run in ``dst``; refused in one line if it holds none."""
    manifest, why = _manifest_or_why(stores.folder(dst))
    if manifest is None:
        raise OutputError(f"{dst}: {why}")
    return manifest


@dataclass(frozen=True)
class FinishedRun:
    """The parts of a finished run an export needs."""

    dst: Any  # a Path, or a UPath in object storage (tiler.io.stores)
    store: str  # labels.zarr: a path or a URL, for tiler.io.stores.open_array
    shape: tuple[int, int]
    chunks: tuple[int, int]
    dtype: np.dtype
    source: str | None  # the input GeoTIFF, whose mask marks nodata (if recorded)
    crs_wkt: str
    transform: Affine
    georeferenced: bool  # False for a --pixel-only run: no CRS, no metres

    @property
    def own_paths(self) -> list[Any]:
        """The run's outputs, which no export may overwrite."""
        return [self.dst / name for name in (output.LABELS, output.OBJECTS, output.MANIFEST)]


def open_run(dst: str | os.PathLike) -> FinishedRun:
    """Check ``dst`` holds a complete run and read its labels' layout and georeferencing.

    ``dst`` is a folder or a URL in object storage (:mod:`tiler.io.stores`);
    the run's :attr:`FinishedRun.store` opens with :func:`tiler.io.stores.open_array`.
    """
    manifest = check_complete(dst)
    dst = stores.folder(dst)
    store = stores.location(dst / output.LABELS)
    try:
        with storage_errors(dst):
            group = stores.open_group(store, mode="r")
            labels = group["labels"]
            ref = dict(group["spatial_ref"].attrs)
            c, a, b, f, d, e = (float(v) for v in ref["GeoTransform"].split())
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise OutputError(f"{store}: not the label store of a tiler run ({exc})") from None
    inputs = manifest.get("input", {})
    crs_wkt = str(ref.get("crs_wkt") or "")
    how = inputs.get("options", {}).get("georeferencing", "file")
    return FinishedRun(
        dst=dst,
        store=store,
        shape=tuple(labels.shape),
        chunks=tuple(labels.chunks),
        dtype=np.dtype(labels.dtype),
        source=inputs.get("path"),
        crs_wkt=crs_wkt,
        transform=Affine(a, b, c, d, e, f),
        georeferenced=bool(crs_wkt) and how != "none",
    )


def read_objects(dst: Any, columns: list[str] | None = None):
    """The object table of the run in ``dst`` (a folder or a URL), as a GeoDataFrame."""
    import geopandas as gpd

    path, filesystem = stores.file_system(stores.folder(dst) / output.OBJECTS)
    with storage_errors(dst):
        return gpd.read_parquet(path, columns=columns, filesystem=filesystem)
