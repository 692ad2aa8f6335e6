"""The report page: one self-contained HTML file (pictures embedded as PNG data URIs).

Sections, in order: summary, quicklook (image with the objects and field
outlines), density per field and on a grid (:mod:`tiler.report.maps`), the
stand along the rows when there is one (:mod:`tiler.report.stand_html`),
object sizes, the table, provenance. No script, no external resource: the
page opens anywhere, offline. The summary's figures are over the fields that
have an image; per-area figures are per hectare of imaged ground.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from tiler.report import maps, vigour
from tiler.report.fields import totals
from tiler.report.grid import Cells

if TYPE_CHECKING:
    from tiler.report.stand_html import StandSection
    from tiler.yield_.report_section import YieldSection

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2a1f; background: #f6f7f4; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px; }
.lead { color: #4b5a4d; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #dfe3dc; border-radius: 8px; padding: 8px 14px;
        font-size: 13px; }
.card b { display: block; font-size: 22px; }
figure { margin: 0; background: #fff; border: 1px solid #dfe3dc; border-radius: 8px;
         padding: 8px; } figure img { width: 100%; height: auto; display: block; }
figcaption { color: #4b5a4d; font-size: 13px; padding: 6px 4px 0; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid #dfe3dc; padding: 4px 8px; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } th { background: #eef1ec; }
tr.flag td { background: #fff4e0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px;
     background: #fff; border: 1px solid #dfe3dc; border-radius: 8px; padding: 12px; }
dt { color: #4b5a4d; } dd { margin: 0; word-break: break-all; font-family: monospace; }
"""


def _unit(objects: pd.DataFrame) -> tuple[str, float]:
    """cm² for small objects (median under 1 m²), else m²."""
    median = float(objects["area_m2"].median()) if len(objects) else 1.0
    return ("cm²", 1e4) if median < 1.0 else ("m²", 1.0)


def _histogram(objects: pd.DataFrame, unit: str, scale: float) -> str:
    figure = Figure(figsize=(8, 3.4))
    ax = figure.subplots()
    areas = objects["area_m2"].to_numpy() * scale
    if areas.size:
        low, high = max(areas.min(), 1e-9), areas.max()
        bins = np.geomspace(low, high, 40) if high > 20 * low else 40
        ax.hist(areas, bins=bins, color="#3f8f4f")
        if not isinstance(bins, int):
            ax.set_xscale("log")
            exponents = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
            ticks = [
                m * 10.0**e for e in exponents for m in (1, 2, 5) if low <= m * 10.0**e <= high
            ]
            ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])  # 1-2-5, plain numbers
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"object area ({unit})"), ax.set_ylabel("objects")
    ax.spines[["top", "right"]].set_visible(False)
    return maps.png(figure)


NBSP = "\u00a0"  # thousands separator that never breaks a number across lines


def _number(value, digits: int = 1) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}".replace(",", NBSP)
    return f"{value:,.{digits}f}".replace(",", NBSP)


def _index_column(table: pd.DataFrame) -> tuple[str, str] | None:
    """The table's vegetation index column and its title (``exg_mean``, ``ExG``), if any."""
    column = next((c for c in vigour.COLUMNS if c in table.columns), None)
    return (column, vigour.TITLES[column.rsplit("_", 1)[0]]) if column else None


