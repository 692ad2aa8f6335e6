"""Known yield for a synthetic field, and the yield-monitor points a combine would record.

:func:`yield_truth` puts a yield surface (t/ha) on a grid of square cells of ``cell``
metres whose top-left corner is the field's origin (cell ``(i, j)`` spans map
``x0 + j*cell .. x0 + (j+1)*cell`` and ``y0 - (i+1)*cell .. y0 - i*cell``). In each
cell the yield is a known function of the stand there (:class:`YieldModel`)::

    signal = y_max * D / (D + k_density) * (r / r_ref) ** size_exponent * (1 - gap_penalty * G)

* ``D``: plants per hectare of planted ground (plants centred in the cell over the
  cell's area inside the field footprint, ``cover * cell**2``);
* ``r``: the mean nominal radius (m) of those plants' stamps (the field has no public
  plant sizes; a plant's stamp radius is its size), ``r_ref`` the middle of the field's
  ``plant_radius`` range; a cell with no plant has ``r = r_ref``;
* ``G``: the gap fraction along the rows, the length of the in-row intervals longer
  than ``gap_factor`` nominal plant spacings over the length of all in-row intervals,
  each interval's length counted in the cells it crosses (1 where a cell has none);

plus spatially correlated noise: Gaussian white noise on the cell grid, smoothed by a
Gaussian of ``sigma = noise_length / 2`` m (its autocorrelation is ``exp(-h**2 /
noise_length**2)``: 1/e at ``noise_length``), scaled to a standard deviation of exactly
``noise_sd`` t/ha over the cells. Defaults: 16 t/ha, 8 000 plants/ha, exponent 1, gap
penalty 0.6, gap factor 1.5; noise 0.5 t/ha over 25 m.

:func:`yield_monitor_points` drives a combine along the rows over the truth and
records its usual faults, as bits of ``fault`` (:data:`HEADLAND`, :data:`GPS_LAG`,
:data:`ZERO`). Pure NumPy (and scipy's Gaussian filter); no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np
from scipy import ndimage as ndi

from tiler.synthetic import SyntheticField
from tiler.synthetic_rows import footprint_spans
from tiler.synthetic_stamps import hash64, unit

HEADLAND, GPS_LAG, ZERO = 1, 2, 4  # fault bits; 0: a good record
_STAMP_SALT = 0x57A4B  # tiler.synthetic_stamps.stamps draws a stamp's radius from this hash


@dataclass(frozen=True)
class YieldModel:
    """The noise-free yield of a cell from its stand (the module docstring's formula)."""

    y_max: float = 16.0  # t/ha at infinite density, mean-sized plants, no gaps
    k_density: float = 8000.0  # plants/ha at which half of y_max is reached
    size_exponent: float = 1.0  # yield ~ (mean radius) ** size_exponent
    gap_penalty: float = 0.6  # fraction of yield lost at a gap fraction of 1
    gap_factor: float = 1.5  # an in-row interval over this many plant spacings is a gap

    def signal(self, density: np.ndarray, size: np.ndarray, gap: np.ndarray) -> np.ndarray:
        """t/ha of cells of ``density`` plants/ha, ``size`` r / r_ref, gap fraction ``gap``."""
        d = np.asarray(density, np.float64)
        return (self.y_max * d / (d + self.k_density) * np.asarray(size) ** self.size_exponent
                * (1.0 - self.gap_penalty * np.asarray(gap)))  # fmt: skip


@dataclass(frozen=True, eq=False)
class YieldTruth:
    """A field's yield on a grid of cells (rows from the top), t/ha; NaN where no cover."""

    field: SyntheticField
    cell: float  # cell side in metres
    density: np.ndarray  # (R, C) plants per hectare of planted ground
    size: np.ndarray  # (R, C) mean plant radius over the reference radius
    gap: np.ndarray  # (R, C) gap fraction along the rows
    cover: np.ndarray  # (R, C) fraction of the cell inside the field footprint
    signal: np.ndarray  # (R, C) the model's yield, t/ha
    noise: np.ndarray  # (R, C) the correlated noise, t/ha
    model: YieldModel = dc_field(default_factory=YieldModel)
    noise_sd: float = 0.5
    noise_length: float = 25.0
    min_cover: float = 0.5  # cells scored by best_r2 (and mostly harvested) have this cover

    @property
    def yield_t_ha(self) -> np.ndarray:
        """The yield: signal plus noise."""
        out: np.ndarray = self.signal + self.noise
        return out

    @property
    def valid(self) -> np.ndarray:
        """Cells mostly inside the footprint."""
        return self.cover >= self.min_cover

    @property
    def best_r2(self) -> float:
        """The best R² any model of the stand can reach on the valid cells:
        ``var(signal) / (var(signal) + var(noise))`` of the realised fields."""
        s, n = self.signal[self.valid].var(), self.noise[self.valid].var()
        return float(s / (s + n))

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(row, col)`` of the cells holding map points (may lie outside the grid)."""
        x0, y0 = self.field.origin_xy
        row = np.floor((y0 - np.asarray(y)) / self.cell).astype(np.int64)
        return row, np.floor((np.asarray(x) - x0) / self.cell).astype(np.int64)

    def at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Yield (t/ha) at map points; NaN outside the grid or the footprint."""
        row, col = self.cell_of(x, y)
        ok = (row >= 0) & (row < self.signal.shape[0]) & (col >= 0) & (col < self.signal.shape[1])
        out = np.full(row.shape, np.nan)
        out[ok] = self.yield_t_ha[row[ok], col[ok]]
        return out


def planted(field: SyntheticField, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether map points lie inside the field's footprint (its planted area)."""
    x0, y0 = field.origin_xy
    col = np.floor((np.asarray(x) - x0) / field.pixel_size).astype(np.int64)
    row = np.floor((y0 - np.asarray(y)) / field.pixel_size).astype(np.int64)
    inside = (row >= 0) & (row < field.height) & (col >= 0) & (col < field.width)
    lo, hi = footprint_spans(field.seed, field.field_inset, field.shape, np.clip(row, 0, None))
    return inside & (col >= lo) & (col <= hi)


def plant_sizes(field: SyntheticField) -> tuple[np.ndarray, np.ndarray]:
    """Map ``(x, y)`` (as :meth:`SyntheticField.plant_xy`) and nominal radius (m) of every plant."""
    cy, cx, sid = field._objects(field._layers()[0], 0, field.height, 0, field.width, margin=0)
    keep = field._inside(cy, cx)
    lo, hi = field.plant_radius
    radius = (lo + (hi - lo) * unit(hash64(field.seed, _STAMP_SALT, sid[keep]), 0)) * field.unit_m
    a, b, c, d, e, f = tuple(field.transform)[:6]
    px, py = cx[keep] + 0.5, cy[keep] + 0.5
    return np.column_stack([a * px + b * py + c, d * px + e * py + f]), radius


def correlated_noise(
    shape: tuple[int, int], cell: float, length: float, sd: float, rng: np.random.Generator
) -> np.ndarray:
    """White noise smoothed by a Gaussian of ``length / 2`` m (autocorrelation
    ``exp(-h**2 / length**2)``), with a standard deviation of exactly ``sd``."""
    sigma = length / 2.0 / cell
    pad = math.ceil(4 * sigma)  # smoothed on a padded grid: no edge effects in the cells
    white = rng.standard_normal((shape[0] + 2 * pad, shape[1] + 2 * pad))
    smooth = ndi.gaussian_filter(white, sigma, mode="wrap")[
        pad : pad + shape[0], pad : pad + shape[1]
    ]
    smooth -= smooth.mean()
    scaled: np.ndarray = smooth * (sd / smooth.std()) if smooth.std() > 0 else smooth
    return scaled


def _cover(field: SyntheticField, cell: float, shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each cell inside the footprint, a pixel row at a time (in its centre's cell)."""
    ps = field.pixel_size
    lo, hi = footprint_spans(field.seed, field.field_inset, field.shape, np.arange(field.height))
    row = np.minimum(((np.arange(field.height) + 0.5) * ps / cell).astype(np.int64), shape[0] - 1)
    left, right = lo * ps, (hi + 1) * ps  # each pixel row's planted span, metres from x0
    edges = np.arange(shape[1]) * cell
    overlap = np.clip(
        np.minimum(right[:, None], edges + cell) - np.maximum(left[:, None], edges), 0, None
    )
    area = np.zeros(shape)
    np.add.at(area, row, overlap * ps)
    return area / (cell * cell)


def yield_truth(
    field: SyntheticField,
    cell: float = 5.0,
    *,
    model: YieldModel | None = None,
    noise_sd: float = 0.5,
    noise_length: float = 25.0,
    seed: int = 0,
) -> YieldTruth:
    """The known yield of ``field`` on cells of ``cell`` metres (module docstring)."""
    model = model or YieldModel()
    shape = (math.ceil(field.height * field.pixel_size / cell - 1e-9),
             math.ceil(field.width * field.pixel_size / cell - 1e-9))  # fmt: skip
    flat = shape[0] * shape[1]

    def per_cell(xy: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        row, col = truth.cell_of(xy[:, 0], xy[:, 1])
        ok = (row >= 0) & (row < shape[0]) & (col >= 0) & (col < shape[1])
        w = None if weights is None else weights[ok]
        return np.bincount(row[ok] * shape[1] + col[ok], w, flat).reshape(shape)

    cover = _cover(field, cell, shape)
    truth = YieldTruth(field, cell, *(np.zeros(shape),) * 6)  # for cell_of
    xy, radius = plant_sizes(field)
    plants = per_cell(xy)
    area_ha = cover * cell * cell / 1e4
    density = np.divide(plants, area_ha, out=np.zeros(shape), where=area_ha > 0)
    r_ref = 0.5 * sum(field.plant_radius) * field.unit_m
    size = np.divide(per_cell(xy, radius), plants * r_ref, out=np.ones(shape), where=plants > 0)
    stand = field.stand_truth()
    is_gap = stand.gap_length_m > model.gap_factor * stand.plant_spacing_m
    cell_i, interval, length = _lengths_in_cells(
        field.origin_xy, cell, shape, stand.gap_start_xy, stand.gap_end_xy
    )
    total = np.bincount(cell_i, length, flat).reshape(shape)
    gaps = np.bincount(cell_i, length * is_gap[interval], flat).reshape(shape)
    gap = np.divide(gaps, total, out=np.ones(shape), where=total > 0)
    signal = np.where(cover > 0, model.signal(density, size, gap), np.nan)
    noise = correlated_noise(shape, cell, noise_length, noise_sd, np.random.default_rng(seed))
    noise[cover == 0] = np.nan
    return YieldTruth(field, cell, density, size, gap, cover, signal, noise, model,
                      noise_sd, noise_length)  # fmt: skip


def _lengths_in_cells(
    origin: tuple[float, float],
    cell: float,
    shape: tuple[int, int],
    start: np.ndarray,
    end: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The segments ``start -> end`` ((N, 2) map points) cut by the cells: ``(flat cell
    index, segment index, length in the cell)`` of every piece."""
    import shapely

    x0, y0 = origin
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    boxes = shapely.box(x0 + j * cell, y0 - (i + 1) * cell, x0 + (j + 1) * cell,
                        y0 - i * cell).ravel()  # fmt: skip
    lines = shapely.linestrings(np.stack([start, end], axis=1))
    box_i, line_i = shapely.STRtree(lines).query(boxes, predicate="intersects")
    pieces = shapely.length(shapely.intersection(lines[line_i], boxes[box_i]))
    return box_i, line_i, pieces


def _passes(field: SyntheticField, swath: float, headland: float) -> list[np.ndarray]:
    """Serpentine combine passes along the rows, ``swath`` m apart: each ``(2, 2)`` map
    start and end, ``headland`` m beyond the first and last planted point under it."""
    a = math.radians(field.row_angle)  # the rows' map direction (cos a, sin a)
    along, across = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    h, w = field.shape
    corners = np.array([field.transform * (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))])
    v, u = corners @ along, corners @ across
    step = min(0.25, field.pixel_size * 4)
    vs = np.arange(v.min(), v.max() + step, step)
    out: list[np.ndarray] = []
    for centre in np.arange(u.min() + swath / 2, u.max(), swath):
        xy = vs[:, None] * along + centre * across
        inside = np.flatnonzero(planted(field, xy[:, 0], xy[:, 1]))
        if inside.size:
            ends = np.array([vs[inside[0]] - headland, vs[inside[-1]] + headland])
            line = ends[:, None] * along + centre * across
            out.append(line if len(out) % 2 == 0 else line[::-1])
    return out


def _runs(rng: np.random.Generator, n: int, fraction: float, run: int) -> np.ndarray:
    """Runs of ``run`` consecutive records, each faulty with probability ``fraction``."""
    return np.repeat(rng.random(-(-n // run)) < fraction, run)[:n]


def yield_monitor_points(
    truth: YieldTruth,
    n: int = 2000,
    seed: int = 0,
    *,
    swath: float = 6.0,
    speed: float = 1.5,
    headland: float = 6.0,
    lag_fraction: float = 0.1,
    lag_m: float = 4.0,
    zero_fraction: float = 0.03,
    monitor_sd: float = 0.4,
    run: int = 10,
) -> dict[str, np.ndarray]:
    """``n`` yield-monitor records of a combine harvesting ``truth``'s field.

    The combine drives serpentine passes along the rows, ``swath`` m apart, turning
    ``headland`` m beyond the planted area; the records are evenly spaced along its
    path (every ``path length / (n * speed)`` s at ``speed`` m/s). A record reads the
    truth's yield where the grain was cut plus ``N(0, monitor_sd)`` t/ha (at least 0),
    and carries the bits of its faults:

    * :data:`HEADLAND`: cut outside the planted area (turning); reads the field's mean
      yield times ``U(0, 1)`` (grain still flowing), plus the monitor's noise;
    * :data:`GPS_LAG`: runs of ``run`` records (a fraction ``lag_fraction``) recorded
      ``lag_m`` m ahead along the direction of travel of where the grain was cut;
    * :data:`ZERO`: runs of ``run`` records (a fraction ``zero_fraction``), header up:
      yield exactly 0.

    Returns
    -------
    dict of numpy.ndarray, each ``(n,)``
        ``x``, ``y`` (recorded map position), ``yield_t_ha``, ``fault`` (uint8 bits),
        ``true_x``, ``true_y`` (where the grain was cut), ``heading_deg`` (direction
        of travel clockwise from north), ``time_s``, ``pass`` (int: the pass, or the
        turn after it).
    """
    rng = np.random.default_rng(seed)
    lines = _passes(truth.field, swath, headland)
    if not lines:
        raise ValueError("the field has no planted area to harvest")
    path = np.concatenate(lines)  # the turns join each pass's end to the next one's start
    seg = np.hypot(*np.diff(path, axis=0).T)
    s_vertex = np.r_[0.0, np.cumsum(seg)]
    s = (np.arange(n) + 0.5) * s_vertex[-1] / n
    cut = np.column_stack([np.interp(s, s_vertex, path[:, 0]), np.interp(s, s_vertex, path[:, 1])])
    k = np.clip(np.searchsorted(s_vertex, s, side="right") - 1, 0, seg.size - 1)
    heading = np.diff(path, axis=0)[k] / seg[k, None]
    headland_pt = ~planted(truth.field, cut[:, 0], cut[:, 1])
    lag = _runs(rng, n, lag_fraction, run)
    zero = _runs(rng, n, zero_fraction, run)
    value = truth.at(cut[:, 0], cut[:, 1])
    mean = float(np.nanmean(truth.yield_t_ha[truth.valid]))
    value[headland_pt] = mean * rng.random(int(headland_pt.sum()))
    value = np.maximum(value + rng.normal(0.0, monitor_sd, n), 0.0)
    value[zero] = 0.0
    recorded = cut + lag[:, None] * lag_m * heading
    fault = (HEADLAND * headland_pt + GPS_LAG * lag + ZERO * zero).astype(np.uint8)
    return {
        "x": recorded[:, 0], "y": recorded[:, 1], "yield_t_ha": value, "fault": fault,
        "true_x": cut[:, 0], "true_y": cut[:, 1],
        "heading_deg": np.degrees(np.arctan2(heading[:, 0], heading[:, 1])) % 360.0,
        "time_s": s / speed, "pass": k // 2,
    }  # fmt: skip


def plot_yield(truth: YieldTruth, plots: list) -> np.ndarray:
    """The yield (t/ha) a harvest of each plot (shapely polygons, map coordinates) would
    measure: its cells' yields weighted by the planted area of the cell inside the plot
    (intersection area x the cell's footprint cover); NaN for a plot with no planted ground."""
    import shapely

    x0, y0 = truth.field.origin_xy
    rows, cols = truth.signal.shape
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    boxes = shapely.box(x0 + j * truth.cell, y0 - (i + 1) * truth.cell,
                        x0 + (j + 1) * truth.cell, y0 - i * truth.cell)  # fmt: skip
    value = np.nan_to_num(truth.yield_t_ha)
    out = np.full(len(plots), np.nan)
    for p, plot in enumerate(plots):
        weight = shapely.area(shapely.intersection(boxes, plot)) * truth.cover
        if weight.sum() > 0:
            out[p] = float((weight * value).sum() / weight.sum())
    return out
