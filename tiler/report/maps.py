"""The report's maps: the quicklook, and density per field beside density on a grid.

Every map is framed on the image: fields are clipped to the image's
footprint and drawn as polygons (holes included); a field wholly outside
draws nothing (the table flags it). The image is resampled smoothly
(bilinear when enlarged, antialiased when reduced), the labels' overlay by
nearest neighbour so that borders stay crisp.
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import shapely
from affine import Affine
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from tiler.report import pyramid

QUICKLOOK_SIDE = 1400
DPI = 110
WIDTH_IN = 9.0  # the quicklook's width (or height, if taller) in inches
PANEL_IN = 6.0  # each density map's width (or height), two side by side
OUTLINE = "#ffd400"


def png(figure: Figure) -> str:
    """The figure as a PNG data URI (a bare Figure: pyplot and its backend stay untouched)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def stretch(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB in [0, 1]: every band between the 1st and 99th percentiles of all valid values
    (one range for the three, so that colours keep their hue)."""
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    values = bands[:, alpha] if alpha.any() else bands.reshape(3, -1)
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    out = np.clip((np.moveaxis(bands, 0, -1).astype(np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    out[~alpha] = 1.0
    return out


def object_overlay(objects: np.ndarray) -> np.ndarray:
    """RGBA: objects tinted magenta, their borders (a label change) opaque."""
    border = np.zeros(objects.shape, dtype=bool)
    border[:, 1:] |= objects[:, 1:] != objects[:, :-1]
    border[1:, :] |= objects[1:, :] != objects[:-1, :]
    border &= objects > 0
    overlay = np.zeros(objects.shape + (4,))
    overlay[objects > 0] = (1.0, 0.0, 0.85, 0.30)
    overlay[border] = (1.0, 0.0, 0.85, 0.95)
    return overlay


class Frame:
    """One pyramid level and how map coordinates land on it."""

    def __init__(self, pyramid_path, transform, shape: tuple[int, int]):
        self.factor, image, self.objects = pyramid.read_level(pyramid_path, QUICKLOOK_SIDE)
        self.alpha = image[-1] > 0
        self.rgb = stretch(image[:-1], self.alpha)
        # map -> level pixels, whose centres imshow puts at integers (corners at -0.5)
        to_level = Affine.scale(1 / self.factor) * ~Affine(*transform)
        self.to_pixels = Affine.translation(-0.5, -0.5) * to_level
        full = Affine(*transform)
        h, w = shape
        self.footprint = shapely.Polygon(
            [full * (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))]
        )
        self.h, self.w = self.objects.shape
        self.size = (WIDTH_IN, WIDTH_IN * self.h / self.w) if self.w >= self.h else (
            WIDTH_IN * self.w / self.h, WIDTH_IN)  # fmt: skip
        shown = max(self.size) * DPI
        self.smooth = "bilinear" if max(self.h, self.w) < shown else "antialiased"

    def clipped(self, geometry):
        """The part of a field inside the image (empty when none)."""
        return shapely.intersection(geometry, self.footprint)

    def path(self, geometry) -> MplPath | None:
        """A field's clipped polygons as one matplotlib path in level pixels (holes kept)."""
        rings = []
        for polygon in shapely.get_parts(self.clipped(geometry)):
            if isinstance(polygon, shapely.Polygon) and not polygon.is_empty:
                rings += [polygon.exterior, *polygon.interiors]
        if not rings:
            return None
        vertices, codes = [], []
        for ring in rings:
            cols, rows = self.to_pixels * np.asarray(ring.xy)
            vertices += list(zip(cols, rows, strict=True))
            codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(cols) - 2) + [MplPath.CLOSEPOLY]
        return MplPath(vertices, codes)

    def axes(self, ax) -> None:
        ax.set_xlim(-0.5, self.w - 0.5), ax.set_ylim(self.h - 0.5, -0.5), ax.set_axis_off()

    def outline(self, ax, names, geometries, labels: bool = True) -> None:
        for name, geometry in zip(names, geometries, strict=True):
            path = self.path(geometry)
            if path is None:
                continue
            ax.add_patch(PathPatch(path, fill=False, edgecolor=OUTLINE, linewidth=1.4))
            if labels:
                point = self.clipped(geometry).representative_point()
                col, row = self.to_pixels * (point.x, point.y)
                box = {"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0}
                ax.text(col, row, str(name), color="white", fontsize=8, ha="center",
                        bbox=box, clip_on=True)  # fmt: skip


def quicklook(frame: Frame, names, geometries) -> str:
    figure = Figure(figsize=frame.size)
    ax = figure.subplots()
    ax.imshow(frame.rgb, interpolation=frame.smooth)
    ax.imshow(object_overlay(frame.objects), interpolation="nearest")
    frame.outline(ax, names, geometries)
    frame.axes(ax)
    return png(figure)


def density(frame: Frame, names, geometries, per_field, cells) -> str:
    """Density per field (left) and per grid cell (right), on one colour scale."""
    values = np.concatenate([np.asarray(per_field, dtype=float), cells.density.ravel()])
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    norm = Normalize(vmin=0, vmax=top if top > 0 else 1.0)
    cmap = matplotlib.colormaps["viridis"]
    width, height = (side * PANEL_IN / max(frame.size) for side in frame.size)
    figure = Figure(figsize=(2 * width + 1.2, height + 0.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    gray = frame.rgb.mean(axis=2)
    for ax in (left, right):
        ax.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation=frame.smooth)
    for value, geometry in zip(per_field, geometries, strict=True):
        path = frame.path(geometry)
        if path is not None:
            colour = cmap(norm(value)) if np.isfinite(value) else (0.6, 0.6, 0.6, 1)
            left.add_patch(PathPatch(path, facecolor=colour, alpha=0.75, linewidth=0))
    frame.outline(left, names, geometries)
    (gh, gw), k = cells.density.shape, cells.k
    extent = (-0.5, gw * k / frame.factor - 0.5, gh * k / frame.factor - 0.5, -0.5)
    right.imshow(np.ma.masked_invalid(cells.density), cmap=cmap, norm=norm, alpha=0.8,
                 interpolation="nearest", extent=extent)  # fmt: skip
    frame.outline(right, names, geometries, labels=False)
    left.set_title("per field")
    right.set_title("per grid cell")
    for ax in (left, right):
        frame.axes(ax)
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=[left, right], shrink=0.7,
                    label="objects per hectare imaged")  # fmt: skip
    return png(figure)
