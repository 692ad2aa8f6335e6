"""Exports of a finished run: the labels as a COG, object polygons, the table as CSV.

Each export reads DST (a complete run, DESIGN.md section 4) tile by tile and
writes one file, first under a temporary name beside it, renamed when whole.

- :func:`export_cog`: the labels (or a uint8 object mask) as a Cloud-Optimized
  GeoTIFF with nearest-neighbour overviews, streamed window by window.
- :func:`export_polygons`: one polygon per object, with the object table's
  columns, as GeoPackage or GeoParquet; vectorised per tile in parallel.
- :func:`export_csv`: the object table for spreadsheets, with a ``crs`` column.
- :func:`export`: any of them at once, every output path checked first.

>>> from tiler.io.export import export_polygons
>>> export_polygons("out/", "out/objects.gpkg")            # doctest: +SKIP
PosixPath('out/objects.gpkg')
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from tiler.errors import OutputError
from tiler.io import output
from tiler.io.targets import claim

COG_SUFFIXES = (".tif", ".tiff")
POLYGON_DRIVERS = {".gpkg": "GPKG", ".parquet": "Parquet"}
CSV_SUFFIXES = (".csv",)

BLOCK = 512  # COG tile size and overview target (GDAL's default)
MASK_NODATA = 255
WINDOW_BYTES = 32 * 2**20  # at most this much label data read per window
READ_AHEAD = 2  # windows read (decompressed) ahead of the one being written
GPKG_LAYER = "objects"


@dataclass(frozen=True)
class _Run:
    """The parts of a finished run an export needs."""

    dst: Path
    store: str  # labels.zarr
    shape: tuple[int, int]
    chunks: tuple[int, int]
    dtype: np.dtype
    source: str | None  # the input GeoTIFF, whose mask marks nodata (if recorded)
    crs_wkt: str
    transform: Affine


def _open_run(dst: str | os.PathLike) -> _Run:
    """Check ``dst`` holds a complete run and read its labels' layout and georeferencing."""
    import zarr

    from tiler.api import _check_complete

    dst = Path(dst)
    _check_complete(dst)
    store = dst / output.LABELS
    try:
        group = zarr.open_group(str(store), mode="r")
        labels = group["labels"]
        ref = dict(group["spatial_ref"].attrs)
        c, a, b, f, d, e = (float(v) for v in ref["GeoTransform"].split())
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise OutputError(f"{store}: not the label store of a tiler run ({exc})") from None
    return _Run(
        dst=dst,
        store=str(store),
        shape=tuple(labels.shape),
        chunks=tuple(labels.chunks),
        dtype=np.dtype(labels.dtype),
        source=output.read_manifest(dst).get("input", {}).get("path"),
        crs_wkt=str(ref.get("crs_wkt") or ""),
        transform=Affine(a, b, c, d, e, f),
    )


