"""Mosaics: many GeoTIFFs read as one image on one grid, through a VRT, no merged copy written.

SRC names a mosaic when it is (tested in this order):

- ``@FILE``: a text file listing GeoTIFF paths, one per line (blank lines and
  ``#`` comments skipped; relative paths are relative to the list's folder);
- an existing directory: its ``*.tif`` and ``*.tiff`` files, sorted by name;
- a pattern with ``*``, ``?`` or ``[`` that is not an existing path: the
  GeoTIFFs it matches (:func:`glob.glob`), sorted;
- a ``.vrt`` file: the user's VRT, opened with the VRT driver once every
  source it names is checked to be a local GeoTIFF;
- a ``.json`` or ``.geojson`` file: a STAC ItemCollection (or Item), one
  asset chosen with ``--asset KEY``; relative hrefs are relative to the JSON.

Anything else is one GeoTIFF, as before. The files must share CRS, pixel
size, rotation, band count, data types and nodata, and lie on one grid
(origins a whole number of pixels apart): else one line names the file and
what differs (tiler does not reproject). tiler writes a VRT of its own (one
``SimpleSource`` per file, in the order above: where files overlap the later
one wins, GDAL's rule) to the temporary folder, named by its content, and
each reading task writes it again if its machine lacks it. Pixels outside
every file are invalid: the VRT's nodata, alpha band or mask band says so.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.dtypes import _gdal_typename

from tiler.errors import InputError
from tiler.io.input_identity import check_unchanged, fingerprint
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import GeoTiffSource
from tiler.tiling import Window

SUFFIXES = (".tif", ".tiff")
REL_TOL = 1e-9  # pixel sizes and rotations equal within this, relative
GRID_TOL = 1e-6  # an origin within this many pixels of the grid is on it


def kind_of(src: str | os.PathLike) -> str | None:
    """The kind of mosaic SRC names: list, directory, glob, vrt or stac; else None."""
    text = str(src)
    path = Path(text)
    if text.startswith("@"):
        return "list"
    if path.is_dir():
        return "directory"
    if any(c in text for c in "*?[") and not path.exists():
        return "glob"
    return {".vrt": "vrt", ".json": "stac", ".geojson": "stac"}.get(path.suffix.lower())


@dataclass(frozen=True)
class MosaicSource(GeoTiffSource):
    """A mosaic read as one GeoTIFF-like source: ``path`` is its VRT, ``name`` the SRC given."""

    spec: str = ""
    kind: str = ""
    asset: str | None = None
    members: tuple[tuple[str, int, str], ...] = ()  # (path, size in bytes, fingerprint)
    vrt_xml: str = ""  # tiler's own VRT ("" for a user's VRT)

    @property
    def name(self) -> str:
        return self.spec

    @property
    def record(self) -> dict:
        """What run.json records of the mosaic (``input.mosaic``)."""
        return {
            "spec": self.spec,
            "kind": self.kind,
            "asset": self.asset,
            "vrt": self.path,
            "members": [
                {"path": p, "size_bytes": size, "fingerprint_sha256": digest}
                for p, size, digest in self.members
            ],
        }

    def read(self, bands: tuple[int, ...], window: Window) -> tuple[np.ndarray, np.ndarray]:
        if self.vrt_xml and not os.path.exists(self.path):  # a worker on another machine
            _write(Path(self.path), self.vrt_xml)
        return super().read(bands, window)


def open_input(
    src: str | os.PathLike,
    *,
    asset: str | None = None,
    max_pixels: int | None,
    driver: str = "GTiff",
    mask: str = "dataset",
    assume_crs: str | None = None,
    pixel_only: bool = False,
) -> GeoTiffSource:
    """SRC opened: a mosaic (see the module) as one :class:`MosaicSource`, else one GeoTIFF."""
    kind = kind_of(src)
    if kind is None:
        if asset is not None:
            raise InputError(f"{src}: --asset chooses a STAC asset; SRC is not a STAC JSON file")
        return open_geotiff(
            src,
            max_pixels=max_pixels,
            driver=driver,
            mask=mask,
            assume_crs=assume_crs,
            pixel_only=pixel_only,
        )
    if driver not in ("GTiff", "VRT"):
        raise InputError(f"{src}: a mosaic of GeoTIFFs; --driver {driver} is for one file")
    if pixel_only:
        raise InputError(f"{src}: a mosaic is placed by its files' georeferencing: no --pixel-only")
    if asset is not None and kind != "stac":
        raise InputError(f"{src}: --asset chooses a STAC asset; SRC is a {kind}, not STAC JSON")
    paths = member_paths(kind, str(src), asset)
    return open_members(paths, str(src), kind, asset, max_pixels, mask, assume_crs)


def member_paths(kind: str, spec: str, asset: str | None) -> list[Path]:
    """The files of the mosaic ``spec`` names, in VRT order (later ones win where they overlap)."""
    if kind == "list":
        listing = Path(spec[1:])
        try:
            lines = listing.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{listing}: cannot read the list of GeoTIFFs ({exc})") from None
        names = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
        paths = [listing.parent / n for n in names]
    elif kind == "directory":
        paths = sorted(p for p in Path(spec).iterdir() if p.suffix.lower() in SUFFIXES)
    elif kind == "glob":
        paths = [Path(p) for p in sorted(glob.glob(spec))]
    elif kind == "stac":
        paths = _stac_paths(Path(spec), asset)
    else:
        paths = _vrt_sources(Path(spec))
    if not paths:
        what = "a directory" if kind == "directory" else f"a {kind}"
        raise InputError(f"{spec}: {what} with no *.tif or *.tiff files in it")
    return [p.absolute() for p in paths]


def _stac_paths(path: Path, asset: str | None) -> list[Path]:
    """The local files of one asset of a STAC ItemCollection (or Item), parsed here."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable STAC JSON file ({exc})") from None
    kind = data.get("type") if isinstance(data, dict) else None
    items = data.get("features") if kind == "FeatureCollection" else [data]
    if kind not in ("FeatureCollection", "Feature") or not isinstance(items, list):
        raise InputError(f'{path}: not a STAC ItemCollection or Item (no "type" of either)')
    keys = sorted({k for item in items for k in (item.get("assets") or {})})
    if asset is None:
        raise InputError(f"{path}: a STAC JSON file: choose one asset with --asset ({keys})")
    paths = []
    for item in items:
        entry = (item.get("assets") or {}).get(asset)
        if not isinstance(entry, dict) or not isinstance(entry.get("href"), str):
            raise InputError(f"{path}: item {item.get('id')!r} has no asset {asset!r} ({keys})")
        href = entry["href"]
        parsed = urlparse(href)
        if parsed.scheme == "file":
            href = unquote(parsed.path)
        elif len(parsed.scheme) > 1:  # one letter: a Windows drive
            raise InputError(
                f"{path}: item {item.get('id')!r}: asset {asset!r} is {href}, not a local file"
            )
        paths.append(path.parent / href)
    return paths


