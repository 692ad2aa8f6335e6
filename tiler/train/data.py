"""Training data: GeoTIFFs and their annotations as arrays, paired by file stem.

Images are read whole (training tiles are small); annotations go through
:func:`tiler.io.truth.read_truth`, so points may be CSV in map or pixel coordinates or any
vector file (reprojected; a polygon or box counts as its centroid). For ``kind="mask"``
polygons are rasterised instead. Every problem is one :class:`~tiler.errors.InputError`
line naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiler.errors import InputError
from tiler.io.truth import Frame, read_truth

IMAGE_SUFFIXES = (".tif", ".tiff")
# Preference when a truth folder holds several files of one stem (a CSV first: pixel truth).
TRUTH_SUFFIXES = (".csv", ".geojson", ".json", ".gpkg", ".shp", ".fgb", ".parquet")
PIXEL_SIZE_AGREEMENT = 0.01
MISSING_TRUTH = ("error", "empty")


@dataclass
class Sample:
    """One image: ``image`` (C, H, W) as stored, ``points`` (n, 2) pixel-index (row, col),
    ``mask`` (H, W) uint8 for ``kind="mask"``, and the image's pixel side in metres."""

    name: str
    path: Path
    truth: Path | None
    image: np.ndarray
    points: np.ndarray
    mask: np.ndarray | None
    pixel_m: float


@dataclass(frozen=True)
class Dataset:
    """What training needs from the files: samples, band names, pixel size, value scale."""

    samples: list[Sample]
    bands: list[str]
    pixel_size_m: float
    scale: float


def expand(paths: Iterable[Path], suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """``{stem: path}`` of the files given, folders expanded to their files of ``suffixes``."""
    found: dict[str, Path] = {}
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
            files.sort(key=lambda p: suffixes.index(p.suffix.lower()))
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"{path}: {what} not found")
        for file in files:
            found.setdefault(file.stem, file)
    return found


def read_list(path: Path) -> list[str]:
    """Stems, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the list ({exc.strerror})") from None
    stems = [line.split("#")[0].strip() for line in lines]
    return [s for s in stems if s]


def pair(
    images: dict[str, Path], truth: dict[str, Path], stems: Sequence[str], missing_truth: str
) -> list[tuple[str, Path, Path | None]]:
    """``(stem, image, truth or None)`` for each stem; a missing truth file is an error
    unless ``missing_truth == "empty"`` (data sets that omit the file of an empty tile)."""
    out = []
    for stem in stems:
        if stem not in images:
            raise InputError(f"{stem}: no image of that name among --images")
        if stem not in truth and missing_truth != "empty":
            raise InputError(
                f"{images[stem]}: no truth file {stem}.* among --truth "
                "(--missing-truth empty: a missing file means no objects)"
            )
        out.append((stem, images[stem], truth.get(stem)))
    return out


def _band_name(ds, index: int) -> str:
    description = ds.descriptions[index - 1]
    if description:
        return str(description).strip().lower()
    interp = ds.colorinterp[index - 1].name
    return interp if interp not in ("undefined", "gray", "grey") else f"band{index}"


def read_image(path: Path, bands: Sequence[int] | None) -> tuple[np.ndarray, Frame, float, list]:
    """The image's bands, its frame, its pixel side in metres and the band names."""
    import rasterio

    from tiler.io.open_raster import open_geotiff
    from tiler.units import input_pixel_size

    source = open_geotiff(path)
    chosen = (
        list(bands)
        if bands
        else [b for b in range(1, source.count + 1) if b not in source.alpha_bands]
    )
    bad = [b for b in chosen if not 1 <= b <= source.count]
    if bad:
        raise InputError(f"{path}: has {source.count} bands; --bands asks for band {bad[0]}")
    with rasterio.open(path) as ds:
        image = ds.read(chosen)
        names = [_band_name(ds, b) for b in chosen]
    frame = Frame(source.crs_wkt, source.transform, source.height, source.width)
    size = input_pixel_size(source.crs_wkt, source.transform, source.height)
    return image, frame, size.side_m, names


