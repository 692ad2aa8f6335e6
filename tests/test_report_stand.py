"""The report's "Stand along the rows" section: row map, spacing histograms, uniformity table.

The stand is found with :func:`tiler.stand.find_stand` on plants generated here
in rows at an angle (with skipped runs and doubles) inside two of
``test_report``'s fields of a real run, and on the run's own objects in the
others; the page is rendered with it and read back: the table parsed with
``html.parser`` against the fields table, the pictures decoded, the
histogram's counts checked against the doubles and skips counted by the stand.
"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib.image import imread
from test_report import fields, report, run  # noqa: F401  (the real run and its report)

from tiler.analysis.field import histogram
from tiler.report import maps
from tiler.report.grid import Cells
from tiler.report.html import render
from tiler.report.stand_html import (
    MAX_GAPS,
    TABLE,
    StandSection,
    bars,
    cards,
    row_map,
    table,
)
from tiler.stand import ROW_COLUMNS, Settings, field_columns, find_stand

ROWS = {"north": (30.0, 0.5, 0.15), "tilted": (112.0, 0.6, 0.2)}  # azimuth, row, plant spacing


def planted(polygon, azimuth: float, row_m: float, plant_m: float, seed: int) -> np.ndarray:
    """Plants in rows at ``azimuth`` (degrees from north) inside ``polygon``: jittered,
    runs of 3 to 8 plants missing (about 18 % of the plants), a double beside 4 %."""
    rng = np.random.default_rng(seed)
    (x0, y0, x1, y1), centre = polygon.bounds, np.asarray(polygon.centroid.coords[0])
    reach = np.hypot(x1 - x0, y1 - y0) / 2 + 1
    along = np.arange(-reach, reach, plant_m)
    plants = []
    for v in np.arange(-reach, reach, row_m):
        u = along + rng.normal(0, 0.012 * plant_m / 0.15, along.size)
        keep = np.ones(along.size, bool)
        for start in rng.choice(along.size, size=max(1, along.size // 30), replace=False):
            keep[start : start + rng.integers(3, 9)] = False
        u = u[keep]
        u = np.concatenate([u, u[rng.random(u.size) < 0.04] + 0.03])
        plants.append(np.column_stack([u, v + rng.normal(0, 0.01, u.size)]))
    uv = np.concatenate(plants)
    a = np.radians(azimuth)  # u along (sin a, cos a) east-north, v across
    xy = centre + uv[:, :1] * [np.sin(a), np.cos(a)] + uv[:, 1:] * [np.cos(a), -np.sin(a)]
    return xy[shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])]


def section_of(table: gpd.GeoDataFrame, id_name: str, plants: dict, settings: Settings):
    """What tiler.analysis.rows hands the report, made here from find_stand per field."""
    lines, rows, gaps, histograms, messages = [], [], [], {}, {}
    for name in table[id_name].astype(str):
        stand = find_stand(plants[name], settings)
        lines.append({id_name: name, **stand.summary})
        if stand.status != "ok":
            messages[name] = stand.message
            continue
        for i, line in enumerate(stand.lines):
            rows.append({id_name: name, **{c: stand.rows[c][i] for c in ROW_COLUMNS},
                         "geometry": shapely.LineString(line)})  # fmt: skip
        g = stand.gaps
        for i in range(len(g["row"])):
            gaps.append({id_name: name, "row": g["row"][i], "gap": i + 1,
                         "length_m": g["length_m"][i], "class": g["class"][i],
                         "geometry": shapely.LineString([(g["x0"][i], g["y0"][i]),
                                                         (g["x1"][i], g["y1"][i])])})  # fmt: skip
        histograms[name] = histogram(stand)
    crs = table.crs
    fields_table = pd.DataFrame(lines)[[id_name, *field_columns(settings)]]
    rows, gaps = gpd.GeoDataFrame(rows, crs=crs), gpd.GeoDataFrame(gaps, crs=crs)
    return StandSection(fields_table, rows, gaps, histograms, messages, settings)


@pytest.fixture(scope="module")
def inputs(run, report):  # noqa: F811
    """``(dst, manifest, pyramid, table, id, objects, cells, has_fields)`` for render()."""
    manifest = json.loads((run / "run.json").read_text())
    objects = gpd.read_parquet(run / "objects.parquet")
    cells = Cells(np.full((4, 4), 1000.0), 64, 1.6)
    return (run, manifest, report.html.parent / "pyramid.zarr", report.table, "name",
            objects, cells, True)  # fmt: skip


@pytest.fixture(scope="module")
def stand(run, report):  # noqa: F811
    objects = pd.read_parquet(run / "objects.parquet", columns=["x", "y"]).to_numpy()
    plants = {}
    for seed, (name, polygon) in enumerate(
        zip(report.table["name"], report.table.geometry, strict=True)
    ):
        if name in ROWS:
            plants[name] = planted(polygon, *ROWS[name], seed=seed)
        else:
            plants[name] = objects[shapely.contains_xy(polygon, objects[:, 0], objects[:, 1])]
    return section_of(report.table, "name", plants, Settings()), plants


@pytest.fixture(scope="module")
def page(inputs, stand) -> str:
    return render(*inputs, stand=stand[0])


class Tables(HTMLParser):
    """Every table's cells, by the table's id: a list of lines, each a list of
    ``(text, colspan, class of the line)``."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.line, self.cell = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.current = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self.line = (attrs.get("class"), [])
            self.current.append(self.line)
        elif tag in ("td", "th"):
            self.cell = [int(attrs.get("colspan", 1)), ""]
            self.line[1].append(self.cell)

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cell = None


