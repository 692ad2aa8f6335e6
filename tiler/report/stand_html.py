"""The report's "Stand along the rows" section (issue 16): row map, spacing histograms, table.

:class:`StandSection` carries what :mod:`tiler.analysis.rows` found in a run
(the fields' stand columns, the rows and gaps as lines, each field's
histogram of in-row spacing); :func:`section` turns it into the section's
HTML: a lead saying what the figures mean, the row map (every row coloured
by its plants per metre, gaps on top, field outlines), the histograms with
the Kachman-Smith bounds, and the uniformity table, fields without rows
flagged with why. :func:`cards` gives the summary cards' two figures. The
definitions are :mod:`tiler.stand`'s.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
import shapely
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from tiler.report import maps
from tiler.report.html import _number
from tiler.stand import Settings
from tiler.stand.measures import class_names

__all__ = ["MAX_GAPS", "MAX_PANELS", "StandSection", "bars", "cards", "row_map", "section",
]  # fmt: skip

MAX_GAPS = 20_000  # the longest gaps drawn on the row map; the caption says when there are more
MAX_PANELS = 12  # spacing histograms shown, one per field
GAP = "#e4002b"  # gaps: red, apart from every colour of viridis (the rows)
ROWS_CMAP = "viridis"
STYLE = "h3 { font-size: 16px; margin: 18px 0 6px; } td.why { text-align: left; }\n"


@dataclass(frozen=True)
class StandSection:
    """The stand of a run's fields, as the report shows it.

    Attributes
    ----------
    fields : pandas.DataFrame
        One line per field: the report's id column and :func:`tiler.stand.field_columns`.
    rows : geopandas.GeoDataFrame
        One line per row: the id column, :data:`tiler.stand.ROW_COLUMNS` and the row's
        LineString in the raster's CRS.
    gaps : geopandas.GeoDataFrame
        One line per gap: the id column, ``row``, ``length_m``, ``class`` and a LineString.
    histograms : mapping of str to (counts, edges_m)
        Per field id (as text): :func:`tiler.analysis.field.histogram`'s counts and edges.
    messages : mapping of str to str
        Per field id (as text): why a field whose ``stand_status`` is not ``ok`` has no stand.
    settings : tiler.stand.Settings
        What the stand was found with (nominal spacing, gap factor and classes).
    """

    fields: pd.DataFrame
    rows: gpd.GeoDataFrame
    gaps: gpd.GeoDataFrame
    histograms: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    messages: Mapping[str, str] = field(default_factory=dict)
    settings: Settings = Settings()


def bars(counts: np.ndarray, edges: np.ndarray):
    """The bars drawn for one histogram (:func:`tiler.analysis.field.histogram`'s counts
    and edges): ``(left, width, height)``, the overflow bin (its right edge ``inf``) last,
    set apart after a one-bin space and three bins wide."""
    counts, edges = np.asarray(counts), np.asarray(edges, dtype=np.float64)
    finite = edges[np.isfinite(edges)]
    left, width = finite[:-1], np.diff(finite)
    if len(counts) > len(left):  # the spacings beyond the last finite edge
        left = np.append(left, finite[-1] + width[-1])
        width = np.append(width, 3 * width[-1])
    return left, width, counts.astype(np.int64)


def cards(stand: StandSection) -> list[tuple[str, str]]:
    """The summary's cards over the fields with rows, as :mod:`tiler.stand` defines them
    for one field: plants per row metre (all rows' plants less one each / all row length)
    and stand per ha (the same plants / the ground the rows stand for, each field's row
    length x its row spacing)."""
    ok = stand.fields[stand.fields["stand_status"] == "ok"]
    plants, length = (ok["plants_in_rows"] - ok["rows"]).sum(), ok["row_length_m"].sum()
    ground = (ok["row_length_m"] * ok["row_spacing_m"]).sum()
    per_m = plants / length if length > 0 else float("nan")
    per_ha = plants * 10_000 / ground if ground > 0 else float("nan")
    return [("plants per row metre", _number(float(per_m), 2)),
            ("stand per ha", _number(float(per_ha), 0))]  # fmt: skip


def _pixels(frame: maps.Frame, lines) -> tuple[np.ndarray, Any]:
    """Each line's vertices in the frame's pixels: ``(index, segments)``; segments as one
    (n, 2, 2) array when every line has two vertices (gaps), else a list."""
    geometries = np.asarray(lines, dtype=object)
    xy, index = shapely.get_coordinates(geometries, return_index=True)
    a, b, c, d, e, f = tuple(frame.to_pixels)[:6]
    pixels = np.column_stack([a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f])
    counts = np.bincount(index, minlength=len(geometries))
    if len(counts) and (counts == 2).all():
        return counts, pixels.reshape(-1, 2, 2)
    return counts, np.split(pixels, np.cumsum(counts)[:-1])


def _row_width(frame: maps.Frame, rows: gpd.GeoDataFrame, segments, fields) -> float:
    """Line width (points) about 60 % of the row spacing on the picture, 0.25 to 3."""
    pixel_length = sum(float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in segments)
    metres = float(np.nansum(rows["length_m"]))
    spacing = float(np.nanmedian(fields["row_spacing_m"])) if len(fields) else float("nan")
    if not (pixel_length > 0 and metres > 0 and math.isfinite(spacing)):
        return 1.0
    shown = max(frame.size) * maps.DPI / max(frame.w, frame.h)  # figure pixels per pixel
    return float(np.clip(0.6 * spacing * pixel_length / metres * shown * 72 / maps.DPI, 0.25, 3))


def row_map(frame: maps.Frame, stand: StandSection, names, geometries) -> tuple[str, str]:
    """The row map as a PNG data URI, and its caption: the image (faded), each row's line
    coloured by its plants per metre, the gaps (the :data:`MAX_GAPS` longest) in red,
    wider by length class, and the fields outlined."""
    figure = Figure(figsize=frame.size)
    ax = figure.subplots()
    ax.imshow(frame.rgb, interpolation=frame.smooth, alpha=0.55)
    rows = stand.rows[~stand.rows.geometry.is_empty & stand.rows.geometry.notna()]
    _, segments = _pixels(frame, rows.geometry.values)
    width = _row_width(frame, rows, segments, stand.fields)
    per_m = rows["plants_per_m"].to_numpy(dtype=np.float64)
    finite = per_m[np.isfinite(per_m)]
    low, high = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
    cmap = matplotlib.colormaps[ROWS_CMAP].with_extremes(bad="#9a9a9a")
    lines = LineCollection(segments, array=np.ma.masked_invalid(per_m), cmap=cmap, norm=norm,
                           linewidths=width, capstyle="butt")  # fmt: skip
    ax.add_collection(lines)
    gaps = stand.gaps[stand.gaps.geometry.notna() & ~stand.gaps.geometry.is_empty]
    total = len(gaps)
    if total > MAX_GAPS:
        keep = np.argpartition(-gaps["length_m"].to_numpy(dtype=np.float64), MAX_GAPS)[:MAX_GAPS]
        gaps = gaps.iloc[np.sort(keep)]
    handles = []
    names_of = class_names(stand.settings.gap_classes)
    for k, name in enumerate(names_of):
        chosen = gaps[gaps["class"].astype(str) == name]
        # As wide as a row and wider by class; where rows are closer than about a pixel,
        # as wide as a row and half transparent, so that the rows' colours show through.
        gap_width = width * (1 + 0.5 * k) + 0.4 * min(width, 1.0) if width > 0.5 else width
        legend = max(gap_width, 1.0 + 0.7 * k)
        handles.append(Line2D([], [], color=GAP, linewidth=legend, label=f"gap {name}"))
        if len(chosen):
            segments = _pixels(frame, chosen.geometry.values)[1]
            ax.add_collection(
                LineCollection(
                    segments,
                    colors=GAP,
                    linewidths=gap_width,
                    capstyle="butt",
                    alpha=1.0 if width > 0.5 else 0.5,
                )  # fmt: skip
            )
    frame.outline(ax, names, geometries)
    frame.axes(ax)
    factor = f"{stand.settings.gap_factor:g}"
    ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85,
              title=f"gaps > {factor} x spacing", title_fontsize=8)  # fmt: skip
    figure.colorbar(lines, ax=ax, shrink=0.6, extend="both", label="plants per row metre")
    drawn = len(gaps)
    caption = (
        f"{_number(len(rows))} rows coloured by their plants per metre (grey: none measured), "
        f"over the orthomosaic at 1:{frame.factor}; gaps longer than {factor} x the in-row "
        f"spacing in red, wider for longer ones"
    )
    if drawn < total:
        caption += f" (the {_number(drawn)} longest of {_number(total)} gaps drawn)"
    else:
        caption += f" ({_number(total)} gaps)"
    return maps.png(figure), caption + "; fields outlined."


def _shown(stand: StandSection, id_name: str) -> list[tuple[str, float, tuple]]:
    """The fields with rows and a histogram, in the table's order: ``(name, x_ref, hist)``."""
    shown = []
    for _, line in stand.fields.iterrows():
        name = str(line[id_name])
        hist = stand.histograms.get(name)
        if line["stand_status"] == "ok" and hist is not None and np.sum(hist[0]) > 0:
            shown.append((name, float(line["plant_spacing_m"]), hist))
    return shown


def histograms(shown: Sequence[tuple[str, float, tuple]]) -> str:
    """In-row spacing per field (small multiples, at most :data:`MAX_PANELS`), in cm:
    x_ref solid, the 0.5 and 1.5 x_ref bounds dashed, doubles and skips shaded."""
    shown = shown[:MAX_PANELS]
    columns = min(len(shown), 3)
    lines = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(9, 0.4 + 2.5 * lines) if columns > 1 else (8, 3.2))
    axes = np.atleast_1d(figure.subplots(lines, columns, squeeze=False).ravel())
    for ax, (name, x_ref, (counts, edges)) in zip(axes, shown, strict=False):
        left, width, height = bars(counts, np.asarray(edges) * 100)
        n = len(edges) - 1
        ax.bar(left[:n], height[:n], width[:n], align="edge", color="#3f8f4f", linewidth=0)
        if len(height) > n:  # the spacings over 3 x_ref, hatched
            ax.bar(left[n:], height[n:], width[n:], align="edge", color="#8a8a8a",
                   hatch="///", edgecolor="white", linewidth=0)  # fmt: skip
        ref = 100 * x_ref
        ax.axvspan(0, 0.5 * ref, color="#d9534f", alpha=0.12, linewidth=0)
        ax.axvspan(1.5 * ref, left[-1] + width[-1], color="#f0ad4e", alpha=0.15, linewidth=0)
        ax.axvline(ref, color="#1d2a1f", linewidth=1.2)
        for bound in (0.5 * ref, 1.5 * ref):
            ax.axvline(bound, color="#1d2a1f", linewidth=0.9, linestyle="--")
        ax.set_xlim(0, left[-1] + 1.1 * width[-1])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{name}: {_number(int(np.sum(counts)))} spacings", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    for ax in axes[(lines - 1) * columns :]:
        ax.set_xlabel("in-row spacing (cm)", fontsize=8)
    figure.tight_layout()
    return maps.png(figure)


