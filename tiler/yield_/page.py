"""The yield page: one self-contained HTML file (pictures as PNG data URIs), like report.html.

Sections: the yield map with the fields outlined, the per-field table with its
95 % prediction intervals, the calibration plot (cross-validated predictions
against the measured yield), the model card's summary; and, for ``tiler yield
potential``, the stand-based potential, labelled an estimate from assumptions.
No script, no external resource.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from tiler.io import atomic
from tiler.report import maps
from tiler.report.html import STYLE, _number
from tiler.yield_ import stand_potential as potential_module
from tiler.yield_.prediction import yield_grid

INTERVALS = (
    "Intervals are 95 % prediction intervals from the spatially blocked cross-validation "
    "residuals: the residuals' exponential covariance averaged over each field's cells, "
    "plus the cross-validation bias squared. They cover the model's error, not errors in "
    "the field boundaries or in the measured yield's calibration."
)


def _outline_path(geometry, to_cells: Affine) -> MplPath | None:
    """A field's polygons as one matplotlib path in cell-index coordinates (holes kept)."""
    rings = []
    for polygon in getattr(geometry, "geoms", [geometry]):
        if polygon.geom_type == "Polygon" and not polygon.is_empty:
            rings += [polygon.exterior, *polygon.interiors]
    if not rings:
        return None
    vertices, codes = [], []
    for ring in rings:
        cols, rows = to_cells * np.asarray(ring.xy)
        vertices += list(zip(cols - 0.5, rows - 0.5, strict=True))  # imshow: centres at integers
        codes += [MplPath.MOVETO] + [MplPath.LINETO] * (len(cols) - 2) + [MplPath.CLOSEPOLY]
    return MplPath(vertices, codes)


def yield_map(cells: pd.DataFrame, shape: tuple[int, int], transform_cells: Sequence[float],
              fields: gpd.GeoDataFrame, id_name: str, unit: str) -> str:  # fmt: skip
    """The yield grid (its own orientation, north up when unrotated) with the fields outlined."""
    grid = yield_grid(cells, shape)
    h, w = shape
    side = maps.WIDTH_IN
    figure = Figure(figsize=(side, max(2.5, side * h / max(w, 1))), layout="constrained")
    ax = figure.subplots()
    finite = grid[np.isfinite(grid)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=matplotlib.colormaps["viridis"],
                      vmin=low, vmax=max(high, low + 1e-9), interpolation="nearest")  # fmt: skip
    to_map = Affine(*transform_cells[:6])
    to_cells = ~to_map
    frame = shapely.Polygon([to_map * (c, r) for c, r in ((0, 0), (w, 0), (w, h), (0, h))])
    for name, field in zip(fields[id_name], fields.geometry, strict=True):
        geometry = shapely.intersection(field, frame)  # drawn inside the map only
        path = _outline_path(geometry, to_cells)
        if path is None:
            continue
        ax.add_patch(PathPatch(path, fill=False, edgecolor=maps.OUTLINE, linewidth=1.4))
        point = geometry.representative_point()
        col, row = to_cells * (point.x, point.y)
        ax.text(col - 0.5, row - 0.5, str(name), color="white", fontsize=8, ha="center",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
                clip_on=True)  # fmt: skip
    ax.set_xlim(-0.5, w - 0.5), ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    figure.colorbar(image, ax=ax, shrink=0.7, label=f"predicted yield ({unit})")
    return maps.png(figure)


