"""Ground-truth points for `tiler evaluate`: read, put in the image's CRS, check.

A truth file is one of:

* CSV with map coordinates in columns ``x`` and ``y`` (the image's CRS), or,
  with ``pixels=True``, pixel coordinates in ``col``/``row`` (else ``x``/``y``):
  pixel-index coordinates like the object table's ``centroid_col`` and
  ``centroid_row``, the centre of pixel ``(row i, col j)`` being ``(j, i)``;
* any vector file geopandas reads (GeoJSON, GeoPackage, shapefile, FlatGeobuf,
  GeoParquet), reprojected to the image's CRS; a polygon or box counts as its
  centroid.

A file with no points is a tile with no objects. Every problem is one
:class:`~tiler.errors.InputError` line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiler.errors import InputError
from tiler.georef import map_xy

CRS_HINT = "wrong CRS, or pixel coordinates? (--truth-pixels)"


@dataclass(frozen=True)
class Frame:
    """What a truth file is checked against: the image's CRS, transform and size."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int

    def to_map(self, col: np.ndarray, row: np.ndarray) -> np.ndarray:
        """Map ``(x, y)`` of pixel-index coordinates, as the object table's ``x``/``y``."""
        return np.column_stack(map_xy(self.transform, row, col))

    def _edges(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(row, col)`` of map ``(x, y)`` in pixel-edge coordinates (the image spans
        ``[0, height] x [0, width]``): the inverse of the transform."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        dx, dy = xy[:, 0] - c, xy[:, 1] - f
        return (-d * dx + a * dy) / det, (e * dx - b * dy) / det

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """``(N, 2)`` pixel-index ``(row, col)`` of map ``(x, y)``: pixel (i, j)'s centre
        is (i, j) (the inverse of :meth:`to_map`)."""
        row, col = self._edges(xy)
        return np.column_stack([row - 0.5, col - 0.5])

    def outside(self, xy: np.ndarray) -> int:
        """How many points lie outside the image's footprint (edges count as inside)."""
        row, col = self._edges(xy)
        inside = (col >= 0) & (col <= self.width) & (row >= 0) & (row <= self.height)
        return int(np.count_nonzero(~inside))


def read_truth(
    path: str | Path, frame: Frame, *, pixels: bool = False, missing_empty: bool = False
) -> np.ndarray:
    """The ``(N, 2)`` map ``(x, y)`` of the truth points in ``path``, in the image's CRS.

    With ``missing_empty``, a file that does not exist is an image with no
    objects (data sets such as the NAIP urban trees omit the file of a tile
    without trees); otherwise it is an error.

    Raises
    ------
    InputError
        The file is missing or unreadable, its format unknown, its columns
        missing, or some of its points lie outside the image.
    """
    path = Path(path)
    if not path.is_file():
        if missing_empty and not path.exists():
            return np.empty((0, 2))
        raise InputError(f"{path}: truth file not found")
    if path.suffix.lower() == ".csv":
        xy = _read_csv(path, frame, pixels)
    elif pixels:
        raise InputError(f"{path}: --truth-pixels takes a CSV file (col,row), not a vector file")
    else:
        xy = _read_vector(path, frame)
    if len(xy) and not np.isfinite(xy).all():
        raise InputError(f"{path}: coordinates must be finite numbers")
    outside = frame.outside(xy) if len(xy) else 0
    if outside:
        raise InputError(
            f"{path}: {outside} of {len(xy)} truth points lie outside the image; {CRS_HINT}"
        )
    return xy


def _read_csv(path: Path, frame: Frame, pixels: bool) -> np.ndarray:
    import pandas as pd

    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return np.zeros((0, 2))
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read the CSV ({exc.__class__.__name__})") from None
    names = {str(c).strip().lower(): c for c in table.columns}
    wanted = [("col", "row"), ("x", "y")] if pixels else [("x", "y")]
    for first, second in wanted:
        if first in names and second in names:
            break
    else:
        expected = " or ".join(f"{a},{b}" for a, b in wanted)
        raise InputError(
            f"{path}: no {expected} columns (has {', '.join(map(str, table.columns)) or 'none'})"
        )
    try:
        values = table[[names[first], names[second]]].to_numpy(dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: columns {first},{second} must hold numbers") from None
    return frame.to_map(values[:, 0], values[:, 1]) if pixels else values.reshape(-1, 2)


def _read_vector(path: Path, frame: Frame) -> np.ndarray:
    import geopandas as gpd

    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            table = gpd.read_parquet(path)
        else:
            table = gpd.read_file(path)
    except Exception as exc:  # pyogrio/pyarrow raise many types for a file they cannot read
        reason = (str(exc).splitlines() or [exc.__class__.__name__])[0].split(";")[0]
        if "not recognized" in reason:
            reason = "unknown format; use CSV x,y or GeoJSON, GPKG, shapefile, GeoParquet"
        raise InputError(f"{path}: cannot read the truth file ({reason})") from None
    geometry = table.geometry[table.geometry.notna() & ~table.geometry.is_empty]
    if len(geometry) == 0:
        return np.zeros((0, 2))
    if geometry.crs is not None:
        geometry = geometry.to_crs(frame.crs_wkt)
    points = geometry.centroid  # a point's is itself
    return np.column_stack([points.x.to_numpy(), points.y.to_numpy()]).astype(np.float64)


__all__ = ["CRS_HINT", "Frame", "read_truth"]