def _vrt_sources(vrt: Path) -> list[Path]:
    """The files a user's VRT reads; a warped or derived VRT, or a remote source, is refused."""
    try:
        root = ET.parse(vrt).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"{vrt}: not a readable VRT ({exc})") from None
    if root.tag != "VRTDataset" or root.get("subClass"):
        raise InputError(f"{vrt}: not a plain mosaic VRT (a VRTDataset without subClass)")
    sources = []
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        if name.startswith("/vsi") or "://" in name:
            raise InputError(f"{vrt}: references {name}, not a local file")
        relative = element.get("relativeToVRT") == "1"
        sources.append(vrt.parent / name if relative else Path(name))
    return list(dict.fromkeys(sources))


def open_members(
    paths: list[Path],
    spec: str,
    kind: str,
    asset: str | None,
    max_pixels: int | None,
    mask: str,
    assume_crs: str | None,
) -> MosaicSource:
    """The files checked (each a GeoTIFF, all on one grid) and opened as one mosaic."""
    files = []
    for path in paths:
        try:
            files.append(open_geotiff(path, max_pixels=None, assume_crs=assume_crs))
        except InputError as exc:
            raise InputError(f"{spec}: {exc}") from None
    members = tuple((str(p), p.stat().st_size, fingerprint(p)) for p in paths)
    vrt_xml = ""
    if kind == "vrt":
        vrt = Path(spec).absolute()
    else:
        vrt_xml = _vrt_xml(files, _check_grid(files))
        vrt = Path(tempfile.gettempdir()) / f"tiler-mosaic-{_digest(vrt_xml)}.vrt"
        _write(vrt, vrt_xml)
    source = open_geotiff(vrt, max_pixels=max_pixels, driver="VRT", mask=mask)
    return MosaicSource(
        **{f: getattr(source, f) for f in GeoTiffSource.__dataclass_fields__},
        spec=spec,
        kind=kind,
        asset=asset,
        members=members,
        vrt_xml=vrt_xml,
    )


def _check_grid(files: list[GeoTiffSource]) -> tuple[Affine, int, int, list[tuple[int, int]]]:
    """The mosaic's transform, height, width and each file's (row, col) on it; or one line."""
    first = files[0]
    crs0 = CRS.from_wkt(first.crs_wkt)
    t0 = Affine(*first.transform)
    offsets = []
    for f in files:
        differs = _difference(f, first, crs0)
        if differs:
            raise InputError(f"{f.path}: {differs} (tiler mosaics files on one grid, as they are)")
        col, row = ~t0 * (f.transform[2], f.transform[5])
        if abs(col - round(col)) > GRID_TOL or abs(row - round(row)) > GRID_TOL:
            raise InputError(
                f"{f.path}: its origin is {col - math.floor(col):.4g} x "
                f"{row - math.floor(row):.4g} pixels off the grid of {first.path} "
                "(origins must be a whole number of pixels apart; resample it onto that grid)"
            )
        offsets.append((round(row), round(col)))
    top = min(r for r, _ in offsets)
    left = min(c for _, c in offsets)
    height = max(r + f.height for (r, _), f in zip(offsets, files, strict=True)) - top
    width = max(c + f.width for (_, c), f in zip(offsets, files, strict=True)) - left
    placed = [(r - top, c - left) for r, c in offsets]
    return t0 * Affine.translation(left, top), height, width, placed


