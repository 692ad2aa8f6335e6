"""The report page: one self-contained HTML file (pictures embedded as PNG data URIs).

Sections, in order: summary, quicklook (image with the objects and field
outlines), density per field, object sizes, the table, provenance. No
script, no external resource: the page opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
from affine import Affine
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from tiler.io import output
from tiler.report import pyramid

QUICKLOOK_SIDE = 1400

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d2a1f; background: #f6f7f4; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px; }
.lead { color: #4b5a4d; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: #fff; border: 1px solid #dfe3dc; border-radius: 8px; padding: 10px 16px; }
.card b { display: block; font-size: 22px; }
figure { margin: 0; background: #fff; border: 1px solid #dfe3dc; border-radius: 8px;
         padding: 8px; } figure img { width: 100%; height: auto; display: block; }
figcaption { color: #4b5a4d; font-size: 13px; padding: 6px 4px 0; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid #dfe3dc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #eef1ec; }
tr.flag td { background: #fff4e0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px;
     background: #fff; border: 1px solid #dfe3dc; border-radius: 8px; padding: 12px; }
dt { color: #4b5a4d; } dd { margin: 0; word-break: break-all; font-family: monospace; }
"""


def _png(figure: Figure) -> str:
    """The figure as a PNG data URI (a bare Figure: pyplot and its backend stay untouched)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _stretch(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB in [0, 1]: every band between the 1st and 99th percentiles of all valid values
    (one range for the three, so that colours keep their hue)."""
    bands = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    values = bands[:, alpha] if alpha.any() else bands.reshape(3, -1)
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    out = np.clip((np.moveaxis(bands, 0, -1).astype(np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    out[~alpha] = 1.0
    return out


def _object_overlay(objects: np.ndarray) -> np.ndarray:
    """RGBA: objects tinted magenta, their borders (a label change) opaque."""
    border = np.zeros(objects.shape, dtype=bool)
    border[:, 1:] |= objects[:, 1:] != objects[:, :-1]
    border[1:, :] |= objects[1:, :] != objects[:-1, :]
    border &= objects > 0
    overlay = np.zeros(objects.shape + (4,))
    overlay[objects > 0] = (1.0, 0.0, 0.85, 0.30)
    overlay[border] = (1.0, 0.0, 0.85, 0.95)
    return overlay


def _outline(ax, table: gpd.GeoDataFrame, to_pixels: Affine, labels: bool) -> None:
    for field_id, geometry in zip(table["field_id"], table.geometry, strict=True):
        parts = getattr(geometry, "geoms", [geometry])
        for part in parts:
            xs, ys = np.asarray(part.exterior.xy)
            cols, rows = to_pixels * (xs, ys)
            ax.plot(cols, rows, color="#ffd400", linewidth=1.4)
        if labels and not geometry.is_empty:
            point = geometry.representative_point()
            col, row = to_pixels * (point.x, point.y)
            box = {"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0}
            ax.text(col, row, str(field_id), color="white", fontsize=8, ha="center", bbox=box)


def _quicklook(labels_zarr: Path, transform, table):
    factor, image, objects = pyramid.read_level(labels_zarr, QUICKLOOK_SIDE)
    alpha = image[-1] > 0
    rgb = _stretch(image[:-1], alpha)
    to_pixels = Affine.scale(1 / factor) * ~Affine(*transform)
    h, w = objects.shape
    size = (9, 9 * h / w) if w >= h else (9 * w / h, 9)

    figure = Figure(figsize=size)
    ax = figure.subplots()
    ax.imshow(rgb, interpolation="nearest")
    ax.imshow(_object_overlay(objects), interpolation="nearest")
    _outline(ax, table, to_pixels, labels=True)
    ax.set_xlim(-0.5, w - 0.5), ax.set_ylim(h - 0.5, -0.5), ax.set_axis_off()
    quicklook = _png(figure)

    figure = Figure(figsize=(size[0] + 1.5, size[1]))
    ax = figure.subplots()
    ax.imshow(rgb.mean(axis=2), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    density = table["density_per_ha"].to_numpy(dtype=float)
    finite = density[np.isfinite(density)]
    norm = Normalize(vmin=0, vmax=float(finite.max()) if finite.size and finite.max() > 0 else 1)
    cmap = matplotlib.colormaps["viridis"]
    for value, geometry in zip(density, table.geometry, strict=True):
        for part in getattr(geometry, "geoms", [geometry]):
            xs, ys = np.asarray(part.exterior.xy)
            cols, rows = to_pixels * (xs, ys)
            colour = cmap(norm(value)) if np.isfinite(value) else (0.6, 0.6, 0.6, 1)
            ax.fill(cols, rows, color=colour, alpha=0.75, linewidth=0)
    _outline(ax, table, to_pixels, labels=True)
    ax.set_xlim(-0.5, w - 0.5), ax.set_ylim(h - 0.5, -0.5), ax.set_axis_off()
    figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.7,
                    label="objects per hectare")  # fmt: skip
    return quicklook, _png(figure), factor


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
    ax.set_xlabel(f"object area ({unit})"), ax.set_ylabel("objects")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(figure)


def _number(value, digits: int = 1) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}".replace(",", " ")
    return f"{value:,.{digits}f}".replace(",", " ")


def _table(table: gpd.GeoDataFrame, unit: str, scale: float) -> str:
    head = (
        "<tr><th>field</th><th>area (ha)</th><th>objects</th><th>per ha</th>"
        "<th>canopy cover</th><th>valid</th>"
        f"<th>mean ({unit})</th><th>median ({unit})</th><th>p10 ({unit})</th>"
        f"<th>p90 ({unit})</th><th>outside raster</th></tr>"
    )
    rows = []
    for row in table.itertuples():
        partial = row.inside_fraction < 0.999 and not row.outside_raster
        flag = ' class="flag"' if row.outside_raster or partial else ""
        note = " (partly outside)" if partial else ""
        cells = [
            html.escape(str(row.field_id)) + note,
            _number(row.area_ha, 3),
            _number(int(row.objects)),
            _number(row.density_per_ha, 0),
            f"{row.canopy_cover:.1%}",
            f"{row.valid_fraction:.1%}",
            *(
                _number(v * scale, 1)
                for v in (row.area_mean_m2, row.area_median_m2, row.area_p10_m2, row.area_p90_m2)
            ),  # fmt: skip
            _number(bool(row.outside_raster)),
        ]
        rows.append(f"<tr{flag}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table id='fields'>{head}{''.join(rows)}</table>"


def render(dst: Path, manifest: dict, table, objects: pd.DataFrame, members, has_fields) -> str:
    """The whole page as a string."""
    from tiler.report import provenance

    transform = tuple(manifest["input"]["transform"])
    quicklook, density, factor = _quicklook(dst / output.LABELS, transform, table)
    unit, scale = _unit(objects)
    counted = int(table["objects"].sum())
    area = float(table["area_ha"].sum())
    cover = float((table["canopy_cover"] * table["valid_fraction"] * table["area_ha"]).sum()) / max(
        float((table["valid_fraction"] * table["area_ha"]).sum()), 1e-12
    )
    cards = [
        ("objects in fields" if has_fields else "objects", _number(counted)),
        ("fields" if has_fields else "footprint", _number(len(table)) if has_fields else "1"),
        ("area (ha)", _number(area, 2)),
        ("objects per ha", _number(counted / area if area else float("nan"), 0)),
        ("canopy cover", f"{cover:.1%}"),
        (
            f"median size ({unit})",
            _number(
                float(objects["area_m2"].median()) * scale if len(objects) else float("nan"), 1
            ),
        ),  # fmt: skip
    ]
    flagged = table[table["outside_raster"]]["field_id"].tolist()
    warning = (
        f"<p class='lead'>Outside the raster (zero coverage): {html.escape(', '.join(flagged))}</p>"
        if flagged
        else ""
    )
    facts = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
        for k, v in provenance(dst, manifest).items()
    )
    name = html.escape(Path(manifest["input"]["path"]).name)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tiler report: {name}</title><style>{STYLE}</style></head>
<body><main>
<section id="summary"><h1>Plant count report</h1>
<p class="lead">{name}: objects counted by centroid, canopy cover over valid pixels.</p>
<div class="cards">{"".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in cards)}</div>
{warning}</section>
<section id="quicklook"><h2>Quicklook</h2><figure><img alt="orthomosaic with objects"
 src="{quicklook}"><figcaption>The orthomosaic at 1:{factor} (block means of the input), objects in
 magenta (labels at 1:{factor}, nearest neighbour), fields outlined.</figcaption></figure></section>
<section id="density"><h2>Density per field</h2><figure><img alt="density per field"
 src="{density}"><figcaption>Objects per hectare of each field's area.</figcaption></figure>
</section>
<section id="sizes"><h2>Object sizes</h2><figure><img alt="histogram of object areas"
 src="{_histogram(objects, unit, scale)}"><figcaption>Area of every object in the run ({unit}).
 </figcaption></figure></section>
<section id="table"><h2>Fields</h2>{_table(table, unit, scale)}</section>
<section id="provenance"><h2>Provenance</h2><dl>{facts}</dl></section>
</main></body></html>
"""
