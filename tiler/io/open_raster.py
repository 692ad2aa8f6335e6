"""Opening an input: the checks on open (size, georeferencing, mask) and advice on refusal.

:func:`open_geotiff` reads only the header and gives a :class:`GeoTiffSource`
(read window by window in tasks, see :mod:`tiler.io.raster`), or one line
naming the file and what is wrong with it, with the options that would run a
plain image that is not a GeoTIFF.
"""

from __future__ import annotations

import os
from pathlib import Path

import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError

from tiler.defaults import MASK_MODES
from tiler.errors import InputError, NotGeoreferenced
from tiler.io import remote
from tiler.io.raster import GeoTiffSource, _gdal_reason, _quiet_gdal, note_version
from tiler.io.raster_limits import DEFAULT_MAX_PIXELS, MAX_COMPRESSION_RATIO, check_declared_size


def open_geotiff(
    path: str | os.PathLike,  # or a URL: s3://, gs://, az://, http(s):// (tiler.io.remote)
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_ratio: float | None = MAX_COMPRESSION_RATIO,
    driver: str = "GTiff",
    mask: str = "dataset",
    assume_crs: str | None = None,
    pixel_only: bool = False,
) -> GeoTiffSource:
    """Check that ``path`` is a readable, georeferenced GeoTIFF and describe it.

    Opens the file with the GTiff driver only (another GDAL ``driver`` if
    asked), and reads only its header: an image above ``max_pixels`` pixels
    (width x height), or whose stored blocks would decompress to more than
    ``max_ratio`` times the file's size, is refused before any pixel is read
    (``None`` turns a check off; the ratio is checked for GeoTIFFs only).

    Parameters
    ----------
    mask : {"dataset", "nodata", "alpha", "none"}
        How valid pixels are told (see :data:`MASK_MODES`).
    assume_crs : str, optional
        A CRS (``EPSG:32633``, WKT, PROJ) for a file that has a geotransform
        but no CRS. A file that has a CRS keeps it.
    pixel_only : bool
        Open a file without georeferencing anyway: objects get pixel
        coordinates only (no ``area_m2``, ``x``, ``y`` or geometry).

    Raises
    ------
    InputError
        With one line naming the file and the problem.
    """
    _quiet_gdal()
    if mask not in MASK_MODES:
        raise InputError(f"--mask: {mask!r} is not one of {', '.join(MASK_MODES)}")
    if assume_crs is not None and pixel_only:
        raise InputError("use --assume-crs or --pixel-only, not both")
    url = str(path) if remote.is_url(path) else None
    if url is not None:  # checked (and its errors said) through fsspec, then opened by GDAL
        file_size, version = remote.identity(url)
        note_version(url, version)
        path, opened, stored = remote.public_url(url), remote.gdal_path(url), url
    else:
        path = Path(path)
        file_size, version = _local_size(path), ""  # a file's version: its stat, on each read
        opened = stored = str(path.resolve())
    try:
        with remote.reading(stored), rasterio.open(opened, driver=driver) as ds:
            check_declared_size(
                ds, path, file_size, max_pixels, max_ratio if driver == "GTiff" else None
            )
            crs_wkt, transform, georeferencing = _georeferencing(ds, path, assume_crs, pixel_only)
            alpha = tuple(i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha)
            _check_mask_mode(mask, path, ds.nodata, alpha)
            return GeoTiffSource(
                path=stored,
                height=ds.height,
                width=ds.width,
                count=ds.count,
                dtype=ds.dtypes[0],
                alpha_bands=alpha,
                nodata=ds.nodata,
                crs_wkt=crs_wkt,
                transform=transform,
                block_shape=tuple(ds.block_shapes[0]),
                driver=driver,
                mask=mask,
                georeferencing=georeferencing,
                version=version,
            )
    except RasterioError as exc:
        reason = _gdal_reason(exc)
    if url is not None:
        raise InputError(remote.describe_gdal_error(url, reason))
    if driver == "GTiff" and (advice := _other_format_advice(Path(path), assume_crs, pixel_only)):
        raise InputError(f"{path}: {advice}")
    kind = "GeoTIFF" if driver == "GTiff" else f"{driver} raster"
    raise InputError(f"{path}: not a readable {kind} ({reason})")


