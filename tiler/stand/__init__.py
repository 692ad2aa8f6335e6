"""The stand along the rows of one field, from its plants' positions (issue 16).

``find_stand(xy, settings)`` takes plant positions in metres of a projected CRS
and finds the rows (:mod:`~tiler.stand.pattern`: direction and spacing;
:mod:`~tiler.stand.lattice`: each plant's row, through curvature), orders each
row's plants (:mod:`~tiler.stand.rows`), and measures along them
(:mod:`~tiler.stand.measures`): per row and for the field, plants per metre,
in-row spacing, doubles, skips, gaps and the Kachman-Smith indices, the stand
per hectare and the emergence. Pure NumPy and SciPy: the reading of object
tables, map projections and files are :mod:`tiler.analysis.rows`'.

Definitions (every figure a user reads):

* ``x_ref``, the nominal in-row spacing: ``Settings.plant_spacing``, else the
  median in-row spacing of the field;
* a row's length: its line's, from its first plant to its last; its plants per
  metre: (plants - 1) / length, the inverse of its mean spacing (a row's n plants
  span n - 1 spacings: plants / length would read a short row dense); the field's:
  all rows' (plants - 1) / all row length;
* stand per hectare: plants per row metre x 10 000 / row spacing;
* doubles: spacings ``<= 0.5 x_ref``; skips: spacings ``> 1.5 x_ref`` (the
  multiples and miss indices count the same, as shares); gaps: spacings
  ``> gap_factor x_ref``, each as long as the spacing;
* emergence: stand per hectare / seeding rate, or, without a seeding rate,
  plants per row metre x the nominal ``Settings.plant_spacing``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tiler.errors import ConfigError
from tiler.stand import lattice, measures, pattern
from tiler.stand.rows import Rows, build

__all__ = ["ROW_COLUMNS", "Settings", "Stand", "find_stand", "field_columns"]

ROW_COLUMNS = (
    "row", "plants", "length_m", "plants_per_m", "spacing_mean_m", "spacing_sd_m", "spacing_cv",
    "doubles", "skips", "gaps", "gap_length_m", *measures.KS_COLUMNS,
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """What is known of the planting, and how gaps are judged (lengths in metres).

    Attributes
    ----------
    row_spacing, row_azimuth : float, optional
        The rows' spacing and azimuth (degrees clockwise from grid north); found if not given.
    plant_spacing : float, optional
        Nominal in-row spacing ``x_ref``; default: the median in-row spacing.
    seeding_rate : float, optional
        Seeds per hectare, for the emergence.
    gap_factor : float
        A gap is a spacing longer than ``gap_factor x_ref``.
    gap_classes : tuple of float
        Edges of the gap length classes.
    min_plants, min_row_plants : int
        Fewest plants for a field to be analysed, and for a row to be one.
    """

    row_spacing: float | None = None
    row_azimuth: float | None = None
    plant_spacing: float | None = None
    seeding_rate: float | None = None
    gap_factor: float = 1.5
    gap_classes: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_plants: int = 20
    min_row_plants: int = 3

    def __post_init__(self) -> None:
        for name in ("row_spacing", "plant_spacing", "seeding_rate"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be positive, got {value}")
        if self.row_azimuth is not None and not math.isfinite(self.row_azimuth):
            raise ConfigError(f"row angle must be a number of degrees, got {self.row_azimuth}")
        if not self.gap_factor > 0:
            raise ConfigError(f"the gap factor must be positive, got {self.gap_factor}")
        edges = self.gap_classes
        if any(not b > a for a, b in zip(edges, edges[1:], strict=False)) or any(
            e <= 0 for e in edges
        ):
            raise ConfigError(f"gap classes must be increasing positive lengths, got {edges}")


@dataclass(frozen=True)
class Stand:
    """One field's stand: its rows, gaps and figures (see the module's definitions).

    ``status`` is ``ok``, ``no rows`` or ``too few plants``, with ``message`` saying why.
    ``row_of`` gives each input plant's row (0-based, as ``rows["row"] - 1``) or -1.
    ``lines`` holds each row's vertices in the input's coordinates; ``gaps`` has the
    columns ``row``, ``length_m``, ``class``, ``x0``, ``y0``, ``x1``, ``y1``.
    """

    status: str
    message: str
    row_azimuth: float
    row_spacing: float
    plant_spacing: float
    row_of: np.ndarray
    rows: dict[str, np.ndarray]
    lines: list[np.ndarray]
    gaps: dict[str, np.ndarray]
    spacings: np.ndarray
    summary: dict[str, float | int | str] = field(default_factory=dict)


def field_columns(settings: Settings) -> list[str]:
    """The stand columns a field table gains, in order."""
    return [
        "stand_status", "rows", "row_azimuth_deg", "row_spacing_m", "plant_spacing_m",
        "plants_in_rows", "off_row_objects", "row_length_m", "plants_per_row_m", "stand_per_ha",
        "spacing_mean_m", "spacing_sd_m", "spacing_cv", "doubles", "skips", "gaps",
        "gap_length_m", *measures.column_names(settings.gap_classes), *measures.KS_COLUMNS,
        "emergence_pct",
    ]  # fmt: skip


def find_stand(xy: np.ndarray, settings: Settings | None = None) -> Stand:
    """The rows, gaps and stand figures of one field's plants ``xy`` ((N, 2), metres);
    rows of ``xy`` that are not finite are on no row."""
    settings = settings or Settings()
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    finite = np.flatnonzero(np.isfinite(xy).all(axis=1))
    n = len(finite)
    if n < settings.min_plants:
        why = f"{n} plants, fewer than the {settings.min_plants} needed to find rows"
        return _without(settings, len(xy), "too few plants", why)
    centre = np.median(xy[finite], axis=0)
    local = xy[finite] - centre  # metres about the field: no precision lost to large eastings
    found = pattern.scan(local, settings.row_azimuth, settings.row_spacing)
    if not found.found:
        why = (f"no row structure in {n} plants (pattern strength {found.strength:.2f}; "
               f"rows in {found.n} plants need {found.needed:.2f})")  # fmt: skip
        return _without(settings, len(xy), "no rows", why)
    azimuth, spacing = found.azimuth, found.spacing
    for refine in (True, False):  # once more with the azimuth and spacing the rows give
        frame = lattice.Frame(azimuth)
        u, v = frame.to_uv(local)
        grid = lattice.phase(u, v, spacing, found.density)
        on = lattice.assign(u, v, grid, spacing)
        if refine and on.on_row.sum() > 2:
            if settings.row_azimuth is None:
                azimuth = (azimuth + lattice.turn(u, v, on)) % 180.0
            if settings.row_spacing is None:
                spacing = lattice.refine_spacing(u, v, on, grid)
    rows = build(local, u, v, on, grid, frame, spacing, settings.min_row_plants)
    if rows.count == 0:
        why = f"no row of {settings.min_row_plants} plants among {n} plants"
        return _without(settings, len(xy), "no rows", why)
    if rows.count == 1 and settings.row_spacing is None:
        spacing = float("nan")  # one row has no spacing to its neighbours (nor a stand per ha)
    row_of = np.full(len(xy), -1, dtype=np.int64)
    row_of[finite[rows.plant]] = rows.row
    return _measured(settings, rows, local, centre, row_of, azimuth, spacing)


def _measured(settings: Settings, rows: Rows, local: np.ndarray, centre: np.ndarray,
              row_of: np.ndarray, azimuth: float, spacing: float) -> Stand:  # fmt: skip
    x = rows.spacing
    x_ref = settings.plant_spacing or (float(np.median(x)) if x.size else float("nan"))
    nrows, g = rows.count, rows.spacing_row
    mean, sd, cv = measures.spread(x, g, nrows)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_m = (rows.plants - 1) / rows.length
    is_gap = x > settings.gap_factor * x_ref
    per_row = {
        "row": np.arange(1, nrows + 1),
        "plants": rows.plants,
        "length_m": rows.length,
        "plants_per_m": np.where(rows.length > 0, per_m, np.nan),
        "spacing_mean_m": mean,
        "spacing_sd_m": sd,
        "spacing_cv": cv,
        "doubles": np.bincount(g[x <= 0.5 * x_ref], minlength=nrows),
        "skips": np.bincount(g[x > 1.5 * x_ref], minlength=nrows),
        "gaps": np.bincount(g[is_gap], minlength=nrows),
        "gap_length_m": np.bincount(g[is_gap], x[is_gap], nrows),
        **measures.kachman_smith_grouped(x, g, nrows, x_ref),
    }
    a, b = local[rows.first[is_gap]] + centre, local[rows.second[is_gap]] + centre
    names = np.array(measures.class_names(settings.gap_classes), dtype=object)
    gaps = {
        "row": g[is_gap] + 1, "length_m": x[is_gap],
        "class": names[measures.gap_class(x[is_gap], settings.gap_classes)],
        "x0": a[:, 0], "y0": a[:, 1], "x1": b[:, 0], "y1": b[:, 1],
    }  # fmt: skip
    lines = [line + centre for line in rows.lines]
    stand = Stand("ok", "", azimuth, spacing, x_ref, row_of, per_row, lines, gaps, x)
    stand.summary.update(_summary(settings, stand, int((row_of < 0).sum())))
    return stand


def _summary(settings: Settings, stand: Stand, off_row: int) -> dict[str, float | int | str]:
    """The field's stand columns (:func:`field_columns`)."""
    rows, x, x_ref, gaps = stand.rows, stand.spacings, stand.plant_spacing, stand.gaps
    plants, length = int(rows["plants"].sum()), float(rows["length_m"].sum())
    per_m = (plants - len(rows["row"])) / length if length > 0 else float("nan")
    per_ha = per_m * 10_000 / stand.row_spacing
    if settings.seeding_rate is not None:
        emergence = per_ha / settings.seeding_rate * 100
    elif settings.plant_spacing is not None:
        emergence = per_m * settings.plant_spacing * 100
    else:
        emergence = float("nan")
    mean, sd, cv = (float(v[0]) for v in measures.spread(x, np.zeros(x.size, np.int64), 1))
    classes = measures.gap_class(gaps["length_m"], settings.gap_classes)
    per_class = np.bincount(classes, minlength=len(settings.gap_classes) + 1)
    return {
        "stand_status": "ok", "rows": len(rows["row"]), "row_azimuth_deg": stand.row_azimuth,
        "row_spacing_m": stand.row_spacing, "plant_spacing_m": x_ref, "plants_in_rows": plants,
        "off_row_objects": off_row, "row_length_m": length, "plants_per_row_m": per_m,
        "stand_per_ha": per_ha, "spacing_mean_m": mean, "spacing_sd_m": sd, "spacing_cv": cv,
        "doubles": int(rows["doubles"].sum()), "skips": int(rows["skips"].sum()),
        "gaps": len(gaps["length_m"]), "gap_length_m": float(gaps["length_m"].sum()),
        **dict(zip(measures.column_names(settings.gap_classes), per_class.tolist(), strict=True)),
        **measures.kachman_smith(x, x_ref), "emergence_pct": emergence,
    }  # fmt: skip


def _without(settings: Settings, n: int, status: str, message: str) -> Stand:
    """A field whose rows could not be found: every figure NaN, every plant off-row."""
    summary: dict[str, float | int | str] = dict.fromkeys(field_columns(settings), float("nan"))
    summary.update(stand_status=status, rows=0, off_row_objects=n, plants_in_rows=0)
    empty = np.empty(0)
    rows = {name: empty for name in ROW_COLUMNS}
    gaps = {name: empty for name in ("row", "length_m", "class", "x0", "y0", "x1", "y1")}
    nan = float("nan")
    return Stand(status, message, nan, nan, settings.plant_spacing or nan,
                 np.full(n, -1, dtype=np.int64), rows, [], gaps, empty, summary)  # fmt: skip