def _table(table: gpd.GeoDataFrame, id_name: str, unit: str, scale: float) -> str:
    index = _index_column(table)
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in (id_name, "area (ha)", "imaged (ha)", "imaged", "objects", "per ha imaged",
                  "canopy cover", f"mean ({unit})", f"median ({unit})", f"p10 ({unit})",
                  f"p90 ({unit})", *([f"mean {index[1]}"] if index else []), "no image")
    )  # fmt: skip
    rows = []
    for (_, row), name in zip(table.iterrows(), table[id_name], strict=True):
        partial = row["imaged_pct"] < 99.5 and not row["no_image"]
        flag = ' class="flag"' if row["no_image"] or partial else ""
        cells = [
            html.escape(str(name)) + (" (partly imaged)" if partial else ""),
            _number(row["area_ha"], 3),
            _number(row["imaged_area_ha"], 3),
            f"{row['imaged_pct']:.1f}%",
            _number(int(row["objects"])),
            _number(row["density_per_ha"], 0),
            _number(row["canopy_cover_pct"], 1) + ("%" if not row["no_image"] else ""),
            *(_number(row[f"area_{s}_m2"] * scale, 1) for s in ("mean", "median", "p10", "p90")),
            *([_number(row[index[0]], 3)] if index else []),
            _number(bool(row["no_image"])),
        ]
        rows.append(f"<tr{flag}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<div class='wide'><table id='fields'><tr>{head}</tr>{''.join(rows)}</table></div>"


def render(
    dst: Path, manifest: dict, pyramid_path: Path, table, id_name: str, objects: pd.DataFrame,
    cells: Cells, has_fields: bool, stand: StandSection | None = None,
    yield_section: YieldSection | None = None,
) -> str:  # fmt: skip
    """The whole page as a string; with ``stand``, the section "Stand along the rows"
    after the density maps and its two figures among the summary's cards; with
    ``yield_section``, the section "Yield" after it and the mean yield among the cards."""
    from tiler.report import provenance, stand_html

    inputs = manifest["input"]
    frame = maps.Frame(
        pyramid_path, tuple(inputs["transform"]), (inputs["height"], inputs["width"])
    )
    names, geometries = table[id_name].tolist(), list(table.geometry)
    quicklook = maps.quicklook(frame, names, geometries)
    density = maps.density(frame, names, geometries, table["density_per_ha"], cells)
    unit, scale = _unit(objects)
    total = totals(table)
    median = float(objects["area_m2"].median()) * scale if len(objects) else float("nan")
    cards = [
        ("objects in fields" if has_fields else "objects", _number(total["objects"])),
        ("fields" if has_fields else "footprint", _number(total["fields"])),
        ("imaged area (ha)", _number(total["imaged_area_ha"], 2)),
        ("objects per ha", _number(total["density_per_ha"], 0)),
        ("canopy cover", _number(total["canopy_cover_pct"], 1) + "%"),
        (f"median size ({unit})", _number(median, 1)),
    ]
    index = _index_column(table)
    if index:
        cards.append((f"{index[1]} per object", _number(total[index[0]], 3)))
    rows, style = "", STYLE
    if stand is not None:
        style += stand_html.STYLE
        cards += stand_html.cards(stand)
        rows = stand_html.section(frame, stand, id_name, names, geometries)
    if yield_section is not None:
        style += yield_section.style
        cards += yield_section.cards()
        rows += yield_section.html()
    flagged = table[table["no_image"]][id_name].astype(str).tolist()
    warning = (
        "<p class='lead'>No image (outside the raster or nodata only), left out of the "
        f"figures above: {html.escape(', '.join(flagged))}</p>"
        if flagged
        else ""
    )
    facts = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in provenance(dst, manifest).items()
    )
    name = html.escape(Path(inputs["path"]).name)
    factor = frame.factor
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiler report: {name}</title><style>{style}</style></head>
<body><main>
<section id="summary"><h1>Plant count report</h1>
<p class="lead">{name}: objects counted by centroid; density and canopy cover per hectare of
 imaged ground (the valid pixels inside the fields).</p>
<div class="cards">{"".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in cards)}</div>
{warning}</section>
<section id="quicklook"><h2>Quicklook</h2><figure><img alt="orthomosaic with objects"
 src="{quicklook}"><figcaption>The orthomosaic at 1:{factor} (block means of the input), objects in
 magenta (labels at 1:{factor}, nearest neighbour), fields outlined.</figcaption></figure></section>
<section id="density"><h2>Density</h2><figure><img alt="density per field and on a grid"
 src="{density}"><figcaption>Objects per hectare of imaged ground: per field (left; grey: no
 image) and in {cells.metres:.3g} m cells (right; blank: cells under half imaged).</figcaption>
</figure></section>{rows}
<section id="sizes"><h2>Object sizes</h2><figure><img alt="histogram of object areas"
 src="{_histogram(objects, unit, scale)}"><figcaption>Area of every object in the run ({unit}).
 </figcaption></figure></section>
<section id="table"><h2>Fields</h2>{_table(table, id_name, unit, scale)}</section>
<section id="provenance"><h2>Provenance</h2><dl>{facts}</dl></section>
</main></body></html>
"""