def _difference(f: GeoTiffSource, first: GeoTiffSource, crs0: CRS) -> str:
    """What in ``f`` differs from the first file of the mosaic, in words ("" if nothing)."""
    crs = CRS.from_wkt(f.crs_wkt)
    if crs != crs0:
        code = crs0.to_string()
        return (
            f"CRS {crs.to_string()} differs from {first.path}'s {code}; tiler does not "
            f"reproject mosaics: reproject it to {code} first, e.g. with gdalwarp"
        )
    a, b = f.transform, first.transform
    for index, what in ((0, "pixel size"), (4, "pixel size"), (1, "rotation"), (3, "rotation")):
        if abs(a[index] - b[index]) > REL_TOL * max(abs(a[index]), abs(b[index])):
            return f"{what} {(a[0], a[4])} differs from {first.path}'s {(b[0], b[4])}" + (
                f" (rotation {(a[1], a[3])} against {(b[1], b[3])})" if what == "rotation" else ""
            )
    for what, mine, theirs in (
        ("band count", f.count, first.count),
        ("data types", _dtypes(f.path), _dtypes(first.path)),
        ("alpha bands", f.alpha_bands, first.alpha_bands),
        ("nodata", f.nodata, first.nodata),
    ):
        same = mine == theirs or (what == "nodata" and _both_nan(mine, theirs))
        if not same:
            return f"{what} {mine} differs from {first.path}'s {theirs}"
    return ""


def _both_nan(a, b) -> bool:
    return a is not None and b is not None and math.isnan(a) and math.isnan(b)


def _dtypes(path: str) -> tuple[str, ...]:
    with rasterio.open(path, driver="GTiff") as ds:
        return tuple(ds.dtypes)


def _colorinterp(path: str) -> list[str]:
    with rasterio.open(path, driver="GTiff") as ds:
        return [ci.name.capitalize() for ci in ds.colorinterp]


def _vrt_xml(files: list[GeoTiffSource], grid) -> str:
    """tiler's VRT of ``files``: one SimpleSource per file and band, and what marks the gaps."""
    transform, height, width, placed = grid
    first = files[0]
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = first.crs_wkt
    t = transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e)
    )
    dtypes, colours = _dtypes(first.path), _colorinterp(first.path)
    for band in range(1, first.count + 1):
        element = ET.SubElement(
            root, "VRTRasterBand", dataType=_gdal_typename(dtypes[band - 1]), band=str(band)
        )
        if first.nodata is not None:
            ET.SubElement(element, "NoDataValue").text = repr(float(first.nodata))
        ET.SubElement(element, "ColorInterp").text = colours[band - 1]
        _sources(element, files, placed, str(band))
    if first.nodata is None and not first.alpha_bands:  # gaps invalid through a mask band
        mask = ET.SubElement(ET.SubElement(root, "MaskBand"), "VRTRasterBand", dataType="Byte")
        _sources(mask, files, placed, "mask,1")
    return ET.tostring(root, encoding="unicode")


def _sources(band: ET.Element, files: list[GeoTiffSource], placed, source_band: str) -> None:
    for f, (row, col) in zip(files, placed, strict=True):
        source = ET.SubElement(band, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = f.path
        ET.SubElement(source, "SourceBand").text = source_band
        size = {"xSize": str(f.width), "ySize": str(f.height)}
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", **size)
        ET.SubElement(source, "DstRect", xOff=str(col), yOff=str(row), **size)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _write(path: Path, text: str) -> None:
    """Write ``path`` whole (under a temporary name, then renamed): readers never see half."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def changed_member(before: dict, now: dict) -> str | None:
    """One line naming the mosaic member that differs between two runs' inputs, if one does."""
    old = {m["path"]: m for m in (before.get("mosaic") or {}).get("members", [])}
    new = {m["path"]: m for m in (now.get("mosaic") or {}).get("members", [])}
    if not old and not new:
        return None
    for path in old.keys() - new.keys():
        return f"{path}: a file of the run's mosaic is no longer in it"
    for path in new.keys() - old.keys():
        return f"{path}: a file that was not in the run's mosaic is in it now"
    for path, member in new.items():
        if member != old[path]:
            return f"{path}: a file of the run's mosaic changed since the run (size or fingerprint)"
    return None


def reopen(inputs: dict, moved_to, why: str) -> MosaicSource:
    """A finished run's mosaic opened again, each member checked unchanged at its recorded path."""
    record = inputs["mosaic"]
    if moved_to is not None:
        raise InputError(f"{moved_to}: the run's input is a mosaic; its files are found by path")
    for member in record["members"]:
        check_unchanged(Path(member["path"]), member, why)
    kind = record["kind"]
    spec = record["vrt"] if kind == "vrt" else record["spec"]
    paths = [Path(m["path"]) for m in record["members"]]
    mask = inputs.get("options", {}).get("mask", "dataset")
    return open_members(paths, spec, kind, record["asset"], None, mask, None)
