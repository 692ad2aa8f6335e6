"""The output directory (DESIGN.md section 4): Zarr labels, GeoParquet objects, run.json.

Nothing under a final name looks complete before it is: the label store is
written as ``.labels.zarr.partial`` and renamed, the table and the manifest
are written to temporary names and renamed, and ``run.json`` comes last.

One run at a time writes a DST: it holds an exclusive ``flock`` on
``DST/.tiler-lock`` from before it touches anything until it is done (see
:func:`lock_destination`). A run killed outright loses the lock with its
process, so a lock is never stale: a lock file left behind is taken over.

A run killed while finishing (after the label store got its final name,
before ``run.json``) leaves its journal beside the final names; ``--resume``
takes them back as its own (see :func:`prepare_destination` and
:func:`create_label_store`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

from tiler.errors import OutputError
from tiler.georef import pixel_area_m2
from tiler.io import targets

LABELS = "labels.zarr"
OBJECTS = "objects.parquet"
MANIFEST = "run.json"
WORKDIR = ".tiler-work"
PARTIAL_LABELS = ".labels.zarr.partial"
LOCK = ".tiler-lock"

OBJECT_COLUMNS = (
    "label",
    "area_px",
    "area_m2",
    "centroid_row",
    "centroid_col",
    "x",
    "y",
    "bbox_min_row",
    "bbox_min_col",
    "bbox_max_row",
    "bbox_max_col",
)


# What an interrupted run of tiler leaves behind: tiler's own, so removed without asking.
LEFTOVERS = (WORKDIR, PARTIAL_LABELS, f".{OBJECTS}.partial", f".{MANIFEST}.partial")
# An unfinished run's journal (see tiler.journal): what --resume continues.
JOURNAL_IDENTITY = f"{WORKDIR}/journal/attempt.json"

# The report `tiler report` writes (into DST/report unless told): its files and their
# temporary names.
REPORT = "report"
REPORT_FILES = (
    "fields.csv",
    "fields.parquet",
    "objects.csv",
    "objects.parquet",
    "report.html",
    "pyramid.zarr",
)
REPORT_OUTPUTS = targets.Outputs(
    "--out folder",
    frozenset(REPORT_FILES),
    REPORT_FILES,
    frozenset(f".{name}.partial" for name in REPORT_FILES),
)
# A run's DST: its outputs are tiler's when it has run.json or a journal; its default
# report folder is tiler's when it holds only a report.
RUN_OUTPUTS = targets.Outputs(
    "DST",
    frozenset({LABELS, OBJECTS, MANIFEST}),
    (MANIFEST, JOURNAL_IDENTITY),
    frozenset(LEFTOVERS),
    {REPORT: REPORT_OUTPUTS},
)


def _check_destination(dst: Path, src: Path | None) -> None:
    """Refuse a ``dst`` that is, or holds, the input, or is not a directory (touches nothing)."""
    if src is not None:
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

    def __init__(self, dst: Path, fd: int | None, previous: bytes | None = None):
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
        if remove_dst and self.dst.is_dir() and not any(self.dst.iterdir()):
            self.dst.rmdir()

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


def lock_destination(dst: Path, src: Path | None = None) -> DestinationLock:
    """Take ``dst`` for this run (creating it if need be), or refuse if another run has it.

    Refused, or refused for the reasons :func:`prepare_destination` checks
    first (``dst`` is the input, or a file), nothing in ``dst`` is touched.
    On a file system without ``flock`` (some network file systems), the run
    goes ahead unprotected: refusing every run there would be worse.
    """
    dst = Path(dst)
    _check_destination(dst, src)
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
    dst: Path, src: Path | None, *, overwrite: bool, resume: bool = False
) -> Path:
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
    dst = Path(dst)
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
        targets.remove(entry)
    work = dst / WORKDIR
    work.mkdir(parents=True, exist_ok=True)
    return work


def discard_partial(dst: Path, *, created: bool) -> None:
    """After a failed run: remove what it wrote, and ``dst`` itself if the run created it.

    That includes ``labels.zarr`` and ``objects.parquet`` if the run got as
    far as finishing: any there now are this run's, as :func:`prepare_destination`
    removed or refused any others. The lock file is its holder's to remove.
    """
    dst = Path(dst)
    for name in (*LEFTOVERS, LABELS, OBJECTS):
        targets.remove(dst / name)
    if created and dst.is_dir() and not any(dst.iterdir()):
        dst.rmdir()


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


def raise_for_write_error(dst: Path, exc: BaseException) -> None:
    """Raise an :class:`OutputError` naming ``dst`` if ``exc`` is the disk refusing a write.

    A full disk (or quota, file size limit, read-only file system) is for the
    user to fix: one line naming ``dst`` and the reason, not a traceback.
    The OS's own words are used (pyarrow's message for ENOSPC is longer).
    Anything else returns, for the caller to re-raise as it was.
    """
    cause = disk_error(exc)
    if cause is None:
        return
    where = f" ({cause.filename})" if cause.filename else ""
    raise OutputError(
        f"{dst}: cannot write the outputs: {os.strerror(cause.errno).lower()}{where}"
    ) from exc


# Codecs tiler writes (zarr's defaults) and reads back on --resume; anything
# else in a store being resumed into (a pickle codec, say) is refused.
SAFE_CODECS = frozenset({"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose"})


def _array(path: Path, shape: tuple[int, int], chunks: tuple[int, int], dtype, fill) -> str:
    """The Zarr array at ``path``: created empty, or (resuming) an existing one checked first."""
    if not Path(path).exists():
        zarr.create_array(
            str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, overwrite=True
        )
        return str(path)
    check_store(path, shape, chunks, dtype)
    return str(path)


def check_store(path: Path, shape, chunks, dtype) -> None:
    """Refuse to resume into a Zarr array that is not what this run would have made.

    Read from its ``zarr.json`` alone, before zarr instantiates any codec of it.
    """
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text())
        found = {
            "shape": tuple(meta["shape"]),
            "chunks": tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]),
            "dtype": str(meta["data_type"]),
        }
        codecs = {codec["name"] for codec in meta["codecs"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"{path}: cannot resume into it: not a Zarr v3 array tiler wrote ({exc!r})"
        ) from None
    wanted = {"shape": tuple(shape), "chunks": tuple(chunks), "dtype": np.dtype(dtype).name}
    for key, value in wanted.items():
        if found[key] != value:
            raise OutputError(
                f"{path}: cannot resume into it: {key} is {found[key]}, this run makes {value}"
            )
    if unsafe := codecs - SAFE_CODECS:
        raise OutputError(
            f"{path}: cannot resume into it: codec(s) {', '.join(sorted(unsafe))} not allowed "
            f"(allowed: {', '.join(sorted(SAFE_CODECS))})"
        )


def create_mask_store(path: Path, shape: tuple[int, int], chunks: tuple[int, int]) -> str:
    """A boolean Zarr array chunked as the tiles, for a stage's mask in the work folder."""
    return _array(path, shape, chunks, bool, False)