def number(text: str) -> float:
    return float("nan") if text == "–" else float(text.replace("\u00a0", "").rstrip("%"))


def test_the_section_sits_after_the_density_maps_with_its_cards(page, stand):
    section = stand[0]
    order = [page.index(f'<section id="{s}">') for s in ("density", "stand", "sizes")]
    assert order == sorted(order) and page.count('<section id="stand">') == 1
    assert "<h2>Stand along the rows</h2>" in page and "Kachman" in page
    assert "median in-row spacing (no nominal spacing given)" in page
    # The cards against the rows themselves: all row plants (less one a row) over all row
    # length, and over the ground they stand for (each row's length x its row spacing).
    rows = section.rows.merge(section.fields[["name", "row_spacing_m"]], on="name")
    per_m = (rows["plants"] - 1).sum() / rows["length_m"].sum()
    per_ha = (rows["plants"] - 1).sum() * 1e4 / (rows["length_m"] * rows["row_spacing_m"]).sum()
    assert 4 < per_m < 8
    text = dict(re.findall(r'<div class="card">([^<]+)<b>([^<]+)</b>', page))
    assert number(text["plants per row metre"]) == round(per_m, 2)
    assert number(text["stand per ha"]) == round(per_ha)
    assert cards(section) == [("plants per row metre", text["plants per row metre"]),
                              ("stand per ha", text["stand per ha"])]  # fmt: skip


def test_the_found_stand_is_the_planted_one(stand):
    """The generated rows are found (so that the page shows a real stand)."""
    figures = stand[0].fields.set_index("name")
    for name, (azimuth, row_m, _) in ROWS.items():
        assert figures.loc[name, "stand_status"] == "ok"
        assert figures.loc[name, "row_spacing_m"] == pytest.approx(row_m, rel=0.02)
        assert abs((figures.loc[name, "row_azimuth_deg"] - azimuth + 90) % 180 - 90) < 1
        assert figures.loc[name, "doubles"] > 5 and figures.loc[name, "gaps"] > 1
    assert figures.loc["away", "stand_status"] == "too few plants"
    for name in ("edge", "ring"):  # the synthetic field's own rows: 36 units of 2.5 cm, east
        assert figures.loc[name, "row_spacing_m"] == pytest.approx(0.9, rel=0.01)
        assert abs((figures.loc[name, "row_azimuth_deg"] - 90 + 90) % 180 - 90) < 1


def test_the_table_is_the_fields_table(page, stand):
    section = stand[0]
    parsed = Tables()
    parsed.feed(page)
    lines = parsed.tables["stand-table"]
    head = [text for _, text in lines[0][1]]
    assert head[:3] == ["name", "rows", "row spacing (m)"] and "emergence (%)" not in head
    figures = section.fields.set_index("name")
    columns = {title: (column, digits) for title, column, digits in TABLE}
    seen_ok = seen_flag = 0
    for flag, cells in lines[1:]:
        name = cells[0][1]
        row = figures.loc[name]
        if row["stand_status"] != "ok":
            assert flag == "flag" and len(cells) == 2 and cells[1][0] == len(head) - 1
            assert cells[1][1] == f"{row['stand_status']}: {section.messages[name]}"
            seen_flag += 1
            continue
        assert flag is None and len(cells) == len(head)
        for title, (_, text) in zip(head[1:], cells[1:], strict=True):
            column, digits = columns[title]
            expected = row[column] if digits is None else round(float(row[column]), digits)
            assert number(text) == pytest.approx(expected, abs=1e-9), (name, title)
        seen_ok += 1
    # the run's own plants (a synthetic row-crop field) are in rows in "edge" and "ring"
    assert seen_ok == 4 and seen_flag == 1
    assert "too few plants: 0 plants, fewer than the 20 needed to find rows" in page


