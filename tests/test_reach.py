"""Parameters that cannot work are refused before work starts; progress shows at once.

Issue 19, defect 5: ``closing: {radius: 5000}`` or ``gaussian: {sigma: 100000}``
on a 2000 x 2000 image ran silently for minutes. A chain of local steps
reaching past the image's larger side is refused in one line, in pixels and
metres, before DST is touched (:mod:`tiler.reach`); halos that multiply the
work are warned about with the ``--chunk-size`` that helps; every pass says
it started, and says it is still running while a tile takes long.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from conftest import write_geotiff
from test_cli import TRANSFORM, assert_one_line_error, field_image, tiler

import tiler as tiler_api
from tiler.config import parse_pipeline
from tiler.errors import OutputError
from tiler.io.raster import ArraySource
from tiler.progress import Progress
from tiler.reach import chains, overhead

RUN = ("--scheduler", "sync", "-q")


@pytest.fixture
def field_200(tmp_path):
    """200 x 200 px at 0.05 m: 10 x 10 m."""
    return write_geotiff(tmp_path / "field.tif", field_image(200, 200), transform=TRANSFORM)


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        ("refine:\n  - closing: {radius: 150}\n", "refine[0].closing (radius 150) reaches 300 px"),
        (
            "preprocess:\n  - index: exg\n  - gaussian: {sigma: 60}\n",
            "preprocess[1].gaussian (sigma 60.0) reaches 240 px",
        ),
        (
            "preprocess:\n  - index: exg\n  - median: {radius: 90}\n"
            "refine:\n  - dilation: {radius: 20}\n",
            "preprocess[1].median (radius 90) + refine[0].dilation (radius 20) reach together "
            "110 px",
        ),
    ],
    ids=["closing", "gaussian", "chain"],
)
@pytest.mark.parametrize("georeferenced", [True, False], ids=["metres", "pixel-only"])
def test_reach_past_the_image_is_refused_before_work(
    steps, named, georeferenced, field_200, tmp_path
):
    if "together" in named:  # 90 + 20 = 110 reaches past a 100-px side
        src = write_geotiff(tmp_path / "small.tif", field_image(100, 80), transform=TRANSFORM)
    else:
        src = field_200
    config = tmp_path / "pipeline.yaml"
    config.write_text(steps)
    dst = tmp_path / "out"
    extra = () if georeferenced else ("--pixel-only",)
    started = time.perf_counter()
    proc = tiler("run", src, dst, "-c", config, *extra, *RUN, cwd=tmp_path)
    assert time.perf_counter() - started < 60
    line = assert_one_line_error(proc, src.name, named, "more than the image's larger side")
    side = "200 x 200 px" if src == field_200 else "100 x 80 px"
    if georeferenced:
        px = int(re.search(r"reach(?:es| together) (\d+) px", line).group(1))
        assert f"{px} px ({px * 0.05:.3g} m)" in line
        assert side + (", 10 x 10 m)" if src == field_200 else ", 5 x 4 m)") in line
    else:
        assert " m)" not in line and side + ")" in line
    assert not dst.exists()


def test_chains_follow_the_passes():
    pipeline = parse_pipeline(
        {
            "preprocess": [{"index": "exg"}, {"gaussian": {"sigma": 2.0}}],
            "threshold": {"local": {"block_size": 21, "method": "mean"}},
            "refine": [
                {"closing": {"radius": 3}},
                {"fill_holes": {}},
                {"opening": {"radius": 2}},
                {"split": {"watershed": {"halo": 30}}},
            ],
        }
    )
    found = chains(pipeline)
    assert [(c.reach, c.exact) for c in found] == [(8 + 10 + 6, True), (4, True), (30, False)]
    assert [key for key, _, _ in found[0].steps] == [
        "preprocess[1].gaussian",
        "threshold.local",
        "refine[0].closing",
    ]


def test_overhead_counts_the_halo_each_tile_computes():
    assert overhead((1000, 1000), (1000, 1000), 300) == 1.0  # one tile: no halo to read
    assert overhead((100, 100), (50, 50), 10) == pytest.approx((120 / 100) ** 2)


def test_costly_halo_is_warned_with_the_chunk_size_that_helps(tmp_path):
    """Over 4 MP, a halo making the tiles compute > 4x the image warns before DST is touched."""
    image = np.zeros((3, 2100, 2100), np.uint8)
    source = ArraySource(image, np.ones(image.shape[1:], bool), name="big.tif")
    config = {"refine": [{"opening": {"radius": 100}}]}  # reaches 200 px (200 m at 1 m)
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")  # a refused DST: nothing runs past the checks

    def warnings_for(chunk: int, src=source) -> list[str]:
        said: list[str] = []
        with pytest.raises(OutputError, match="tiler did not write"):
            tiler_api.run(src, dst, config, chunk_size=chunk, scheduler="sync", warn=said.append)
        return said

    (message,) = warnings_for(256)
    assert message.startswith("big.tif: refine[0].opening (radius 100) reaches 200 px (200 m)")
    factor = float(re.search(r"compute ([\d.]+)x the image's pixels", message).group(1))
    assert factor > 4
    assert factor == pytest.approx(overhead((2100, 2100), (256, 256), 200), abs=0.05)
    better = int(re.search(r"--chunk-size (\d+) or more", message).group(1))
    assert overhead((2100, 2100), (better, better), 200) <= 2
    assert warnings_for(better) == []  # the advice works
    small = ArraySource(image[:, :2000, :2000], np.ones((2000, 2000), bool), name="small.tif")
    assert warnings_for(256, small) == []  # 4 MP or less: seconds whatever the halo


def test_a_log_shows_a_pass_running_from_the_first_second():
    """A pass whose first tile takes long says so after a second (default interval, 30 s)."""
    log = io.StringIO()
    with Progress(file=log).bar("labels", total=1, done=0, megapixels=4.0) as bar:
        time.sleep(1.4)  # one long tile
        assert log.getvalue() == "  labels: 0/1 tiles, running for 0:00:01\n"
        bar.update()
    quick = io.StringIO()
    with Progress(file=quick).bar("labels", total=3, done=0, megapixels=4.0) as bar:
        for _ in range(3):
            bar.update()
    assert quick.getvalue() == ""  # a pass of under a second prints nothing


def test_a_log_line_comes_every_interval_while_a_tile_runs():
    log = io.StringIO()
    with Progress(file=log, interval=0.05).bar("labels", total=1, done=0, megapixels=4.0) as bar:
        time.sleep(0.3)
        bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3, lines
    for line in lines:
        assert re.fullmatch(r"  labels: 0/1 tiles, running for \d:\d\d:\d\d", line), line


def test_a_terminal_bar_shows_at_once_and_its_time_moves_during_a_long_tile():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with Progress(file=screen).bar("labels", total=1, done=0, megapixels=4.0) as bar:
        assert "0/1 tiles" in screen.getvalue()
        time.sleep(1.4)
        assert "00:01<" in screen.getvalue()  # redrawn while the tile runs
        bar.update()
