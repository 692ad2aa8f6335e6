"""`tiler demo` scores what it shows against ground truth; the NEON result is called wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import tiler
from tiler import demo, presets
from tiler.accuracy import match_boxes
from tiler.cli import cli
from tiler.errors import ConfigError

TRUTH = (
    Path(__file__).parent
    / "data"
    / "neon_sjer_477"
    / ("2018_SJER_3_252000_4107000_image_477_truth.csv")
)


def test_box_matching_is_one_to_one_inclusive_and_maximal():
    boxes = [(0, 0, 10, 10), (5, 0, 30, 10)]  # (xmin, ymin, xmax, ymax); they overlap
    # (row, col): the first lies in both boxes, the second only in the first; greedy
    # in order would give the first box to the first point and match one pair only.
    score = match_boxes([(5.0, 7.0), (10.0, 0.0)], boxes)
    assert (score.tp, score.fp, score.fn) == (2, 0, 0)
    two_in_one = match_boxes([(1.0, 1.0), (2.0, 2.0), (50.0, 50.0)], boxes[:1])
    assert (two_in_one.tp, two_in_one.fp, two_in_one.fn) == (1, 2, 0)
    assert match_boxes(np.empty((0, 2)), boxes).fn == 2


def test_the_shipped_truth_is_the_test_data_truth():
    assert demo.NEON_TRUTH.read_text() == TRUTH.read_text()
    assert demo.neon_truth_boxes().shape == (7, 4)


@pytest.mark.parametrize("name", [None, "canopy-cover", "tree-crowns-classical"])
def test_the_neon_check_calls_each_shipped_pipeline_by_its_score(neon_tile, tmp_path, name):
    """Measured: default 24 objects / 5 in a box; canopy-cover 57 / 5; tree-crowns-classical 6 / 1
    (row-crop-plants does not serve 10 cm pixels: below). The verdict follows the score:
    WRONG exactly when it misses the bar."""
    config = None if name is None else presets.load(name)
    result = tiler.run(neon_tile, tmp_path / "out", config, scheduler="sync", warn=print)
    objects = tiler.read_objects(result.dst)
    score = demo.neon_score(objects)
    assert score.n_truth == 7 and score.n_pred == result.n_objects
    lines = demo.neon_check(objects, result.shape)
    assert lines[0].startswith(f"truth:      7 crowns in the truth: {result.n_objects} objects")
    wrong = score.recall < demo.RIGHT_RECALL or score.precision < demo.RIGHT_PRECISION
    assert lines[-1].startswith("verdict:    WRONG" if wrong else "verdict:    right")
    cover = objects["area_px"].sum() / 160_000
    assert (
        f"cover:      {cover:.1%} of the tile is foreground; the truth boxes cover 31.6%"
        in (lines[1])
    )


def test_the_presets_that_do_not_serve_the_neon_pixels_refuse_it(neon_tile, tmp_path):
    served = {"canopy-cover", "tree-crowns-classical"}  # the ones the test above runs
    for name in sorted(set(presets.names()) - served):
        # tree-crowns (R, G, B, NIR at 0.6 m) refuses the 3-band tile for its bands first
        refusal = r"pixel size 10 cm is outside the .* serves: |takes 4 bands"
        with pytest.raises(ConfigError, match=refusal):
            tiler.run(neon_tile, tmp_path / name, presets.load(name), scheduler="sync")
        assert not (tmp_path / name).exists()


def test_demo_prints_each_result_with_its_score(tmp_path):
    out = tmp_path / "demo"
    ran = CliRunner().invoke(
        cli, ["demo", "--size", "400", "--out", str(out), "--scheduler", "sync", "-q"]
    )
    assert ran.exit_code == 0, ran.output
    field, neon = ran.output.split("== real NEON tile")
    assert "pipeline:   preset row-crop-plants\n" in field
    assert "truth:      " in field and " plants planted: " in field
    assert "recall 1.000" in field
    stand = neon.split("== plant count report and stand along the rows")[1]
    assert "A1  too few plants" in stand and "rows:       " in stand  # 3 m plots: 3 rows
    assert "pipeline:   default (`tiler pipeline`)\n" in neon
    assert "truth:      7 crowns in the truth: 24 objects, 5 matched one to one" in neon
    assert "verdict:    WRONG" in neon
