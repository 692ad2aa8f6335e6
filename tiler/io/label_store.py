"""The label store: Zarr v3 arrays a run writes (work stores and ``labels.zarr``).

``labels.zarr`` is written as ``.labels.zarr.partial`` and renamed when whole,
its consolidated metadata last; a store resumed into is checked first. In
object storage, which has no renames, it is written in place: ``run.json``,
written last, alone says the run is complete (:mod:`tiler.io.stores`).

The labels are chunked as the tiles, one chunk file per tile with an object
(an empty tile has none), zstd level 1 (:data:`LABEL_COMPRESSORS`), not
sharded. Sharding with a shard per tile (so that no two tasks write one
shard) and inner chunks would let a viewer read a small region without
decoding a whole tile, but slows the write pass and saves no files: per
2048² uint32 tile of the 1 GP field (benchmarks/label_codecs.py, one
thread), writing takes 11.1 ms as a chunk, 18.6 ms as a shard of 512²
chunks, 15.9 ms of 1024²; reading a 256² region 5.9, 1.7 and 2.9 ms. The
1 GP write pass (2 threads, best of 2 on a loaded machine) took 5.3 s
unsharded, 9.0 s with 512² and 8.2 s with 1024² inner chunks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from tiler.errors import OutputError
from tiler.io import atomic, stores
from tiler.io.output import LABELS, OBJECTS, PARTIAL_LABELS

# zstd level 1 for the labels (zarr's default is level 0, zstd's 3): the same
# size and a little faster to encode. Measured on 2048² uint32 tiles of the
# 1 GP field (benchmarks/label_codecs.py, one thread, per tile: encode, KB):
# zstd 3: 6.1 ms, 195; zstd 1: 5.8 ms, 196; zstd -3: 5.5 ms, 214 (negative
# levels gain 0.3 ms for 10-30 % more bytes); blosc lz4 without shuffle:
# 4.0 ms but 3.5x the bytes, with byte shuffle 7.9 ms and 6.3x (labels are
# long runs of one value, which shuffling breaks up); blosc zstd 15-20 ms.
# Any zstd level decodes alike: zarr-python, xarray/rioxarray and napari read it.
LABEL_COMPRESSORS = (ZstdCodec(level=1),)

# Codecs tiler writes (zarr's defaults) and reads back on --resume; anything
# else in a store being resumed into (a pickle codec, say) is refused.
SAFE_CODECS = frozenset({"bytes", "zstd", "blosc", "gzip", "crc32c", "transpose"})


def _array(path: Any, shape: tuple[int, int], chunks: tuple[int, int], dtype, fill) -> str:
    """The Zarr array at ``path``: created empty, or (resuming) an existing one checked first."""
    if not stores.folder(path).exists():
        zarr.create_array(
            stores.store(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
            overwrite=True,
        )  # fmt: skip
    else:
        check_store(path, shape, chunks, dtype)
    return stores.location(path)


def check_store(path: Path, shape, chunks, dtype) -> None:
    """Refuse to resume into a Zarr array that is not what this run would have made.

    Read from its ``zarr.json`` alone, before zarr instantiates any codec of it.
    """
    try:
        meta = json.loads((stores.folder(path) / "zarr.json").read_text())
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


def create_mask_store(path: Any, shape: tuple[int, int], chunks: tuple[int, int]) -> str:
    """A boolean Zarr array chunked as the tiles, for a stage's mask in the work folder."""
    return _array(path, shape, chunks, bool, False)


def create_confidence_store(path: Any, shape: tuple[int, int], chunks: tuple[int, int]) -> str:
    """A float32 Zarr array chunked as the tiles, for a model's confidence (tiler.cnn)."""
    return _array(path, shape, chunks, np.float32, 0.0)


def create_local_label_store(path: Any, shape: tuple[int, int], chunks: tuple[int, int]) -> str:
    """An int32 Zarr array chunked as the tiles, for tile-local labels in the work folder."""
    return _array(path, shape, chunks, np.int32, 0)


def _geotransform(transform: tuple[float, ...]) -> str:
    a, b, c, d, e, f = transform
    return " ".join(repr(float(v)) for v in (c, a, b, f, d, e))


def create_label_store(
    dst: Any,
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
    dst = stores.folder(dst)
    path = dst / labels_name(dst)
    if not stores.is_remote(dst):
        _reopen_finished(dst)
    if (path / "labels").exists():  # resuming: the tiles written so far are kept
        check_store(path / "labels", shape, chunks, dtype)
        return stores.location(path / "labels")
    stores.remove(path)
    group = stores.open_group(path, mode="w", zarr_format=3)
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
        compressors=LABEL_COMPRESSORS,
        dimension_names=("y", "x"),
        attributes={
            "grid_mapping": "spatial_ref",
            "coordinates": "spatial_ref",
            "long_name": "object label",
        },
    )
    return stores.location(path / "labels")


def labels_name(dst: Any) -> str:
    """The name the label store is written under: its final one in object storage."""
    return LABELS if stores.is_remote(dst) else PARTIAL_LABELS


def _reopen_finished(dst: Path) -> None:
    """Resuming a run killed while finishing: its final label store becomes partial again.

    The journal says which tiles are written, and they are written in that
    store, so it must be the one resumed into; the table is written again
    from the journal. (Only a resumed run finds ``labels.zarr`` here:
    :func:`tiler.io.destination.prepare_destination` removed it otherwise.)
    """
    final = dst / LABELS
    if not final.exists():
        return
    if (dst / PARTIAL_LABELS).exists():  # cannot happen by tiler; the partial one is the newer
        stores.remove(final)
    else:
        os.replace(final, dst / PARTIAL_LABELS)
    (dst / OBJECTS).unlink(missing_ok=True)


def _metadata_files(store: Any) -> dict[str, bytes]:
    """Every ``zarr.json`` of the store's hierarchy by key (chunk and hidden folders not walked)."""
    found, folders = {}, [(stores.folder(store), "")]
    while folders:
        folder, prefix = folders.pop()
        meta = folder / "zarr.json"
        if not meta.is_file():
            continue
        data = meta.read_bytes()
        found[prefix + "zarr.json"] = data
        if json.loads(data).get("node_type") == "group":
            folders.extend(
                (p, f"{prefix}{p.name}/")
                for p in folder.iterdir()
                if p.is_dir() and p.name[0] != "."
            )
    return found


def consolidate_labels(store: Any) -> None:
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
    atomic.write_bytes(stores.folder(store) / "zarr.json", copy["zarr.json"].to_bytes())


def finish_label_store(dst: Any) -> Any:
    """Consolidate the finished store's metadata and give it its final name (if not yet)."""
    dst = stores.folder(dst)
    consolidate_labels(dst / labels_name(dst))
    if stores.is_remote(dst):  # written in place
        return dst / LABELS
    return atomic.publish_folder(dst / PARTIAL_LABELS, dst / LABELS)
