"""Object outlines as vector features, and the vector files they are written to.

Labels are vectorised per tile in pixel coordinates (:func:`tile_pieces`, so
every vertex is an exact pixel corner), the pieces of objects that cross
tiles are dissolved (:func:`dissolve`), optionally simplified, mapped to the
run's CRS (:func:`to_map`) and written in the format the file's extension
names (:data:`VECTOR_FORMATS`, :func:`write_vector`). The graph that runs the
tiles lives above this layer, in :mod:`tiler.export`.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from affine import Affine

from tiler.io import stores
from tiler.io.export_files import replacing
from tiler.tiling import Window

# Extension -> (OGR driver, or "Parquet" for GeoParquet; CRS it is written in, None: the run's).
VECTOR_FORMATS = {
    ".gpkg": ("GPKG", None),
    ".shp": ("ESRI Shapefile", None),
    ".geojson": ("GeoJSON", "EPSG:4326"),  # RFC 7946: WGS 84 longitude, latitude
    ".json": ("GeoJSON", "EPSG:4326"),
    ".fgb": ("FlatGeobuf", None),
    ".kml": ("KML", "EPSG:4326"),  # KML is WGS 84 by definition
    ".parquet": ("Parquet", None),
}
# Layers that hold one geometry type: every object there is a MultiPolygon.
_ONE_GEOMETRY_TYPE = {"GPKG", "FlatGeobuf"}
GPKG_LAYER = "objects"
# DBF column names hold at most 10 characters: the object table's longer ones, renamed.
SHAPEFILE_COLUMNS = {
    "centroid_row": "cent_row",
    "centroid_col": "cent_col",
    "bbox_min_row": "bbox_minr",
    "bbox_min_col": "bbox_minc",
    "bbox_max_row": "bbox_maxr",
    "bbox_max_col": "bbox_maxc",
}
SHAPEFILE_FILES = (".shp", ".shx", ".dbf", ".prj", ".cpg")


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


def polygonize_tile(store: str, window: Window):
    """The pieces of one tile of the label store ``store`` (a path or a URL)."""
    labels = stores.open_array(store, path="labels", mode="r")[window.slices]
    return tile_pieces(labels, *window.origin)


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


def simplify(polygons: np.ndarray, tolerance_px: float) -> np.ndarray:
    """Pixel-coordinate outlines simplified (Douglas-Peucker) by ``tolerance_px`` pixels.

    Topology-preserving (``shapely.simplify(..., preserve_topology=True)``):
    every outline stays a valid polygon, holes stay inside it, none vanishes.
    The outline stays within the tolerance of the exact one, except where GEOS
    also drops a ring's first vertex: there within twice it (measured: 1-6 %
    of outlines, at most 1.5 times, for 2 to 8 pixels on the synthetic field).
    Neighbouring objects are simplified apart, so where they share an edge
    they may overlap or part by up to the tolerance.
    """
    import shapely

    return shapely.simplify(polygons, tolerance_px, preserve_topology=True)


def write_vector(frame, path: Path) -> Path:
    """Write the features ``frame`` (a GeoDataFrame) in the format ``path``'s extension names.

    GeoJSON and KML are written in WGS 84 (EPSG:4326, longitude/latitude),
    GeoJSON as RFC 7946 asks (with 9 decimals: 0.1 mm); the others in the run's CRS. A GeoPackage
    (layer ``objects``) and a FlatGeobuf have one geometry type per layer, so
    there every object is a MultiPolygon; the others keep Polygon and
    MultiPolygon apart. A Shapefile's long column names are renamed as
    :data:`SHAPEFILE_COLUMNS` says. ``path`` (and, for a Shapefile, its
    companion files) is replaced if it exists, only once the new one is whole.
    """
    driver, crs = VECTOR_FORMATS[path.suffix.lower()]
    if crs is not None:
        frame = frame.to_crs(crs)
    options: dict = {"promote_to_multi": True} if driver in _ONE_GEOMETRY_TYPE else {}
    if driver == "GPKG":
        options["layer"] = GPKG_LAYER
    elif driver == "GeoJSON":
        # RFC 7946 (WGS 84, right-hand rings), with 9 decimals (0.1 mm) instead of its 7
        # (1 cm), which would bend the outlines of centimetre pixels.
        options.update(RFC7946="YES", COORDINATE_PRECISION=9)
    elif driver == "ESRI Shapefile":
        frame = frame.rename(columns=SHAPEFILE_COLUMNS)
        options["ENCODING"] = "UTF-8"
    companions = SHAPEFILE_FILES if driver == "ESRI Shapefile" else ()
    with replacing(path, companions) as partial:
        if driver == "Parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_file(partial, driver=driver, engine="pyogrio", **options)
    return path