# (title, column, digits: None for a count)
TABLE = [
    ("rows", "rows", None), ("row spacing (m)", "row_spacing_m", 3),
    ("azimuth (°)", "row_azimuth_deg", 1), ("plants per row m", "plants_per_row_m", 2),
    ("stand per ha", "stand_per_ha", 0), ("x_ref (m)", "plant_spacing_m", 3),
    ("spacing mean (m)", "spacing_mean_m", 3), ("spacing SD (m)", "spacing_sd_m", 3),
    ("spacing CV", "spacing_cv", 2), ("doubles", "doubles", None), ("skips", "skips", None),
    ("gaps", "gaps", None), ("gap length (m)", "gap_length_m", 1),
    ("multiples (%)", "multiples_pct", 1), ("miss (%)", "miss_pct", 1),
    ("quality of feed (%)", "quality_of_feed_pct", 1), ("precision (%)", "precision_pct", 1),
    ("emergence (%)", "emergence_pct", 1),
]  # fmt: skip


def _cell(value, digits: int | None) -> str:
    if digits is None:
        return _number(int(value)) if pd.notna(value) else _number(None)
    return _number(float(value), digits)


def table(stand: StandSection, id_name: str) -> str:
    """The uniformity table: a line per field; a field without rows flagged, with why.
    The emergence column only when some field has one."""
    fields = stand.fields
    emergence = "emergence_pct" in fields and fields["emergence_pct"].notna().any()
    columns = [c for c in TABLE if c[1] != "emergence_pct" or emergence]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in (id_name, *(c[0] for c in columns)))
    lines = []
    for _, line in fields.iterrows():
        name = html.escape(str(line[id_name]))
        status = str(line["stand_status"])
        if status != "ok":
            why = stand.messages.get(str(line[id_name]), "")
            text = html.escape(status + (f": {why}" if why else ""))
            lines.append(f"<tr class='flag'><td>{name}</td>"
                         f"<td colspan='{len(columns)}' class='why'>{text}</td></tr>")  # fmt: skip
            continue
        cells = [name, *(_cell(line[c], d) for _, c, d in columns)]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<div class='wide'><table id='stand-table'><tr>{head}</tr>{''.join(lines)}</table></div>"
    )