def _local_size(path: Path) -> int:
    """The size of the file at ``path``, or one line saying why it is no GeoTIFF to open."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a GeoTIFF")
    file_size = path.stat().st_size
    if file_size == 0:
        raise InputError(f"{path}: is an empty file, not a GeoTIFF")
    return file_size


# Plain image formats that a file refused by the GTiff driver is tried with, only
# to name it: each is a single self-contained file (no VRT, which points at
# other files, and no format that opens a network or a database).
IMAGE_DRIVERS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "JP2OpenJPEG")


def _other_format_advice(path: Path, assume_crs: str | None, pixel_only: bool) -> str | None:
    """What a plain image that is not a GeoTIFF is, and the options that run it; else ``None``."""
    for name in IMAGE_DRIVERS:
        try:
            with rasterio.open(path, driver=name) as ds:
                georeferenced = not ds.transform.is_identity
                has_crs = ds.crs is not None
        except RasterioError:
            continue
        options = [f"--driver {name}"]
        if not georeferenced and not pixel_only:
            options.append("--pixel-only")
            why = "; it has no georeferencing, so positions and areas come in pixels only"
        elif georeferenced and not has_crs and assume_crs is None and not pixel_only:
            options.append("--assume-crs EPSG:XXXX")
            why = "; it has a geotransform but no CRS: give the CRS you know"
        else:
            why = ""
        return (
            f"a {name} image, not a GeoTIFF (inputs are opened as GeoTIFFs unless told); "
            f"to run it anyway, pass {' '.join(options)}{why}"
        )
    return None


IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _georeferencing(ds, path: Path | str, assume_crs: str | None, pixel_only: bool):
    """``(crs_wkt, transform, how)`` of an open dataset, or one line saying what is missing.

    Areas in m² and map coordinates are never made up: a file without a
    geotransform is refused unless ``pixel_only``, and one without a CRS
    unless it is assumed.
    """
    if pixel_only:
        return "", IDENTITY, "none"
    if ds.transform.is_identity:
        what = "ground control points but no geotransform" if ds.gcps[0] else "no geotransform"
        fix = "gdalwarp it onto a grid first" if ds.gcps[0] else "georeference it first"
        raise NotGeoreferenced(
            f"{path}: has {what} (pixel size and position), so no areas in m² or map "
            f"coordinates; {fix}, or pass --pixel-only for results in pixels only"
        )
    t = ds.transform
    transform = (t.a, t.b, t.c, t.d, t.e, t.f)
    if ds.crs is not None:
        if assume_crs is not None:
            raise InputError(
                f"{path}: already has a CRS ({ds.crs.to_string()}); "
                "--assume-crs only fills in a missing one"
            )
        return ds.crs.to_wkt(), transform, "file"
    if assume_crs is None:
        raise NotGeoreferenced(
            f"{path}: has a geotransform but no CRS; pass --assume-crs EPSG:XXXX "
            "if you know it, or --pixel-only for results in pixels only"
        )
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        return CRS.from_user_input(assume_crs).to_wkt(), transform, "assumed"
    except CRSError as exc:
        raise InputError(f"--assume-crs: {assume_crs!r} is not a CRS ({exc})") from None


def _check_mask_mode(mask: str, path: Path | str, nodata, alpha: tuple[int, ...]) -> None:
    if mask == "nodata" and nodata is None:
        raise InputError(
            f"{path}: has no nodata value, which --mask nodata needs "
            "(set one with gdal_edit.py -a_nodata VALUE)"
        )
    if mask == "alpha" and len(alpha) != 1:
        raise InputError(
            f"{path}: has {len(alpha) or 'no'} alpha band(s); --mask alpha needs exactly one"
        )
