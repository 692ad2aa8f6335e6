"""The object table as CSV for spreadsheets: map coordinates, longitude/latitude, the CRS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tiler.io.export_files import replacing

CSV_SUFFIXES = (".csv",)


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


def lon_lat(x: np.ndarray, y: np.ndarray, crs_wkt: str) -> tuple[np.ndarray, np.ndarray]:
    """WGS 84 longitude and latitude (EPSG:4326, degrees) of map coordinates in ``crs_wkt``.

    Empty ``crs_wkt`` (a pixel-only run): NaN, there is no position on Earth.
    """
    if not crs_wkt:
        return np.full(len(x), np.nan), np.full(len(y), np.nan)
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(crs_wkt, "EPSG:4326", always_xy=True)
    lon, lat = to_wgs84.transform(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return np.asarray(lon), np.asarray(lat)


def write_csv(table, path: Path, crs_wkt: str) -> Path:
    """Write ``table`` (a DataFrame with ``x`` and ``y``) as CSV with ``lon``, ``lat`` and ``crs``.

    ``lon`` and ``lat`` (WGS 84 degrees of the centroid) come right after
    ``x`` and ``y``; ``crs`` (the run's CRS as ``EPSG:code``, another
    authority's code, or WKT) last. Floats are written in full (they read
    back equal). ``path`` is replaced if it exists, once the new one is whole.
    """
    table = table.copy()
    lon, lat = lon_lat(table["x"].to_numpy(np.float64), table["y"].to_numpy(np.float64), crs_wkt)
    at = table.columns.get_loc("y") + 1
    table.insert(at, "lon", lon)
    table.insert(at + 1, "lat", lat)
    table["crs"] = crs_name(crs_wkt)
    with replacing(path) as partial:
        table.to_csv(partial, index=False, lineterminator="\n")
    return path
