"""The output directory (DESIGN.md section 4): Zarr labels, GeoParquet objects, run.json.

Nothing under a final name looks complete before it is: the label store is
written as ``.labels.zarr.partial`` and renamed, the table and the manifest
are written to temporary names and renamed, and ``run.json`` comes last.
"""

from __future__ import annotations

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

LABELS = "labels.zarr"
OBJECTS = "objects.parquet"
MANIFEST = "run.json"
WORKDIR = ".tiler-work"
PARTIAL_LABELS = ".labels.zarr.partial"

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


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    elif entry.exists() or entry.is_symlink():
        entry.unlink()


def prepare_destination(
    dst: Path, src: Path | None, *, overwrite: bool, resume: bool = False
) -> Path:
    """Check ``dst`` can take a run's outputs, empty it if allowed, and return its work folder.

    With ``resume``, the work folder (the journal, stage stores) and the
    partial label store of an unfinished run are kept; anything else in
    ``dst`` that is not tiler's own is refused as without it.
    """
    dst = Path(dst)
    if src is not None:
        src = Path(src).resolve()
        if dst.resolve() == src or dst.resolve() in src.parents:
            raise OutputError(
                f"{dst}: the output directory must not be (or contain) the input {src}"
            )
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst}: exists and is not a directory")
    if dst.exists() and any(entry.name not in LEFTOVERS for entry in dst.iterdir()):
        if not overwrite:
            raise OutputError(f"{dst}: exists and is not empty; pass --overwrite to replace it")
        # The manifest goes first, so the directory never looks complete meanwhile.
        (dst / MANIFEST).unlink(missing_ok=True)
        resume = False
    keep = (WORKDIR, PARTIAL_LABELS) if resume else ()
    if dst.exists():
        for entry in list(dst.iterdir()):
            if entry.name not in keep:
                _remove(entry)
    work = dst / WORKDIR
    work.mkdir(parents=True, exist_ok=True)
    return work


def discard_partial(dst: Path, *, created: bool) -> None:
    """After a failed run: remove what it wrote, and ``dst`` itself if the run created it."""
    dst = Path(dst)
    for name in LEFTOVERS:
        _remove(dst / name)
    if created and dst.is_dir() and not any(dst.iterdir()):
        dst.rmdir()


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


def finish_label_store(dst: Path) -> Path:
    """Rename the finished partial store to its final name."""
    final = Path(dst) / LABELS
    os.replace(Path(dst) / PARTIAL_LABELS, final)
    return final


def object_columns(
    stats: dict[str, np.ndarray], transform: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """The object table from merged statistics (objects already in label order)."""
    count = stats["count"]
    a, b, c, d, e, f = transform
    rows = stats["sum_row"] / count
    cols = stats["sum_col"] / count
    return {
        "label": np.arange(1, len(count) + 1, dtype=np.int64),
        "area_px": count.astype(np.int64),
        "area_m2": count * abs(a * e - b * d),
        "centroid_row": rows,
        "centroid_col": cols,
        "x": a * (cols + 0.5) + b * (rows + 0.5) + c,
        "y": d * (cols + 0.5) + e * (rows + 0.5) + f,
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
    table = pa.table({name: columns[name] for name in OBJECT_COLUMNS})
    table = table.append_column("geometry", _point_wkb(x, y))
    geometry: dict[str, Any] = {"encoding": "WKB", "geometry_types": ["Point"]}
    if crs_wkt:
        from pyproj import CRS

        geometry["crs"] = CRS.from_wkt(crs_wkt).to_json_dict()
    if len(x):
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