def calibration_plot(cv: pd.DataFrame, unit: str) -> str:
    """Cross-validated prediction against the measured yield, with the 1:1 line."""
    figure = Figure(figsize=(5.2, 5.0), layout="constrained")
    ax = figure.subplots()
    measured, predicted = cv["measured"].to_numpy(float), cv["predicted_cv"].to_numpy(float)
    ax.scatter(measured, predicted, s=8, alpha=0.6, color="#3f8f4f", linewidths=0)
    both = np.concatenate([measured, predicted])
    both = both[np.isfinite(both)]
    low, high = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    ax.plot([low, high], [low, high], color="#1d2a1f", linewidth=1, label="1:1")
    ax.set_xlabel(f"measured ({unit})"), ax.set_ylabel(f"predicted, cross-validated ({unit})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return maps.png(figure)


def calibration_section(cv: pd.DataFrame | None, meta: dict, heading: str = "h2") -> str:
    """The calibration plot with the blocked CV's R², RMSE and bias in its caption, as a
    section under a ``heading`` (``h2``, ``h3``); empty without CV predictions."""
    if cv is None or not len(cv):
        return ""
    unit, cv_stats = meta["unit"], meta.get("cv", {})
    caption = (f"Each truth cell's yield predicted by the model fitted without its block "
               f"(blocked cross-validation) against the measured yield: R² "
               f"{cv_stats.get('r2', float('nan')):.3f}, RMSE "
               f"{cv_stats.get('rmse', float('nan')):.3f} {unit}, bias (predicted − "
               f"measured) {cv_stats.get('bias', float('nan')):+.3f} {unit}.")  # fmt: skip
    return (
        f"<section id='calibration'><{heading}>Calibration</{heading}><figure><img alt="
        f"'predicted against measured' src='{calibration_plot(cv, unit)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure></section>"
    )


def _cells_html(values: list[str]) -> str:
    return "".join(f"<td>{v}</td>" for v in values)


def fields_table(table: pd.DataFrame, id_name: str, unit: str, table_id: str = "fields") -> str:
    """The per-field table: area, mean with its interval, total with its interval, cells
    (``table_id``: the table's HTML id)."""
    mean, total = table.attrs.get("mean"), table.attrs.get("total")
    mean = mean or next(c for c in table.columns if c.startswith("yield_mean_"))
    total = total or next(c for c in table.columns if c.startswith("yield_total_"))
    amount = unit.partition("/")[0] or "value"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (
        id_name, "area imaged (ha)", f"mean ({unit})", "95 % low", "95 % high",
        f"total ({amount})", "95 % low", "95 % high", "cells"))  # fmt: skip
    rows = []
    for _, row in table.iterrows():
        values = [html.escape(str(row[id_name])), _number(float(row["area_ha"]), 4),
                  *(_number(float(row[c]), 3) for c in (mean, f"{mean}_low", f"{mean}_high")),
                  *(_number(float(row[c]), 2) for c in (total, f"{total}_low", f"{total}_high")),
                  _number(int(row["cells"]))]  # fmt: skip
        rows.append(f"<tr>{_cells_html(values)}</tr>")
    return (f"<div class='wide'><table id='{table_id}'><tr>{head}</tr>{''.join(rows)}"
            "</table></div>")  # fmt: skip


def model_facts(meta: dict) -> dict[str, str]:
    """The model card's summary, from ``model.json``."""
    cv, res, truth = meta.get("cv", {}), meta.get("residuals", {}), meta.get("truth", {})
    unit = meta.get("unit", "")
    nan = float("nan")

    def num(d: dict, key: str, spec: str = ".3f") -> str:
        return format(float(d.get(key, nan) if d.get(key) is not None else nan), spec)

    candidates = "; ".join(
        f"{name}: R² {num(c, 'r2')}, RMSE {num(c, 'rmse')}"
        for name, c in meta.get("candidates", {}).items()
    )
    flagged = ", ".join(f"{k} {v}" for k, v in truth.get("flagged", {}).items()) or "none"
    return {
        "measured": f"{meta.get('value')} ({unit}), {truth.get('kind', '?')} from "
        f"{truth.get('path', '?')}: {truth.get('records', '?')} records, flagged: {flagged}",
        "model": f"{meta.get('chosen')} (candidates: {candidates})",
        "features": ", ".join(meta.get("features", [])),
        "blocked CV": f"R² {num(cv, 'r2')}, RMSE {num(cv, 'rmse')} {unit}, bias "
        f"{num(cv, 'bias', '+.3f')} {unit}; {cv.get('folds')} folds of {cv.get('block_m')} m "
        f"blocks, {cv.get('n_cells')} cells (random-CV R² {num(cv, 'random_r2')}, optimistic)",
        "residuals": f"sd {num(res, 'sd')} {unit}; exponential covariance: nugget "
        f"{num(res, 'nugget', '.4g')}, partial sill {num(res, 'partial_sill', '.4g')}, range "
        f"{num(res, 'range_m', '.4g')} m",
        "cells": f"{meta.get('cell_m')} m",
        "versions": f"tiler {meta.get('tiler')}, scikit-learn {meta.get('sklearn')}",
    }


