"""Ground areas of pixels: m² from a transform in the units of its CRS.

A pixel's area is ``|a·e − b·d|`` in the CRS's units squared. That is m² only
for a CRS in metres; feet are converted with the CRS's own factor, and a
geographic CRS (degrees) is scaled by the ellipsoid's radii of curvature at
the pixel's latitude. The geographic area is that of the parallelogram the
pixel spans in the tangent plane: against pyproj's geodesic polygon areas it
agrees to 1e-9 (relative) for pixels up to 0.01° (about 1 km).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=16)
def _crs_kind(crs_wkt: str) -> tuple[str, float, float, float]:
    """``("projected", metres_per_unit, 0, 0)`` or ``("geographic", 0, a, e²)`` of a CRS."""
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        ellipsoid = crs.ellipsoid
        a = ellipsoid.semi_major_metre
        b = ellipsoid.semi_minor_metre
        return "geographic", 0.0, a, 1.0 - (b / a) ** 2
    axis = crs.axis_info[0] if crs.axis_info else None
    factor = axis.unit_conversion_factor if axis is not None else 1.0
    return "projected", float(factor or 1.0), 0.0, 0.0


def map_xy(
    transform: tuple[float, ...], rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(x, y)`` of pixel-index positions: pixel ``(row i, col j)`` has its centre at
    ``(i, j)``, so the affine ``transform`` (of pixel corners) is taken at ``+ 0.5``."""
    a, b, c, d, e, f = transform[:6]
    return a * (cols + 0.5) + b * (rows + 0.5) + c, d * (cols + 0.5) + e * (rows + 0.5) + f


def image_bounds(
    transform: tuple[float, ...], height: int, width: int
) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` in map coordinates of an image's four outer corners."""
    a, b, c, d, e, f = transform[:6]
    xs = [a * col + b * row + c for row in (0, height) for col in (0, width)]
    ys = [d * col + e * row + f for row in (0, height) for col in (0, width)]
    return min(xs), min(ys), max(xs), max(ys)


def pixel_area_m2(crs_wkt: str, transform: tuple[float, ...], y: np.ndarray | float) -> np.ndarray:
    """The ground area in m² of one pixel whose centre has map coordinate ``y``.

    ``crs_wkt`` empty: the transform's units are taken as metres (in-memory
    sources in tests and notebooks). ``y`` matters only for a geographic CRS
    (it is the latitude there).
    """
    a, b, _, d, e, _ = transform[:6]
    det = abs(a * e - b * d)
    y = np.asarray(y, dtype=np.float64)
    if not crs_wkt:
        return np.full(y.shape, det)
    kind, factor, semi_major, e2 = _crs_kind(crs_wkt)
    if kind == "projected":
        return np.full(y.shape, det * factor * factor)
    phi = np.radians(y)
    w = 1.0 - e2 * np.sin(phi) ** 2
    meridional = semi_major * (1.0 - e2) / w**1.5  # metres per radian of latitude
    prime_vertical = semi_major / np.sqrt(w)  # times cos(lat): metres per radian of longitude
    return det * np.radians(1.0) ** 2 * meridional * prime_vertical * np.cos(phi)


def pixel_sides_m(crs_wkt: str, transform: tuple[float, ...], y: float) -> tuple[float, float]:
    """The ground lengths in m of a pixel's two sides, ``(row_m, col_m)``, at map coordinate ``y``.

    ``row_m``: one row down (the transform's column ``(b, e)``); ``col_m``: one
    column across (``(a, d)``). Their product is :func:`pixel_area_m2` for an
    unrotated pixel. Units as there: empty ``crs_wkt`` is metres; a projected
    CRS's unit is converted with its factor (feet); a geographic CRS's degrees
    of latitude and longitude by the ellipsoid's radii of curvature at ``y``.
    """
    a, b, _, d, e, _ = transform[:6]
    if not crs_wkt:
        return float(np.hypot(b, e)), float(np.hypot(a, d))
    kind, factor, semi_major, e2 = _crs_kind(crs_wkt)
    if kind == "projected":
        return float(np.hypot(b, e) * factor), float(np.hypot(a, d) * factor)
    phi = np.radians(y)
    w = 1.0 - e2 * np.sin(phi) ** 2
    per_lat = np.radians(1.0) * semi_major * (1.0 - e2) / w**1.5  # metres per degree of latitude
    per_lon = np.radians(1.0) * semi_major / np.sqrt(w) * np.cos(phi)  # ... of longitude
    return float(np.hypot(b * per_lon, e * per_lat)), float(np.hypot(a * per_lon, d * per_lat))