def create_local_label_store(path: Path, shape: tuple[int, int], chunks: tuple[int, int]) -> str:
    """An int32 Zarr array chunked as the tiles, for tile-local labels in the work folder."""
    return _array(path, shape, chunks, np.int32, 0)


def _geotransform(transform: tuple[float, ...]) -> str:
    a, b, c, d, e, f = transform
    return " ".join(repr(float(v)) for v in (c, a, b, f, d, e))


def create_label_store(
    dst: Path,
    shape: tuple[int, int],
    chunks: tuple[int, int],
    dtype: np.dtype,
    crs_wkt: str,
    transform: tuple[float, ...],
) -> str:
    """Create the (partial) Zarr v3 group with an empty ``labels`` array; return the array path.

    The group follows the CF/GDAL conventions that xarray and rioxarray read: ``labels`` has
    dimensions ``(y, x)`` and ``grid_mapping: spatial_ref``; ``spatial_ref`` holds the CRS as WKT
    and the GDAL GeoTransform; ``x``/``y`` hold the map coordinates of pixel centres.
    """
    path = Path(dst) / PARTIAL_LABELS
    _reopen_finished(Path(dst))
    if (path / "labels").exists():  # resuming: the tiles written so far are kept
        check_store(path / "labels", shape, chunks, dtype)
        return str(path / "labels")
    if path.exists():
        shutil.rmtree(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.attrs.update({"tiler": {"content": "object labels, 0 = background"}})
    ref = group.create_array(
        "spatial_ref", shape=(), dtype=np.int32, fill_value=0, dimension_names=()
    )
    ref.attrs.update(
        {"crs_wkt": crs_wkt, "spatial_ref": crs_wkt, "GeoTransform": _geotransform(transform)}
    )
    ref[...] = 0
    a, b, c, d, e, f = transform
    height, width = shape
    for name, n, values, units in (
        ("x", width, c + a * (np.arange(width) + 0.5), "x"),
        ("y", height, f + e * (np.arange(height) + 0.5), "y"),
    ):
        coord = group.create_array(
            name, shape=(n,), chunks=(min(n, 1 << 20),), dtype=np.float64, dimension_names=(name,)
        )
        coord.attrs.update(
            {"axis": units.upper(), "long_name": f"{name} coordinate of pixel centre"}
        )
        coord[:] = values
    # The labels array comes last: a store that has it is whole (resume relies on it).
    group.create_array(
        "labels",
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        fill_value=0,
        dimension_names=("y", "x"),
        attributes={
            "grid_mapping": "spatial_ref",
            "coordinates": "spatial_ref",
            "long_name": "object label",
        },
    )
    return str(path / "labels")


def _reopen_finished(dst: Path) -> None:
    """Resuming a run killed while finishing: its final label store becomes partial again.

    The journal says which tiles are written, and they are written in that
    store, so it must be the one resumed into; the table is written again
    from the journal. (Only a resumed run finds ``labels.zarr`` here:
    :func:`prepare_destination` removed it otherwise.)
    """
    final = dst / LABELS
    if not final.exists():
        return
    if (dst / PARTIAL_LABELS).exists():  # cannot happen by tiler; the partial one is the newer
        targets.remove(final)
    else:
        os.replace(final, dst / PARTIAL_LABELS)
    (dst / OBJECTS).unlink(missing_ok=True)


def _metadata_files(store: Path) -> dict[str, bytes]:
    """Every ``zarr.json`` of the store's hierarchy by key (chunk and hidden folders not walked)."""
    found, folders = {}, [Path(store)]
    while folders:
        folder = folders.pop()
        meta = folder / "zarr.json"
        if not meta.is_file():
            continue
        data = meta.read_bytes()
        found[meta.relative_to(store).as_posix()] = data
        if json.loads(data).get("node_type") == "group":
            folders.extend(p for p in folder.iterdir() if p.is_dir() and p.name[0] != ".")
    return found


def consolidate_labels(store: Path) -> None:
    """Write the consolidated metadata of the label store (its group and every node in it).

    ``xarray.open_zarr`` reads it in one request instead of one per array, and
    warns without it. Call it again whenever an array or group is added to
    the store (the report's pyramid): readers that find consolidated metadata
    see only what it lists. zarr-python consolidates a copy of the metadata in
    memory and the root ``zarr.json`` is replaced by a rename, so a run killed
    meanwhile leaves the store whole (resume relies on it). zarr-python warns
    that consolidated metadata is not in the Zarr v3 specification yet (xarray
    and zarr-python read it; other readers ignore it); that warning alone is
    silenced.
    """
    import warnings

    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import MemoryStore

    buffer = default_buffer_prototype().buffer
    copy = {key: buffer.from_bytes(data) for key, data in _metadata_files(store).items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(MemoryStore(copy))  # the store writes into ``copy``
    partial = Path(store) / ".zarr.json.partial"
    partial.write_bytes(copy["zarr.json"].to_bytes())
    os.replace(partial, Path(store) / "zarr.json")


def finish_label_store(dst: Path) -> Path:
    """Consolidate the finished partial store's metadata and rename it to its final name."""
    final = Path(dst) / LABELS
    consolidate_labels(Path(dst) / PARTIAL_LABELS)
    os.replace(Path(dst) / PARTIAL_LABELS, final)
    return final


def object_columns(
    stats: dict[str, np.ndarray],
    transform: tuple[float, ...],
    crs_wkt: str = "",
    *,
    georeferenced: bool = True,
) -> dict[str, np.ndarray | None]:
    """The object table from merged statistics (objects already in label order).

    Not ``georeferenced`` (``--pixel-only``): ``area_m2``, ``x`` and ``y``
    are ``None``, written as nulls; they are never made up from pixels.
    """
    count = stats["count"]
    a, b, c, d, e, f = transform
    rows = stats["sum_row"] / count
    cols = stats["sum_col"] / count
    x = a * (cols + 0.5) + b * (rows + 0.5) + c
    y = d * (cols + 0.5) + e * (rows + 0.5) + f
    return {
        "label": np.arange(1, len(count) + 1, dtype=np.int64),
        "area_px": count.astype(np.int64),
        "area_m2": count * pixel_area_m2(crs_wkt, transform, y) if georeferenced else None,
        "centroid_row": rows,
        "centroid_col": cols,
        "x": x if georeferenced else None,
        "y": y if georeferenced else None,
        "bbox_min_row": stats["min_row"],
        "bbox_min_col": stats["min_col"],
        "bbox_max_row": stats["max_row"] + 1,
        "bbox_max_col": stats["max_col"] + 1,
    }


def _point_wkb(x: np.ndarray, y: np.ndarray) -> pa.Array:
    """Little-endian WKB points, built in one vectorised step."""
    records = np.empty(len(x), dtype=[("order", "u1"), ("kind", "<u4"), ("x", "<f8"), ("y", "<f8")])
    records["order"], records["kind"], records["x"], records["y"] = 1, 1, x, y
    offsets = np.arange(0, 21 * len(x) + 1, 21, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(x), [None, pa.py_buffer(offsets), pa.py_buffer(records.tobytes())]
    )


def write_objects(dst: Path, columns: dict[str, np.ndarray], crs_wkt: str) -> Path:
    """Write the object table as GeoParquet 1.1 (WKB points at the centroids).

    Written with pyarrow directly, the WKB built with NumPy: for 820 000
    objects the whole file takes 0.5 s, against 2.1 s through one shapely
    point per object and geopandas. geopandas reads it back as a
    GeoDataFrame with its CRS.
    """
    x, y = columns["x"], columns["y"]
    n = len(columns["label"])
    table = pa.table(
        {
            name: pa.nulls(n, pa.float64()) if columns[name] is None else columns[name]
            for name in OBJECT_COLUMNS
        }
    )
    if x is None:  # pixel-only: no map position
        table = table.append_column("geometry", pa.nulls(n, pa.binary()))
    else:
        table = table.append_column("geometry", _point_wkb(x, y))
    geometry: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"]}
    if crs_wkt:
        from pyproj import CRS

        geometry["crs"] = CRS.from_wkt(crs_wkt).to_json_dict()
    if x is not None and len(x):
        geometry["bbox"] = [float(x.min()), float(y.min()), float(x.max()), float(y.max())]
    geo = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": geometry}}
    table = table.replace_schema_metadata({b"geo": json.dumps(geo).encode()})
    final = Path(dst) / OBJECTS
    partial = Path(dst) / f".{OBJECTS}.partial"
    pq.write_table(table, partial)
    os.replace(partial, final)
    return final


def write_manifest(dst: Path, manifest: dict[str, Any]) -> Path:
    """Write ``run.json`` (last): a run is complete only when it says ``"complete": true``."""
    final = Path(dst) / MANIFEST
    partial = Path(dst) / f".{MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2, default=_json_default) + "\n")
    os.replace(partial, final)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(dst: Path) -> dict[str, Any]:
    return json.loads((Path(dst) / MANIFEST).read_text())
