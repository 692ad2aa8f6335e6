"""A procedural row-crop drone orthomosaic: any window, any size, no global arrays.

:class:`SyntheticField` draws RGBA uint8 bare soil, rows of lobed green plants, a few
weeds and a quadrilateral field footprint (alpha 255 inside; 0 and black outside).
Every pixel is a pure function of ``(row, col)``, the seed and the parameters, built
from integer hashes and IEEE ``+ - * / sqrt`` only: any window equals the same region
of any other window, bit for bit, and costs time and memory in its own size only.
The field's geometry is on the ground: :meth:`SyntheticField.at` draws the same
plants, at the same map positions and of the same size in metres, at any pixel size.
:func:`write_geotiff` streams a field into a tiled GeoTIFF.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from tiler.io import atomic
from tiler.synthetic_rows import Layer, Objects, RowLayout, StandTruth, footprint_spans, stand_truth
from tiler.synthetic_stamps import N_CROP, N_WEED, hash64, stamps, unit
from tiler.tiling import Window

_SOIL_BLOCK = 8  # the low-frequency soil field is evaluated once per 8 x 8 block
# channel = ((value * scale) >> shift) + offset, for soil and for plant pixels
_SOIL_RGB = ((128, 7, 0), (100, 7, 0), (75, 7, 0))
_PLANT_RGB = ((36, 8, 28), (75, 8, 93), (36, 8, 20))


@dataclass(frozen=True)
class SyntheticField:
    """A synthetic row-crop orthomosaic, read lazily window by window.

    Parameters
    ----------
    height, width : int
        Image size in pixels.
    seed : int
        Seed of every random choice; fields with equal parameters are identical.
    pixel_size : float
        Ground sampling distance in metres.
    unit_m : float
        The ground length (m) of one unit of the sizes below: 2.5 cm, so that they
        read as pixels of the default field. At another ``pixel_size`` the same
        field is drawn with ``unit_m / pixel_size`` pixels per unit (:meth:`at`).
    origin_xy : tuple of float
        Map ``(x, y)`` of the top-left image corner.
    crs : str
        Coordinate reference system, anything rasterio accepts.
    row_spacing, plant_spacing : float
        Distance between crop rows and between plants along a row, in units.
    plant_radius : tuple of float
        Range of the mean plant radius in units; lobes reach ~30 % further.
    plant_jitter : tuple of float
        Maximum ``(row, col)`` displacement of a plant from its nominal position, in units.
    missing_fraction : float
        Fraction of missing plants (gaps in the rows).
    weed_density : float
        Probability of a weed in each 40-unit slot between two rows.
    row_angle : float
        Degrees counter-clockwise from the image's +x axis, as seen on screen, along
        which the rows run (their map azimuth, north up, is ``(90 - row_angle) % 180``).
    row_curvature : tuple of float
        Amplitude and wavelength (units) of the sideways displacement
        ``A sin(2 pi v / wavelength)`` that all rows share, ``v`` along the rows.
    skip_rate : float
        Probability that a slot starts a skip: a run of missing plants of
        ``skip_length`` slots (a range, inclusive), on top of ``missing_fraction``.
    double_rate : float
        Probability that a present slot holds a second plant, ``double_offset`` (a
        range, as a fraction of ``plant_spacing``) further along the row.
    field_inset : tuple of float
        Range of the inset of each footprint corner from the image border, as a
        fraction of the image size.
    """

    height: int = 8000
    width: int = 8000
    seed: int = 0
    pixel_size: float = 0.025
    unit_m: float = 0.025
    origin_xy: tuple[float, float] = (500000.0, 4100000.0)
    crs: str = "EPSG:32611"
    row_spacing: float = 36.0
    plant_spacing: float = 25.0
    plant_radius: tuple[float, float] = (4.0, 11.0)
    plant_jitter: tuple[float, float] = (2.0, 4.0)
    missing_fraction: float = 0.07
    weed_density: float = 0.12
    field_inset: tuple[float, float] = (0.03, 0.08)
    row_angle: float = 0.0
    row_curvature: tuple[float, float] = (0.0, 1000.0)
    skip_rate: float = 0.0
    skip_length: tuple[int, int] = (2, 6)
    double_rate: float = 0.0
    double_offset: tuple[float, float] = (0.3, 0.45)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"field size must be positive, got {self.shape}")
        if not (self.pixel_size > 0 and self.unit_m > 0):
            raise ValueError("pixel_size and unit_m must be positive")
        if not 0 < self.plant_radius[0] <= self.plant_radius[1] <= 0.4 * self.row_spacing:
            raise ValueError("plant_radius must satisfy 0 < min <= max <= 0.4 * row_spacing")
        if not 0 <= self.field_inset[0] <= self.field_inset[1] < 0.5:
            raise ValueError("field_inset must satisfy 0 <= min <= max < 0.5")
        if not (0 <= self.missing_fraction <= 1 and 0 <= self.weed_density <= 1):
            raise ValueError("missing_fraction and weed_density must be in [0, 1]")
        _ = self._layout  # checks the row layout's parameters

    @classmethod
    def at(cls, pixel_size: float, extent_m: tuple[float, float], **kwargs: Any) -> SyntheticField:
        """The field of ``extent_m`` (height, width in metres) drawn with pixels of
        ``pixel_size`` m; the other parameters as in the class. Fields that differ only
        in ``pixel_size`` hold the same plants at the same map positions."""
        height, width = (max(1, math.floor(e / pixel_size + 0.5)) for e in extent_m)
        return cls(height=height, width=width, pixel_size=pixel_size, **kwargs)

    @property
    def scale(self) -> float:
        """Pixels per unit of the field's sizes (1.0 for the default field)."""
        return self.unit_m / self.pixel_size

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    @property
    def count(self) -> int:
        """Number of bands: red, green, blue, alpha."""
        return 4

    @property
    def transform(self) -> Affine:
        """Pixel-to-map affine transform (north up)."""
        x0, y0 = self.origin_xy
        return Affine(self.pixel_size, 0.0, x0, 0.0, -self.pixel_size, y0)

    @property
    def _layout(self) -> RowLayout:
        return RowLayout(self.seed, self.row_spacing, self.row_angle, self.row_curvature,
                         self.skip_rate, self.skip_length, self.double_rate,
                         self.double_offset)  # fmt: skip

    def read(self, window: Window) -> np.ndarray:
        """Draw one window of the image.

        Parameters
        ----------
        window : tiler.tiling.Window
            Pixels within the image.

        Returns
        -------
        numpy.ndarray
            ``(4, rows, cols)`` uint8 RGBA; RGB is 0 where alpha is 0.
        """
        w = self._check(window)
        r0, r1, c0, c1 = w.row_start, w.row_stop, w.col_start, w.col_stop
        out = np.zeros((4, r1 - r0, c1 - c0), np.uint8)
        lo, hi = footprint_spans(self.seed, self.field_inset, self.shape, np.arange(r0, r1))
        if out.size == 0 or ((lo >= c1) | (hi < c0)).all():
            return out
        key = self._hash32(r0, r1, 1)[:, None] ^ self._hash32(c0, c1, 2)[None, :]
        key *= 0x9E3779B1  # uint32 per-pixel hash; its top 5 bits are the noise
        noise = (key >> 27).astype(np.int16)
        soil = self._soil(r0, r1, c0, c1) + noise
        shade = self._leaves(r0, r1, c0, c1)
        plant = shade > 0
        shade = shade.astype(np.int16) + noise
        for band, (s_rgb, p_rgb) in enumerate(zip(_SOIL_RGB, _PLANT_RGB, strict=True)):
            soil_band = ((soil * s_rgb[0]) >> s_rgb[1]) + s_rgb[2]
            plant_band = ((shade * p_rgb[0]) >> p_rgb[1]) + p_rgb[2]
            np.copyto(out[band], np.where(plant, plant_band, soil_band), casting="unsafe")
        out[3] = 255
        if not ((lo <= c0) & (hi >= c1 - 1)).all():
            cols = np.arange(c0, c1)
            out *= (cols >= lo[:, None]) & (cols <= hi[:, None])
        return out

    def plant_centres(self, window: Window | None = None) -> np.ndarray:
        """Ground-truth centres of the plants present inside the field footprint.

        Parameters
        ----------
        window : tiler.tiling.Window, optional
            Keep only the centres inside it. Default: the whole image (large for huge fields).

        Returns
        -------
        numpy.ndarray
            ``(N, 2)`` float64 ``(row, col)`` in pixel-index coordinates (pixel
            ``(i, j)`` is centred on ``(i, j)``, as in ``scipy.ndimage``).
        """
        w = self._check(window or Window.whole(self.shape))
        r0, r1, c0, c1 = w.row_start, w.row_stop, w.col_start, w.col_stop
        cy, cx, _ = self._objects(self._layers()[0], r0, r1, c0, c1, margin=0)
        keep = self._inside(cy, cx)
        return np.stack([cy[keep], cx[keep]], axis=1).astype(np.float64)

    def stand_truth(self, window: Window | None = None) -> StandTruth:
        """The crop stand as planted, in map coordinates: slots, plants, rows, in-row spacings.

        Parameters
        ----------
        window : tiler.tiling.Window, optional
            Count only the plants and slots centred inside it (default: the whole image).

        Returns
        -------
        tiler.synthetic_rows.StandTruth
        """
        w = self._check(window or Window.whole(self.shape))
        return stand_truth(self, w)

    def _inside(self, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
        """Whether pixels ``(cy, cx)`` (int64) lie inside the footprint."""
        lo, hi = footprint_spans(self.seed, self.field_inset, self.shape, cy)
        return (cx >= lo) & (cx <= hi)

    def plant_xy(self, window: Window | None = None) -> np.ndarray:
        """:meth:`plant_centres` as map ``(x, y)``: the centre of pixel ``(i, j)`` is at
        ``transform * (j + 0.5, i + 0.5)``, as tiler's ``x``/``y`` columns."""
        rows, cols = self.plant_centres(window).T
        a, b, c, d, e, f = tuple(self.transform)[:6]
        x, y = cols + 0.5, rows + 0.5
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    def _units(self, pixels: Any) -> Any:
        """Pixel-index coordinates in units, from the image's top-left corner's (0 -> -0.5)."""
        return (pixels - (self.scale - 1) * 0.5) / self.scale

    def _pixels(self, units: np.ndarray) -> np.ndarray:
        """The nearest pixel index of positions in units (the inverse of :meth:`_units`)."""
        return np.floor(units * self.scale + (self.scale - 1) * 0.5 + 0.5)

    def _check(self, window: Window) -> Window:
        if min(window.shape) < 0 or not Window.whole(self.shape).contains(window):
            raise ValueError(f"window {window} is not inside the image of shape {self.shape}")
        return window

    def _hash32(self, start: int, stop: int, salt: int) -> np.ndarray:
        return (hash64(self.seed, salt, np.arange(start, stop)) >> 32).astype(np.uint32)

    def _soil(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Soil brightness (int16): moisture patches, texture and row beds."""
        b = _SOIL_BLOCK
        by, bx = np.arange(r0 // b, (r1 - 1) // b + 1), np.arange(c0 // b, (c1 - 1) // b + 1)
        y, x = self._units((by + 0.5) * b), self._units((bx + 0.5) * b)
        f = 112.0 + 16.0 * self._value_noise(y, x, 420.0, 5)
        f += 6.0 * self._value_noise(y, x, 90.0, 6)
        coarse = np.rint(f).astype(np.int16)
        soil = np.repeat(np.repeat(coarse, b, axis=1), b, axis=0)
        soil = soil[r0 - by[0] * b : r1 - by[0] * b, c0 - bx[0] * b : c1 - bx[0] * b]
        return soil + self._layout.beds(
            self._units(np.arange(c0, c1)), self._units(np.arange(r0, r1))
        )

    def _value_noise(self, y: np.ndarray, x: np.ndarray, cell: float, salt: int) -> np.ndarray:
        """Smooth value noise in [-1, 1] at the grid ``y[:, None], x[None, :]`` (units)."""
        y, x = y / cell, x / cell
        iy, ix = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
        ky, kx = np.arange(iy[0], iy[-1] + 2), np.arange(ix[0], ix[-1] + 2)
        lattice = 2.0 * unit(hash64(self.seed, salt, ky[:, None], kx[None, :]), 0) - 1.0
        sy, sx = (y - iy)[:, None], (x - ix)[None, :]
        sy, sx = sy * sy * (3 - 2 * sy), sx * sx * (3 - 2 * sx)  # smoothstep
        iy, ix = (iy - ky[0])[:, None], (ix - kx[0])[None, :]
        top = lattice[iy, ix] + sx * (lattice[iy, ix + 1] - lattice[iy, ix])
        bottom = lattice[iy + 1, ix] + sx * (lattice[iy + 1, ix + 1] - lattice[iy + 1, ix])
        return top + sy * (bottom - top)

    def _layers(self) -> tuple[Layer, Layer]:
        crops = Layer(7, 0.0, self.plant_spacing, self.plant_jitter,
                      1.0 - self.missing_fraction, (0, N_CROP), planted=True)  # fmt: skip
        weeds = Layer(8, 0.5, 40.0, (0.3 * self.row_spacing, 20.0),
                       self.weed_density, (N_CROP, N_CROP + N_WEED))  # fmt: skip
        return crops, weeds

    def _objects(
        self, layer: Layer, r0: int, r1: int, c0: int, c1: int, margin: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres and stamp ids of the objects centred within ``margin`` (px) of the window."""
        found = self._slots(layer, r0, r1, c0, c1, margin)
        cy, cx = self._pixels(found.y), self._pixels(found.x)
        keep = found.present & (cy >= r0 - margin) & (cy < r1 + margin)
        keep &= (cx >= c0 - margin) & (cx < c1 + margin)
        lo, hi = layer.stamps
        sid = lo + (found.h[keep] >> 40) % (hi - lo)
        return cy[keep].astype(np.int64), cx[keep].astype(np.int64), sid.astype(np.int64)

    def _slots(self, layer: Layer, r0: int, r1: int, c0: int, c1: int, margin: int) -> Objects:
        """Every slot of ``layer`` whose object may be centred within ``margin`` px of
        the window (:meth:`tiler.synthetic_rows.RowLayout.objects`)."""
        box = (self._units(c0), self._units(c1), self._units(r0), self._units(r1))
        return self._layout.objects(layer, box, margin / self.scale + 1)

    def _leaves(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Leaf shade (uint8, 0 = soil) of every plant and weed touching the window."""
        lib = stamps(self.seed, self.plant_radius, self.scale)
        pad = 2 * lib.half
        width = c1 - c0 + 2 * pad
        buf = np.zeros((r1 - r0 + 2 * pad) * width, np.uint8)
        found = [self._objects(lay, r0, r1, c0, c1, lib.half) for lay in self._layers()]
        cy, cx, sid = (np.concatenate(a) for a in zip(*found, strict=True))
        size = lib.size[sid]
        pos = np.arange(size.sum()) + np.repeat(lib.start[sid] - (np.cumsum(size) - size), size)
        base = (cy - r0 + pad) * width + (cx - c0 + pad)
        offset = lib.dy * width + lib.dx
        np.maximum.at(buf, np.repeat(base, size) + offset[pos], lib.shade[pos])
        return buf.reshape(-1, width)[pad : pad + r1 - r0, pad : pad + c1 - c0]


def write_geotiff(
    field: SyntheticField,
    path: str | os.PathLike[str],
    *,
    blocksize: int = 512,
    compress: str = "deflate",
    progress: Callable[[int, int], object] | None = None,
) -> Path:
    """Stream a field into a tiled RGBA GeoTIFF, one strip of blocks at a time.

    Parameters
    ----------
    field : SyntheticField
        The image to write.
    path : str or os.PathLike
        Destination; written under a temporary name beside it, then renamed.
    blocksize : int
        Tile width and height (a multiple of 16).
    compress : str
        GDAL compression: ``"deflate"``, ``"lzw"``, ``"zstd"``, ``"none"``...
    progress : callable, optional
        Called as ``progress(rows_done, rows_total)`` after each strip.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.windows import Window as RioWindow

    path = Path(path)
    step = max(blocksize, (1 << 23) // blocksize // blocksize * blocksize)  # <= ~32 MB a write
    profile = dict(
        driver="GTiff", height=field.height, width=field.width, count=4, dtype="uint8",
        crs=field.crs, transform=field.transform, tiled=True, blockxsize=blocksize,
        blockysize=blocksize, compress=compress, photometric="RGB", alpha="YES",
        BIGTIFF="IF_SAFER", num_threads="ALL_CPUS",
    )  # fmt: skip
    if compress.lower() in ("deflate", "lzw", "zstd"):
        profile["predictor"] = 2
    with (
        atomic.replacing(path, atomic.partial_name(path, unique=True)) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                           ColorInterp.alpha)  # fmt: skip
        for r0 in range(0, field.height, blocksize):
            r1 = min(r0 + blocksize, field.height)
            for c0 in range(0, field.width, step):
                c1 = min(c0 + step, field.width)
                window = Window(r0, r1, c0, c1)
                dst.write(field.read(window), window=RioWindow(*window.xywh))
            if progress is not None:
                progress(r1, field.height)
    return path


def plots(field: SyntheticField, rows: int = 2, cols: int = 3, gap: float = 0.04):
    """Trial plots over a synthetic field: a ``rows x cols`` grid of rectangles, ``gap``
    (a fraction of the field) apart, named ``A1``, ``A2``, … (a GeoDataFrame in its CRS)."""
    import geopandas as gpd
    from shapely.geometry import Polygon

    h, w = field.shape
    step_r, step_c = h / rows, w / cols
    names, shapes = [], []
    for i in range(rows):
        for j in range(cols):
            r0, r1 = i * step_r + gap * h, (i + 1) * step_r - gap * h
            c0, c1 = j * step_c + gap * w, (j + 1) * step_c - gap * w
            corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
            shapes.append(Polygon([field.transform * corner for corner in corners]))
            names.append(f"{chr(ord('A') + i)}{j + 1}")
    return gpd.GeoDataFrame({"plot": names}, geometry=shapes, crs=field.crs)