def rasterise(path: Path, frame: Frame) -> np.ndarray:
    """The (H, W) uint8 mask of the polygons in ``path`` (reprojected to the image's CRS)."""
    import geopandas as gpd
    from rasterio.features import rasterize

    if path.suffix.lower() == ".csv":
        raise InputError(f"{path}: --kind mask takes polygons (GeoJSON, GPKG, ...), not a CSV")
    try:
        geometry = gpd.read_file(path).geometry
    except Exception as exc:  # pyogrio raises many types for a file it cannot read
        reason = (str(exc).splitlines() or [exc.__class__.__name__])[0]
        raise InputError(f"{path}: cannot read the truth file ({reason})") from None
    geometry = geometry[geometry.notna() & ~geometry.is_empty]
    if geometry.crs is not None:
        geometry = geometry.to_crs(frame.crs_wkt)
    if len(geometry) and not geometry.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise InputError(f"{path}: --kind mask takes polygons only")
    from affine import Affine

    if not len(geometry):
        return np.zeros((frame.height, frame.width), np.uint8)
    mask = rasterize(
        list(geometry), out_shape=(frame.height, frame.width), transform=Affine(*frame.transform)
    )
    if not mask.any():
        raise InputError(f"{path}: no polygon covers a pixel of the image; wrong CRS?")
    return mask.astype(np.uint8)


def load(
    pairs: Sequence[tuple[str, Path, Path | None]],
    *,
    kind: str = "points",
    bands: Sequence[int] | None = None,
    pixels: bool = False,
) -> Dataset:
    """Read every image and its annotations; check that bands and pixel sizes agree."""
    samples, names, dtype = [], None, None
    for stem, image_path, truth_path in pairs:
        image, frame, pixel_m, band_names = read_image(image_path, bands)
        if names is None:
            names, dtype = band_names, image.dtype
        elif len(band_names) != len(names):
            raise InputError(f"{image_path}: {len(band_names)} bands, the others {len(names)}")
        elif image.dtype != dtype:
            raise InputError(f"{image_path}: values are {image.dtype}, the others {dtype}")
        points, mask = np.zeros((0, 2)), None
        if kind == "mask":
            mask = np.zeros(image.shape[1:], np.uint8)
            if truth_path is not None:
                mask = rasterise(truth_path, frame)
        elif truth_path is not None:
            points = frame.to_pixels(read_truth(truth_path, frame, pixels=pixels))
        samples.append(Sample(stem, image_path, truth_path, image, points, mask, pixel_m))
    if not samples:
        raise InputError("no images to train on (--images, --list)")
    _check_pixel_sizes(samples)
    if not any(len(s.points) or (s.mask is not None and s.mask.any()) for s in samples):
        where = samples[0].truth.parent if samples[0].truth else samples[0].path.parent
        raise InputError(f"{where}: no annotations in any truth file; nothing to learn")
    pixel = float(np.median([s.pixel_m for s in samples]))
    return Dataset(samples, names or [], pixel, value_scale(np.dtype(dtype)))


def _check_pixel_sizes(samples: Sequence[Sample]) -> None:
    first = samples[0]
    for s in samples[1:]:
        if not math.isclose(s.pixel_m, first.pixel_m, rel_tol=PIXEL_SIZE_AGREEMENT):
            raise InputError(
                f"{s.path}: pixel size {s.pixel_m:.4g} m, but {first.path.name} has "
                f"{first.pixel_m:.4g} m; train on one resolution (within 1 %)"
            )


def value_scale(dtype: np.dtype) -> float:
    """The ``tiler:normalise`` scale: integers to [0, 1] by their type's range; floats as is."""
    if np.issubdtype(dtype, np.integer):
        return 1.0 / float(np.iinfo(dtype).max)
    return 1.0


def split(stems: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A reproducible (train, val) split of ``stems``: at least one of each."""
    if len(stems) < 2:
        raise InputError("need at least 2 images to hold some out for validation")
    order = np.random.default_rng(seed).permutation(len(stems))
    n_val = min(len(stems) - 1, max(1, round(fraction * len(stems))))
    val = sorted(stems[i] for i in order[:n_val])
    return [s for s in stems if s not in set(val)], val