def subsampled(table: pd.DataFrame) -> str:
    """The sentence saying when a field's interval was averaged over a sample of cells."""
    limit = table.attrs.get("subsampled_above")
    if not limit or not (table["cells"] > limit).any():
        return ""
    return (
        f" In fields of over {limit:,} cells the residuals' correlation is averaged over "
        f"{limit:,} cells drawn at random with a fixed seed (the nugget over all cells)."
    )


def _dl(facts: dict[str, str]) -> str:
    return "<dl>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items()
    ) + "</dl>"  # fmt: skip


def notes(cells: pd.DataFrame) -> str:
    """Paragraphs on the cells whose feature was imputed or lies outside the calibration's
    range (:func:`tiler.yield_.prediction.predict_cells`' counts); empty when none."""
    missing = int(cells.attrs.get("missing", 0))
    outside = int(cells.attrs.get("outside_range", 0))
    found = []
    if missing:
        found.append(f"{missing} cells lack a feature the model uses: it was imputed there.")
    if outside:
        found.append(f"{outside} cells have features outside the calibration range: "
                     "their yield is extrapolated.")  # fmt: skip
    return "".join(f"<p class='lead'>{html.escape(n)}</p>" for n in found)


def render(
    *, title: str, cells: pd.DataFrame, shape: tuple[int, int], transform_cells: Sequence[float],
    fields: gpd.GeoDataFrame, id_name: str, table: pd.DataFrame, meta: dict,
    cv: pd.DataFrame | None = None, card: str = "", potential: pd.DataFrame | None = None,
) -> str:  # fmt: skip
    """The whole yield page as a string (``potential``: the stand-based section too)."""
    unit = meta["unit"]
    picture = yield_map(cells, shape, transform_cells, fields, id_name, unit)
    calibration = calibration_section(cv, meta)
    card_html = (f"<details><summary>model card</summary><pre>{html.escape(card)}</pre>"
                 "</details>" if card else "")  # fmt: skip
    extra = potential_module.section(potential) if potential is not None else ""
    note = notes(cells)
    body = f"""<section id="summary"><h1>Yield</h1>
<p class="lead">{html.escape(title)}: yield ({html.escape(unit)}) predicted per
 {meta.get("cell_m")} m cell by a model calibrated on measured yield.</p>{note}</section>
<section id="map"><h2>Yield map</h2><figure><img alt="predicted yield map" src="{picture}">
<figcaption>Predicted yield per cell ({html.escape(unit)}); fields outlined; blank: no
 prediction.</figcaption></figure></section>
<section id="fields-section"><h2>Fields</h2>{fields_table(table, id_name, unit)}
<p class="lead">{html.escape(INTERVALS)}{html.escape(subsampled(table))} Area: the imaged
 ground inside the field; total = mean × area.</p></section>
{calibration}
<section id="model"><h2>Model</h2>{_dl(model_facts(meta))}{card_html}</section>
{extra}"""
    return _document(title, body)


def _document(title: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiler yield: {html.escape(title)}</title><style>{STYLE}</style></head>
<body><main>
{body}
</main></body></html>
"""


def render_potential(title: str, table: pd.DataFrame) -> str:
    """The page of ``tiler yield potential`` (no measured yield): the potential's section,
    under a heading that says it is an estimate from assumptions."""
    lead = (f"<section id='summary'><h1>Yield potential</h1><p class='lead'>"
            f"{html.escape(title)}: {potential_module.LABEL}.</p></section>")  # fmt: skip
    return _document(title, lead + potential_module.section(table))


def write(path: str | os.PathLike, page: str) -> Path:
    """Write the page atomically."""
    return Path(atomic.write_text(Path(path), page))