def _lead(stand: StandSection) -> str:
    settings = stand.settings
    x_ref = (f"the nominal in-row spacing, {settings.plant_spacing:g} m" if settings.plant_spacing
             else "each field's median in-row spacing (no nominal spacing given)")  # fmt: skip
    emergence = (
        f" Emergence: stand per ha / {settings.seeding_rate:,.0f} seeds per ha."
        if settings.seeding_rate
        else " Emergence: plants per row metre x the nominal spacing."
        if settings.plant_spacing
        else ""
    )
    return (
        "<p class='lead'>Rows found in each field from the objects' centroids; a row's "
        "plants per metre are its plants over its length, first plant to last; stand per ha "
        "= plants per row metre x 10&nbsp;000 / row spacing. In-row spacings are measured "
        f"between neighbouring plants of a row, against x_ref, {html.escape(x_ref)}. "
        "Doubles: spacings &le; 0.5 x_ref; skips: &gt; 1.5 x_ref. Kachman&ndash;Smith "
        "indices: multiples = share of doubles, miss = share of skips, quality of feed = "
        "the rest (closer to 100% is better), precision = SD of the spacings between 0.5 and "
        "1.5 x_ref over x_ref (lower is more even). Gaps: spacings longer than "
        f"{settings.gap_factor:g} x_ref, each as long as the spacing.{html.escape(emergence)}"
        "</p>"
    )


