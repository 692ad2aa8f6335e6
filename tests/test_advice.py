"""Error advice that works (issue 19, defect 7): the options an error names run the input.

A PNG or JPEG input is named as such, with the ``--driver`` (and
``--pixel-only`` or ``--assume-crs``) that open it; the advised command is
then run as the message gives it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import rasterio
from test_cli import TRANSFORM, assert_not_complete, assert_one_line_error, field_image, tiler

RUN = ("--scheduler", "sync", "--chunk-size", 64, "-q")


def _pil(fmt: str, suffix: str):
    def make(tmp_path: Path) -> Path:
        from PIL import Image

        path = tmp_path / f"photo.{suffix}"
        Image.fromarray(np.moveaxis(field_image(), 0, -1)).save(path, format=fmt)
        return path

    return make


def _georeferenced_png(crs):
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "ortho.png"
        profile = dict(driver="PNG", count=3, height=60, width=70, dtype="uint8")
        with rasterio.open(path, "w", crs=crs, transform=TRANSFORM, **profile) as ds:
            ds.write(field_image())
        return path

    return make


CASES = {
    "png": (_pil("PNG", "png"), "PNG", ["--driver PNG", "--pixel-only"]),
    "jpeg": (_pil("JPEG", "jpg"), "JPEG", ["--driver JPEG", "--pixel-only"]),
    "jpeg-named-tif": (_pil("JPEG", "tif"), "JPEG", ["--driver JPEG", "--pixel-only"]),
    "georeferenced-png": (_georeferenced_png("EPSG:32611"), "PNG", ["--driver PNG"]),
    "png-without-crs": (_georeferenced_png(None), "PNG", ["--driver PNG", "--assume-crs"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_image_format_is_named_and_the_advised_options_run_it(case, tmp_path):
    make, name, options = CASES[case]
    src = make(tmp_path)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, *RUN, cwd=tmp_path)
    line = assert_one_line_error(proc, src.name, f"a {name} image, not a GeoTIFF", *options)
    if "--pixel-only" not in options:
        assert "--pixel-only" not in line  # georeferenced: nothing is given up
    assert_not_complete(dst)
    advised = shlex.split(re.search(r"pass (--driver .*?)(?:;|$)", line).group(1))
    advised = [{"EPSG:XXXX": "EPSG:32611"}.get(word, word) for word in advised]
    proc = tiler("run", src, dst, *advised, *RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["complete"] is True and manifest["object_count"] > 0
    assert manifest["input"]["options"]["driver"] == name
    expected = "none" if "--pixel-only" in options else "file"
    assert manifest["input"]["options"]["georeferencing"] in (expected, "assumed")


# ---------------------------------------------------------------------------
# tiler report --src: a moved input
# ---------------------------------------------------------------------------


@pytest.fixture
def moved_run(tmp_path):
    """A finished run whose input then moved: (dst, the input's new path)."""
    from conftest import write_geotiff

    src = write_geotiff(tmp_path / "field.tif", field_image(120, 140), transform=TRANSFORM)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, *RUN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    moved = tmp_path / "archive" / "field-2024.tif"
    moved.parent.mkdir()
    src.rename(moved)
    return dst, moved


def test_report_of_a_moved_input_says_how_and_takes_src(moved_run, tmp_path):
    dst, moved = moved_run
    proc = tiler("report", dst, cwd=tmp_path)
    assert_one_line_error(proc, "field.tif", "the run's input is gone", "--src")
    assert not (dst / "report" / "fields.csv").exists()
    proc = tiler("report", dst, "--src", moved, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fields = (dst / "report" / "fields.csv").read_text()
    assert fields.count("\n") == 2  # header and the footprint
    assert (dst / "report" / "report.html").is_file()


@pytest.mark.parametrize("change", ["size", "content"])
def test_report_src_must_be_the_runs_input(change, moved_run, tmp_path):
    dst, moved = moved_run
    other = tmp_path / "other.tif"
    data = bytearray(moved.read_bytes())
    if change == "size":
        data += b"\x00"
        expected = [f"{len(data)} bytes", f"had {len(data) - 1}"]
    else:
        data[len(data) // 2] ^= 0xFF
        expected = ["same size", "fingerprint"]
    other.write_bytes(bytes(data))
    proc = tiler("report", dst, "--src", other, cwd=tmp_path)
    assert_one_line_error(proc, "other.tif", "not the run's input", "field.tif", *expected)
    assert not (dst / "report" / "fields.csv").exists()
    proc = tiler("report", dst, "--src", tmp_path / "nowhere.tif", cwd=tmp_path)
    assert_one_line_error(proc, "nowhere.tif", "no such file")
