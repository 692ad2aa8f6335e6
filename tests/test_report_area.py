"""`tiler report`'s per-area figures, against a field drawn here with known plants and nodata,
and a report of a run it may not write to.

The image: 200 x 200 pixels of 5 cm (10 m x 10 m), its left half nodata
(alpha 0), 50 green discs on brown soil in the right half. Densities are
worked out by hand from those pixel counts, not by the report's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import zarr
from affine import Affine
from conftest import write_geotiff
from shapely.geometry import box

import tiler
from tiler.report import build, fields, grid, pyramid

TRANSFORM = Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)  # conftest's default
PIXEL_HA = 0.05 * 0.05 / 1e4
IMAGED_COLS = 100  # columns 100..199 are valid
INSIDE_ROWS = [30, 50, 70, 90, 110, 130, 150, 170]  # disc centres inside the field "half"
OUTSIDE_ROWS = [8, 192]  # ... and above and below it
DISC_COLS = [110, 130, 150, 170, 190]


def plant_image() -> np.ndarray:
    image = np.zeros((4, 200, 200), dtype=np.uint8)
    image[:3, :, IMAGED_COLS:] = np.array([120, 90, 60], dtype=np.uint8)[:, None, None]
    image[3, :, IMAGED_COLS:] = 255
    rows, cols = np.mgrid[:200, :200]
    for r in INSIDE_ROWS + OUTSIDE_ROWS:
        for c in DISC_COLS:
            disc = (rows - r) ** 2 + (cols - c) ** 2 <= 16
            image[:3, disc] = np.array([40, 160, 40], dtype=np.uint8)[:, None]
    return image


def pixels_box(r0: float, c0: float, r1: float, c1: float):
    """A rectangle in map coordinates from pixel-edge rows and columns."""
    (x0, y0), (x1, y1) = TRANSFORM * (c0, r0), TRANSFORM * (c1, r1)
    return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("imaged")
    src = write_geotiff(folder / "plants.tif", plant_image(), alpha=True)
    dst = folder / "out"
    tiler.run(src, dst, chunk_size=128, scheduler="sync")
    assert len(tiler.read_objects(dst)) == len(DISC_COLS) * 10  # every disc, nothing else
    return dst


@pytest.fixture(scope="module")
def plots(run, tmp_path_factory) -> Path:
    frame = gpd.GeoDataFrame(
        {
            "plot_no": [7, 8, 9],
            "variety": ["half outside", "over nodata", "far away"],
        },
        geometry=[
            pixels_box(20, 50, 180, 250),  # 200 x 160 px, columns 200..249 off the image
            pixels_box(20, 10, 180, 90),  # wholly on the nodata half
            pixels_box(-5000, -5000, -4000, -4000),
        ],
        crs="EPSG:32611",
    )
    path = tmp_path_factory.mktemp("plots") / "plots.gpkg"
    frame.to_file(path)
    return path


def test_density_is_per_hectare_of_imaged_ground(run, plots, tmp_path):
    report = build(run, plots, field_id="plot_no", out=tmp_path / "report")
    table = report.table.set_index("plot_no")
    half = table.loc[7]
    # By hand: 8 x 5 discs inside; 160 rows x 100 valid columns of 0.0025 m².
    imaged_ha = 160 * IMAGED_COLS * PIXEL_HA  # 0.004 ha, of a 0.008 ha polygon
    assert half["objects"] == 40
    assert half["area_ha"] == pytest.approx(200 * 160 * PIXEL_HA, rel=1e-9)
    assert half["imaged_area_ha"] == pytest.approx(imaged_ha, rel=1e-9)
    assert half["imaged_pct"] == pytest.approx(50.0)
    assert half["density_per_ha"] == pytest.approx(40 / imaged_ha)  # 10 000, not 5 000
    labels = zarr.open_array(str(run / "labels.zarr" / "labels"), mode="r")[20:180, 100:200]
    assert half["canopy_cover_pct"] == pytest.approx(100 * (labels > 0).sum() / labels.size)
    assert 12 < half["canopy_cover_pct"] < 16  # 40 discs of 49 px: 12.25 %, smoothed wider
    # No image: flagged, no density, left out of the totals.
    for plot in (8, 9):
        assert table.loc[plot, "no_image"] and np.isnan(table.loc[plot, "density_per_ha"])
    assert not half["no_image"]
    total = fields.totals(report.table)
    assert total["fields"] == 1 and total["no_image"] == 2
    assert total["density_per_ha"] == pytest.approx(40 / imaged_ha)
    page = report.html.read_text()
    assert "<b>10\u00a0000</b>" in page  # the headline objects per ha
    assert "left out of the figures above: 8, 9" in page


def test_the_footprint_density_leaves_nodata_out(run, tmp_path):
    table = build(run, out=tmp_path / "whole").table
    imaged_ha = 200 * IMAGED_COLS * PIXEL_HA  # 0.005 ha of a 0.01 ha rectangle
    assert table["objects"][0] == 50
    assert table["area_ha"][0] == pytest.approx(200 * 200 * PIXEL_HA)
    assert table["density_per_ha"][0] == pytest.approx(50 / imaged_ha)


def test_fields_csv_keeps_the_files_columns(run, plots, tmp_path):
    report = build(run, plots, field_id="plot_no", out=tmp_path / "report")
    csv = pd.read_csv(report.csv)
    assert list(csv.columns[:2]) == ["plot_no", "variety"]
    assert csv["plot_no"].tolist() == [7, 8, 9]
    assert csv["variety"].tolist() == ["half outside", "over nodata", "far away"]
    assert csv["density_per_ha"][0] == 10000.0 and csv["area_ha"][0] == 0.008
    assert csv["no_image"].tolist() == [False, True, True]


def test_the_grid_counts_valid_pixels_exactly_across_windows():
    """Per-window block sums, merged, equal the whole mask's sums per cell (k = 7 does not
    divide the 1024-pixel windows)."""
    rng = np.random.default_rng(5)
    shape, k = (2500, 2300), 7
    valid = rng.random(shape) < 0.7
    merged = np.zeros(grid.grid_shape(shape, k), dtype=np.int64)
    for window in pyramid.windows(shape):
        row, col, block = grid.valid_block(window, valid[window.slices], k)
        merged[row : row + block.shape[0], col : col + block.shape[1]] += block
    padded = np.zeros((merged.shape[0] * k, merged.shape[1] * k), dtype=np.int64)
    padded[: shape[0], : shape[1]] = valid
    whole = padded.reshape(merged.shape[0], k, merged.shape[1], k).sum(axis=(1, 3))
    np.testing.assert_array_equal(merged, whole)


def test_grid_density_by_hand():
    """Cells of 10 px at 5 cm: 0.0025 ha... of valid pixels; a cell under half imaged has none."""
    valid = np.array([[100, 100], [60, 40]])
    objects = pd.DataFrame({"centroid_row": [3.0, 9.4, 9.6, 12.0], "centroid_col": [4.0] * 4})
    cells = grid.density(objects, valid, 10, "", tuple(TRANSFORM), 0.05)
    hectare = 100 * PIXEL_HA
    # Row 9.4 is in pixel row 9 (cell 0), 9.6 in pixel row 10 (cell 1).
    np.testing.assert_allclose(cells.density[0], [2 / hectare, 0.0])
    np.testing.assert_allclose(cells.density[1, 0], 2 / (60 * PIXEL_HA))
    assert np.isnan(cells.density[1, 1]) and cells.metres == pytest.approx(0.5)


def test_cells_are_5_m_unless_the_image_is_small():
    assert grid.cell_pixels((40000, 30000), 0.025) == 200  # 1 km: 5 m cells
    assert grid.cell_pixels((200, 200), 0.05) == 10  # 10 m: 0.5 m, 20 cells across


# ---------------------------------------------------------------------------
# A run the report may not write to
# ---------------------------------------------------------------------------

READ_ONLY = textwrap.dedent(
    """
    import errno, os, sys
    RUN = os.path.realpath(sys.argv[1])
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    CHANGES = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "os.chmod",
               "os.utime", "os.symlink", "os.link", "shutil.rmtree", "shutil.move"}

    def under(path):
        if isinstance(path, int) or path is None:
            return False
        real = os.path.realpath(os.fsdecode(path))
        return real == RUN or real.startswith(RUN + os.sep)

    def read_only(event, args):
        # The run's folder behaves as a read-only file system would.
        writing = event == "open" and (
            any(c in (args[1] or "") for c in "wax+") or (args[2] or 0) & WRITE
        )
        if (writing or event in CHANGES) and under(args[0]):
            raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(args[0]))

    sys.addaudithook(read_only)
    from tiler.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.rglob("*"))
    }


def report_read_only(run: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", READ_ONLY, str(run), "report", str(run), *args, "-q"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def test_a_read_only_run_is_reported_without_writing_to_it(run, plots, tmp_path):
    before = snapshot(run)
    proc = report_read_only(run, "--fields", str(plots), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr
    assert snapshot(run) == before
    assert (tmp_path / "rep" / "report.html").is_file()
    assert (tmp_path / "rep" / "pyramid.zarr" / "zarr.json").is_file()
    # The check can fail: a report into the run (its default folder) is one clear line.
    into = report_read_only(run)
    assert into.returncode != 0
    assert into.stderr == (
        f"tiler: error: {run / 'report'}: cannot write the report (Read-only file system)\n"
    )
    assert snapshot(run) == before