def _target(path: str | os.PathLike, suffixes, what: str, run: _Run) -> Path:
    """``path`` checked as an output file: its suffix, its folder, and not one of the run's own."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: {what} must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: its folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"{path}: its folder {path.parent} is not writable")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory")
    own = [run.dst / name for name in (output.LABELS, output.OBJECTS, output.MANIFEST)]
    resolved = path.resolve()
    if any(resolved == p.resolve() or p.resolve() in resolved.parents for p in own):
        raise OutputError(f"{path}: is part of the run in {run.dst}; choose another name")
    return path


def _partial(path: Path, tag: str = "part") -> Path:
    """A temporary name beside ``path`` with the same suffix (drivers go by the suffix)."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.{tag}{path.suffix}")


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yield a temporary name to write; rename it to ``path`` if the block succeeds."""
    partial = _partial(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        for leftover in (partial, *(Path(f"{partial}{s}") for s in ("-journal", "-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


# --- Cloud-Optimized GeoTIFF -------------------------------------------------------------------


def overview_factors(shape: tuple[int, int], block: int = BLOCK) -> list[int]:
    """Decimation factors 2, 4, 8, ... until the smallest overview fits in one ``block``.

    GDAL's rule for COGs; an image that fits one block gets none.

    >>> overview_factors((1100, 900))
    [2, 4]
    >>> overview_factors((512, 300))
    []
    """
    factors, size = [], max(shape)
    while size > block:
        factors.append(2 ** (len(factors) + 1))
        size = -(-size // 2)
    return factors


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def cog_windows(
    shape: tuple[int, int], chunks: tuple[int, int], itemsize: int
) -> list[tuple[int, int, int, int]]:
    """The ``(row0, row1, col0, col1)`` windows the COG is written in, in row-major order.

    Rows go by chunk-rows rounded up to whole 512-pixel blocks, and columns by
    chunk widths rounded up likewise, as many as fit ``WINDOW_BYTES``: each
    window covers whole GeoTIFF blocks (none is written twice) and, when the
    chunks are multiples of 512 (tiler's default 2048 is), whole Zarr chunks.
    """
    height, width = shape
    rows = _round_up(chunks[0], BLOCK)
    step = _round_up(chunks[1], BLOCK)
    cols = max(1, WINDOW_BYTES // (rows * step * itemsize)) * step
    return [
        (r0, min(r0 + rows, height), c0, min(c0 + cols, width))
        for r0 in range(0, height, rows)
        for c0 in range(0, width, cols)
    ]


def _input_of(dst: Path):
    """The run's input, opened once as the run opened it (``--mask``, ``--driver``)."""
    return _reopen(dst, (dst / output.MANIFEST).stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _reopen(dst: Path, manifest_stamp: int):  # the stamp: a new run in dst opens afresh
    from tiler.io.raster import reopen

    return reopen(output.read_manifest(dst)["input"])


def _read_window(run: _Run, window: tuple[int, int, int, int], mask: bool) -> np.ndarray:
    import zarr

    r0, r1, c0, c1 = window
    labels = zarr.open_array(run.store, path="labels", mode="r")[r0:r1, c0:c1]
    if not mask:
        return labels
    out = (labels != 0).view(np.uint8)
    if run.source is not None:  # the mask the run used (--mask), read as the run read it
        _, valid = _input_of(run.dst).read((1,), ((r0, r1), (c0, c1)))
        out[~valid] = MASK_NODATA
    return out


def _read_ahead(read: Callable[[Any], np.ndarray], items: list) -> Iterator[tuple[Any, np.ndarray]]:
    """``(item, read(item))`` in order, the next ``READ_AHEAD`` reads running meanwhile."""
    with ThreadPoolExecutor(max_workers=READ_AHEAD) as pool:
        pending: deque = deque()
        todo = iter(items)
        for item in todo:
            pending.append((item, pool.submit(read, item)))
            if len(pending) > READ_AHEAD:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def export_cog(
    dst: str | os.PathLike,
    path: str | os.PathLike,
    *,
    mask: bool = False,
    compress: str = "deflate",
) -> Path:
    """Write the labels of the run in ``dst`` as a Cloud-Optimized GeoTIFF.

    Parameters
    ----------
    dst : path
        A complete run.
    path : path
        The GeoTIFF to write (``.tif`` or ``.tiff``); replaced if it exists.
    mask : bool
        Write a uint8 mask instead of the labels: 1 object, 0 background,
        255 (the nodata value) where the input's GDAL dataset mask is 0 (the
        input must still be where the run read it).
    compress : str
        The COG's compression (GDAL's ``COMPRESS``), with the horizontal predictor.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The labels (uint32, or uint64 as stored) or the mask are streamed from
    Zarr into a temporary tiled GeoTIFF (512-pixel blocks, ZSTD level 1,
    BigTIFF if needed) in windows of whole blocks; GDAL builds nearest-
    neighbour overviews on it (2, 4, ... until the smallest fits 512 pixels:
    nearest keeps overview pixels real label values); GDAL's COG driver then
    copies it, overviews included (``OVERVIEWS=FORCE_USE_EXISTING``), into the
    COG layout: IFDs first, then the overviews' tiles smallest first, then the
    full-resolution tiles. Memory stays at a few windows of ``WINDOW_BYTES``.
    The labels carry no nodata value (0 is background, a real value).
    """
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    run = _open_run(dst)
    path = _target(path, COG_SUFFIXES, "a COG", run)
    if mask and run.source is not None and not Path(run.source).is_file():
        raise OutputError(f"{run.source}: the run's input is gone; --mask reads its nodata mask")
    dtype = np.dtype(np.uint8) if mask else run.dtype
    height, width = run.shape
    profile = dict(
        driver="GTiff", height=height, width=width, count=1, dtype=dtype.name,
        crs=rasterio.crs.CRS.from_wkt(run.crs_wkt) if run.crs_wkt else None,
        transform=run.transform, nodata=MASK_NODATA if mask else None,
        tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="zstd", zstd_level=1,
        predictor=2, BIGTIFF="IF_SAFER", num_threads="ALL_CPUS",
    )  # fmt: skip
    staging = _partial(path, "tiled")
    overviews = dict(
        GDAL_TIFF_OVR_BLOCKSIZE=BLOCK, COMPRESS_OVERVIEW="ZSTD", ZSTD_LEVEL_OVERVIEW=1,
        PREDICTOR_OVERVIEW=2, GDAL_NUM_THREADS="ALL_CPUS",
    )  # fmt: skip
    try:
        with rasterio.Env(**overviews), _replacing(path) as partial:
            with rasterio.open(staging, "w", **profile) as ds:
                windows = cog_windows(run.shape, run.chunks, dtype.itemsize)
                for (r0, r1, c0, c1), block in _read_ahead(
                    lambda window: _read_window(run, window, mask), windows
                ):
                    ds.write(block, 1, window=Window(c0, r0, c1 - c0, r1 - r0))
                if factors := overview_factors(run.shape):
                    ds.build_overviews(factors, Resampling.nearest)
            rasterio.shutil.copy(
                staging, partial, driver="COG", COMPRESS=compress.upper(), PREDICTOR="YES",
                BLOCKSIZE=BLOCK, OVERVIEWS="FORCE_USE_EXISTING", OVERVIEW_RESAMPLING="NEAREST",
                BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS",
            )  # fmt: skip
    finally:
        staging.unlink(missing_ok=True)
    return path


# --- polygons ----------------------------------------------------------------------------------


# rasterio wraps each array in a MemoryDataset opened under warnings.catch_warnings(),
# which is not thread-safe: two at once in threads can leak its NotGeoreferencedWarning
# (an error under pytest's filterwarnings). Polygonizing holds the GIL anyway: on a
# 4000 x 4000 run, threads without this lock were no faster than sync (1.4 s vs 1.5 s);
# reading and decoding the tiles still overlap.
_SHAPES_LOCK = threading.Lock()


def tile_pieces(
    labels: np.ndarray, row_off: int = 0, col_off: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The 4-connected pieces of every object in one tile, as polygons in pixel coordinates.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        One tile of labels, 0 = background (any integer dtype).
    row_off, col_off : int
        The tile's offset in the image: polygon coordinates are ``(col, row)``
        of pixel corners in the whole image, exact integers.

    Returns
    -------
    labels : (K,) ndarray of uint64
        The label of each piece.
    polygons : (K,) ndarray of shapely.Polygon
        Each piece with its holes; valid, disjoint, touching at most at corners.

    Examples
    --------
    >>> tile = np.array([[1, 0], [0, 1]], np.uint32)
    >>> ids, polygons = tile_pieces(tile, 10, 20)
    >>> ids.tolist(), [p.bounds for p in polygons]
    ([1, 1], [(20.0, 10.0, 21.0, 11.0), (21.0, 11.0, 22.0, 12.0)])
    """
    import shapely
    from rasterio.features import shapes

    objects = labels != 0
    if not objects.any():
        return np.empty(0, np.uint64), np.empty(0, object)
    # GDAL polygonizes 32-bit signed integers; larger labels are numbered locally first.
    if labels.max() <= np.iinfo(np.int32).max:
        local, ids = labels.astype(np.int32, copy=False), None
    else:
        ids, inverse = np.unique(labels, return_inverse=True)
        local = inverse.reshape(labels.shape).astype(np.int32)
    # 4-connected pieces: GDAL's 8-connected polygons of diagonal joins have
    # self-touching rings, which are invalid simple-features geometry.
    values, coords, ring_sizes, ring_polygon = [], [], [], []
    with _SHAPES_LOCK:
        for geom, value in shapes(
            local, mask=objects, connectivity=4, transform=Affine.translation(col_off, row_off)
        ):
            for ring in geom["coordinates"]:
                coords.extend(ring)
                ring_sizes.append(len(ring))
                ring_polygon.append(len(values))
            values.append(value)
    # Three vectorised calls: a shapely.Polygon per piece took 1.1 of the 1.7 s profiled
    # for four 2048-pixel tiles (12 700 pieces).
    rings = shapely.linearrings(
        np.array(coords, np.float64), indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    )
    polygons = shapely.polygons(rings, indices=np.array(ring_polygon))
    values = np.array(values, np.float64).astype(np.int64)
    piece_labels = values.astype(np.uint64) if ids is None else ids[values].astype(np.uint64)
    return piece_labels, polygons


def _polygonize_tile(store: str, window: tuple[tuple[int, int], tuple[int, int]]):
    import zarr

    (r0, r1), (c0, c1) = window
    labels = zarr.open_array(store, path="labels", mode="r")[r0:r1, c0:c1]
    return tile_pieces(labels, r0, c0)


def dissolve(
    labels: np.ndarray, polygons: np.ndarray, tiles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One geometry per label from its pieces (pixel coordinates), in label order.

    A label with one piece keeps it; pieces from one tile only (disjoint, at
    most touching at corners) make a MultiPolygon as they are; pieces from
    several tiles, which share edges along tile borders, are merged with
    ``shapely.union_all`` (exact: the coordinates are integers) and stripped
    of the collinear vertices left on the tile borders.
    """
    import shapely

    order = np.lexsort((tiles, labels))
    labels, polygons, tiles = labels[order], polygons[order], tiles[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], len(labels)]
    out = polygons[starts].copy()
    for i in np.flatnonzero(ends - starts > 1):
        s, e = starts[i], ends[i]
        if tiles[s] == tiles[e - 1]:
            out[i] = shapely.MultiPolygon(list(polygons[s:e]))
        else:
            out[i] = shapely.simplify(shapely.union_all(polygons[s:e]), 0)
    return labels[starts], out


def to_map(polygons: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel-coordinate geometries in map coordinates, exterior rings counter-clockwise."""
    import shapely

    a, b, c, d, e, f = transform[:6]
    matrix = np.array([[a, d], [b, e]])
    mapped = shapely.transform(polygons, lambda xy: xy @ matrix + (c, f))
    if hasattr(shapely, "orient_polygons"):  # shapely >= 2.1
        mapped = shapely.orient_polygons(mapped, exterior_cw=False)
    return mapped


def object_polygons(dst: str | os.PathLike, *, scheduler: Any = "threads"):
    """One polygon per object of the run in ``dst``, with the object table's columns.

    Parameters
    ----------
    dst : path
        A complete run.
    scheduler : str or distributed.Client
        Where the per-tile tasks run: ``threads``, ``sync`` or a
        ``distributed.Client``.

    Returns
    -------
    geopandas.GeoDataFrame
        The rows and columns of ``objects.parquet``, in its order, the point
        geometry replaced by each object's exact outline in the run's CRS.

    Notes
    -----
    Each tile is vectorised on its own (``rasterio.features.shapes``, GDAL's
    polygonize) into 4-connected pieces; only the pieces come back to this
    process, where the labels found in several tiles are dissolved (see
    :func:`dissolve`). An object is one label, its pixels joined by tiler's
    8-connectivity: it is a Polygon (holes included) when its pixels are also
    4-connected, and a MultiPolygon of its 4-connected parts, touching at
    corners, when some are joined only diagonally: the one valid simple-features
    form of a corner join (a single ring through the corner touches itself).
    Every polygon covers exactly its object's pixels: its area is ``area_m2``
    and rasterizing it gives back the labels.
    """
    import geopandas as gpd
    import pandas as pd

    from tiler.plan import Executor, window_graph

    run = _open_run(dst)
    table = gpd.read_parquet(run.dst / output.OBJECTS)
    windows = [
        ((r0, min(r0 + run.chunks[0], run.shape[0])), (c0, min(c0 + run.chunks[1], run.shape[1])))
        for r0 in range(0, run.shape[0], run.chunks[0])
        for c0 in range(0, run.shape[1], run.chunks[1])
    ]
    graph = window_graph("polygons", _polygonize_tile, (run.store,), windows)
    pieces = Executor(scheduler).compute(graph)
    labels = np.concatenate([p[0] for p in pieces])
    polygons = np.concatenate([p[1] for p in pieces])
    tiles = np.repeat(np.arange(len(pieces)), [len(p[0]) for p in pieces])
    labels, polygons = dissolve(labels, polygons, tiles)
    where = pd.Index(labels).get_indexer(table["label"].to_numpy(np.uint64))
    if len(labels) != len(table) or (where < 0).any():
        raise OutputError(
            f"{run.dst}: labels.zarr holds {len(labels)} objects, objects.parquet "
            f"{len(table)}, not the same labels; the run is damaged"
        )
    geometry = gpd.GeoSeries(to_map(polygons[where], run.transform), crs=table.crs)
    return gpd.GeoDataFrame(table.drop(columns="geometry"), geometry=geometry, crs=table.crs)


def export_polygons(
    dst: str | os.PathLike, path: str | os.PathLike, *, scheduler: Any = "threads"
) -> Path:
    """Write one polygon per object (see :func:`object_polygons`) to ``path``.

    ``path`` ends in ``.gpkg`` (a GeoPackage, layer ``objects``) or
    ``.parquet`` (GeoParquet); it is replaced if it exists. A GeoPackage layer
    has one geometry type, so there every object is a MultiPolygon (of one
    part unless it has diagonal joins); GeoParquet keeps Polygon and
    MultiPolygon apart.
    """
    run = _open_run(dst)
    path = _target(path, tuple(POLYGON_DRIVERS), "polygons", run)
    frame = object_polygons(run.dst, scheduler=scheduler)
    with _replacing(path) as partial:
        if POLYGON_DRIVERS[path.suffix.lower()] == "GPKG":
            frame.to_file(
                partial, driver="GPKG", layer=GPKG_LAYER, engine="pyogrio", promote_to_multi=True
            )
        else:
            frame.to_parquet(partial, index=False)
    return path


# --- CSV ---------------------------------------------------------------------------------------


def crs_name(crs_wkt: str) -> str:
    """A short name of a CRS for a table cell: ``EPSG:32611``, another authority's code, or WKT.

    >>> crs_name('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
    ...          'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]')
    'EPSG:4326'
    """
    if not crs_wkt:
        return ""
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    if (epsg := crs.to_epsg()) is not None:
        return f"EPSG:{epsg}"
    if (authority := crs.to_authority()) is not None:
        return ":".join(authority)
    return crs.to_wkt()


def export_csv(dst: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the object table of the run in ``dst`` as CSV, for spreadsheets.

    Every column of ``objects.parquet`` but the point geometry (its
    coordinates are the ``x`` and ``y`` columns), then ``crs``: the run's CRS
    as ``EPSG:code`` (another authority's code, or WKT, if it has none).
    Floats are written in full (they read back equal). ``path`` ends in
    ``.csv``; it is replaced if it exists.
    """
    import pyarrow.parquet as pq

    run = _open_run(dst)
    path = _target(path, CSV_SUFFIXES, "the CSV table", run)
    table = pq.read_table(run.dst / output.OBJECTS).drop_columns(["geometry"]).to_pandas()
    table["crs"] = crs_name(run.crs_wkt)
    with _replacing(path) as partial:
        table.to_csv(partial, index=False, lineterminator="\n")
    return path


# --- all at once -------------------------------------------------------------------------------


def export(
    dst: str | os.PathLike,
    *,
    cog: str | os.PathLike | None = None,
    mask: bool = False,
    polygons: str | os.PathLike | None = None,
    csv: str | os.PathLike | None = None,
    overwrite: bool = False,
    log: Callable[[str, Path], None] | None = None,
) -> dict[str, Path]:
    """Write any of the exports of the run in ``dst``; every path is checked before any is written.

    A path that exists is refused unless ``overwrite`` (see :func:`tiler.io.targets.claim`).
    Returns ``{"cog": path, "polygons": path, "csv": path}`` for those asked;
    ``log(kind, path)`` is called as each is written.
    """
    log = log or (lambda kind, path: None)
    run = _open_run(dst)
    wanted = {"cog": cog, "polygons": polygons, "csv": csv}
    rules = {
        "cog": (COG_SUFFIXES, "a COG"),
        "polygons": (tuple(POLYGON_DRIVERS), "polygons"),
        "csv": (CSV_SUFFIXES, "the CSV table"),
    }
    targets = {k: _target(p, *rules[k], run) for k, p in wanted.items() if p is not None}
    for path in targets.values():
        claim(path, None, overwrite=overwrite)  # replaced by the writer's rename
    writers = {
        "cog": lambda p: export_cog(run.dst, p, mask=mask),
        "polygons": lambda p: export_polygons(run.dst, p),
        "csv": lambda p: export_csv(run.dst, p),
    }
    written = {}
    for kind, path in targets.items():
        written[kind] = writers[kind](path)
        log(kind, written[kind])
    return written