def test_the_emergence_column_shows_when_known(stand):
    figures = stand[0].fields.copy()
    figures["emergence_pct"] = np.where(figures["stand_status"] == "ok", 87.26, np.nan)
    text = table(StandSection(figures, stand[0].rows, stand[0].gaps), "name")
    assert "<th>emergence (%)</th>" in text and text.count("<td>87.3</td>") == 4


def images(text: str) -> list[np.ndarray]:
    found = re.findall(r"src=['\"]data:image/png;base64,([^'\"]+)['\"]", text)
    return [imread(io.BytesIO(base64.b64decode(data))) for data in found]


def test_the_pictures_are_pngs_with_rows_and_gaps(page):
    section = page[page.index('<section id="stand">') : page.index('<section id="sizes">')]
    pictures = images(section)
    assert len(pictures) == 2 and len(images(page)) == 5
    for picture in pictures:
        assert picture.ndim == 3 and min(picture.shape[:2]) > 100
    rgb = pictures[0][..., :3]
    red = (np.abs(rgb - np.array([0xE4, 0x00, 0x2B]) / 255).max(axis=-1) < 0.08).sum()
    assert red > 50  # the gaps are drawn
    assert re.search(r"rows coloured by their plants per metre .* \(\d+ gaps\)", section)


def test_the_histogram_counts_every_spacing_and_the_bounds(stand):
    section = stand[0]
    figures = section.fields.set_index("name")
    for name in ROWS:
        counts, edges = section.histograms[name]
        x_ref = figures.loc[name, "plant_spacing_m"]
        assert len(counts) == len(edges) - 1 == 61 and edges[-2] == pytest.approx(3 * x_ref)
        assert edges[-1] == np.inf
        left, width, height = bars(counts, edges)
        spacings = figures.loc[name, "plants_in_rows"] - figures.loc[name, "rows"]
        assert height.sum() == spacings  # one spacing fewer than plants in each row
        assert height[:10].sum() == figures.loc[name, "doubles"]  # <= 0.5 x_ref
        assert height[45:].sum() == figures.loc[name, "skips"]  # > 1.5 x_ref
        assert left[-1] > edges[-2] and np.all(np.diff(left) > 0)


def test_the_page_without_a_stand_is_unchanged(inputs, report):  # noqa: F811
    """As build() wrote it, but for the density section (this test's grid cells are not the
    report's) and the report's date."""

    def same(text: str) -> str:
        text = re.sub(r"<dd>tiler [^,<]+, \d{4}-[^<]+</dd>", "", text)
        return re.sub(r'<section id="density">.*?</section>', "", text, flags=re.S)

    again = same(render(*inputs))
    assert again == same(render(*inputs, stand=None)) == same(report.html.read_text())
    assert 'id="stand"' not in again and again.count("data:image/png;base64,") == 2
    assert "plants per row metre" not in again and "h3 {" not in again


def test_a_hundred_thousand_gaps_are_drawn_longest_first(inputs, tmp_path):
    """10^4 rows and 10^5 gaps over the run's image: the map draws the longest MAX_GAPS."""
    manifest, pyramid = inputs[1], inputs[2]
    shape = (manifest["input"]["height"], manifest["input"]["width"])
    frame = maps.Frame(pyramid, tuple(manifest["input"]["transform"]), shape)
    x0, y0, x1, y1 = frame.footprint.bounds
    rng = np.random.default_rng(3)
    v = np.linspace(y0, y1, 10_000)
    ends = np.stack([np.column_stack([np.full(v.size, x0), v]),
                     np.column_stack([np.full(v.size, x1), v])], axis=1)  # fmt: skip
    rows = gpd.GeoDataFrame(
        {"plants_per_m": rng.normal(6, 0.6, v.size), "length_m": x1 - x0},
        geometry=shapely.linestrings(ends),
    )
    n = 100_000
    start = np.column_stack([rng.uniform(x0, x1, n), rng.choice(v, n)])
    length = rng.exponential(0.4, n) + 0.25
    names = np.array(["<0.5 m", "0.5-1 m", "1-2 m", ">=2 m"], dtype=object)
    gaps = gpd.GeoDataFrame(
        {"length_m": length, "class": names[np.searchsorted([0.5, 1, 2], length, side="right")]},
        geometry=shapely.linestrings(np.stack([start, start + np.outer(length, [1, 0])], 1)),
    )
    figures = pd.DataFrame({"row_spacing_m": [(y1 - y0) / 10_000]})
    uri, caption = row_map(frame, StandSection(figures, rows, gaps), [], [])
    assert f"the {MAX_GAPS:,} longest of {n:,} gaps drawn".replace(",", "\u00a0") in caption
    png = base64.b64decode(uri.split(",", 1)[1])
    assert imread(io.BytesIO(png)).shape[0] > 100