def section(frame: maps.Frame, stand: StandSection, id_name: str, names, geometries) -> str:
    """The section's HTML: lead, row map, spacing histograms, uniformity table.

    Parameters
    ----------
    frame : maps.Frame
        The report's picture of the image.
    stand : StandSection
        The stand to show.
    id_name : str
        The fields' id column (in ``stand.fields``).
    names, geometries : sequences
        The fields' names and polygons (raster CRS), outlined on the row map.
    """
    parts = ['<section id="stand"><h2>Stand along the rows</h2>' + _lead(stand)]
    if len(stand.rows):
        uri, caption = row_map(frame, stand, names, geometries)
        parts.append(
            f"<figure><img alt='rows coloured by plants per metre, with gaps' src='{uri}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    shown = _shown(stand, id_name)
    if shown:
        more = (f" (the first {MAX_PANELS} of {len(shown)} fields)"
                if len(shown) > MAX_PANELS else "")  # fmt: skip
        parts.append(
            f"<h3>In-row spacing</h3><figure><img alt='histograms of in-row spacing' "
            f"src='{histograms(shown)}'><figcaption>In-row spacing per field{more}: x_ref "
            "solid, 0.5 and 1.5 x_ref dashed (doubles shaded red, skips orange); the hatched grey "
            "bar counts the spacings over 3 x_ref.</figcaption></figure>"
        )
    parts.append(f"<h3>Uniformity per field</h3>{table(stand, id_name)}</section>")
    return "".join(parts)
