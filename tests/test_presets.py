"""Presets: shipped, documented pipelines, runnable by name, their sizes on the ground.

Each preset writes its sizes in ground units and states the pixel sizes it
serves (``serves:``); outside them it refuses the input in one line. The
row-crop preset counts the same synthetic field at 1, 2 and 4 cm.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_cli import assert_one_line_error
from test_cli import tiler as tiler_cli

import tiler
from tiler import presets, resolution
from tiler.accuracy import match_points
from tiler.cli import cli
from tiler.config import parse_pipeline
from tiler.errors import ConfigError
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.units import PixelSize

EXPECTED = {
    "canopy-cover",
    "row-crop-plants",
    "row-crop-plants-cnn",
    "tree-crowns",
    "tree-crowns-classical",
}
CNN = {"row-crop-plants-cnn": "row-crop-plants", "tree-crowns": "trees-naip"}  # their models


def test_the_documented_presets_exist():
    assert set(presets.names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_parses_round_trips_and_says_what_it_is_for(name):
    pipeline = presets.load(name)
    assert parse_pipeline(pipeline.to_dict()) == pipeline
    assert parse_pipeline(yaml.safe_load(presets.text(name))) == pipeline
    assert len(presets.describe(name)) > 20
    assert (pipeline.split is not None) == (name not in {"canopy-cover", *CNN})
    assert (pipeline.model is not None) == (name in CNN)


def test_an_unknown_preset_names_the_ones_there_are():
    with pytest.raises(ConfigError, match="preset 'nope': unknown; available: canopy-cover"):
        presets.load("nope")


def test_cli_lists_prints_and_runs_presets(naip_tiles, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["presets"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == sorted(EXPECTED)

    printed = runner.invoke(cli, ["pipeline", "--preset", "tree-crowns-classical"])
    assert printed.exit_code == 0 and printed.output == presets.text("tree-crowns-classical")

    src = naip_tiles[0]
    dst = tmp_path / "out"
    ran = runner.invoke(cli, ["run", str(src), str(dst), "--preset", "tree-crowns-classical", "-q"])
    assert ran.exit_code == 0, ran.output
    by_name = tiler.run(
        src, tmp_path / "api", config=presets.load("tree-crowns-classical"), scheduler="sync"
    )
    np.testing.assert_array_equal(
        tiler.read_objects(dst)["area_px"], tiler.read_objects(by_name.dst)["area_px"]
    )
    manifest = (dst / "run.json").read_text()
    assert '"split"' in manifest and '"approximate": true' in manifest


def test_preset_and_config_together_are_refused(tmp_path):
    result = CliRunner().invoke(
        cli, ["run", "a.tif", str(tmp_path / "o"), "--preset", "tree-crowns", "-c", "p.yaml"]
    )
    assert result.exit_code != 0
    assert "use --config or --preset, not both" in result.output


# ---------------------------------------------------------------------------
# Sizes on the ground, and the pixel sizes each preset serves
# ---------------------------------------------------------------------------

# The pixel pipelines each preset was tuned as, and the pixel size they were tuned at.
TUNED = {
    "tree-crowns-classical": (0.6, "[erosion: {radius: 2}, dilation: {radius: 1}, fill_holes: {},"
                    "remove_small_objects: {min_area: 10},"
                    "split: {watershed: {min_distance: 5, halo: 40}}]"),
    "canopy-cover": (0.025, "[closing: {radius: 1}, opening: {radius: 1},"
                     "fill_holes: {max_area: 50}, remove_small_objects: {min_area: 20}]"),
}  # fmt: skip


def bare_numbers(value, key: str = ""):
    """The keys of the numbers in ``value`` written without a unit."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from bare_numbers(v, f"{key}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from bare_numbers(v, f"{key}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_is_on_the_ground_and_states_the_pixel_sizes_it_serves(name):
    data = yaml.safe_load(presets.text(name))
    assert list(bare_numbers({k: data.get(k) for k in ("preprocess", "refine", "model")})) == []
    assert len(resolution.ground(presets.load(name))) >= (1 if name in CNN else 4)
    assert presets.load(name).serves is not None and len(presets.load(name).serves.why) > 40
    assert " pixels" in presets.describe(name)


@pytest.mark.parametrize("name", sorted(TUNED))
def test_at_the_pixel_size_it_was_tuned_at_a_preset_is_the_pixel_pipeline_it_was(name):
    side, refine = TUNED[name]
    data = yaml.safe_load(presets.text(name))
    resolved = resolution.in_pixels(presets.load(name), PixelSize(side, side))
    data["preprocess"][1] = {"gaussian": {"sigma": 1.0}}
    data["refine"] = yaml.safe_load(refine)
    assert resolved == parse_pipeline(data)


def test_a_preset_refuses_pixels_coarser_than_it_serves_in_one_line(naip_tiles, tmp_path):
    """The row-crop preset on 0.6 m NAIP: refused before any work, with the preset's reason."""
    dst = tmp_path / "out"
    proc = tiler_cli("run", naip_tiles[0], dst, "--preset", "row-crop-plants", cwd=tmp_path)
    line = assert_one_line_error(proc, naip_tiles[0].name, "pixel size 60 cm", "5 mm to 8 cm")
    assert "plants 20-55 cm across need pixels of 8 cm or finer" in line
    assert not dst.exists()


def test_a_range_finer_or_coarser_both_refuse_and_the_edges_are_served():
    pipeline = presets.load("tree-crowns-classical")
    for side in (0.05, 0.6000000000000106, 1.0):  # a file's 0.6 m is a few ulps off
        resolution.in_pixels(pipeline, PixelSize(side, side), "a.tif")
    for side, shown in ((0.0499, "4.99 cm"), (1.01, "101 cm")):
        with pytest.raises(ConfigError, match=f"^b.tif: pixel size {shown} is outside the 5 cm"):
            resolution.in_pixels(pipeline, PixelSize(side, side), "b.tif")
    with pytest.raises(ConfigError, match="^c.tif: .* serves pixel sizes 5 cm to 1 m, but the"):
        resolution.in_pixels(parse_pipeline({"serves": pipeline.serves.to_dict()}), None, "c.tif")


@pytest.mark.parametrize(
    ("serves", "message"),
    [
        ({"max": "8 cm"}, "serves.why: say why"),
        ({"max": "8 cm", "why": " "}, "serves.why: say why"),
        ({"max": 3, "why": "w"}, "serves.max: 3 must be a length on the ground"),
        ({"max": "3 px", "why": "w"}, "serves.max: '3 px' must be a length on the ground"),
        ({"min": "2 m2", "why": "w"}, "serves.min: '2 m2' is not a length"),
        ({"min": "-2 m", "why": "w"}, "serves.min: expected a number > 0"),
        ({"min": "2 m", "max": "1 m", "why": "w"}, "serves: expected min <= max"),
        ({"why": "w"}, "serves: expected min <= max, or one of them"),
        ({"max": "1 m", "why": "w", "because": "x"}, "serves: expected a mapping of min, max"),
        ("1 m", "serves: expected a mapping of min, max, why"),
    ],
)
def test_a_bad_serves_is_refused_naming_the_key(serves, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        parse_pipeline({"serves": serves})


def test_serves_round_trips_and_a_pipeline_without_it_serves_every_pixel_size():
    data = {"serves": {"min": "1 cm", "max": "0.5 m", "why": "because"}}
    pipeline = parse_pipeline(data)
    assert pipeline.to_dict()["serves"] == data["serves"]
    assert parse_pipeline(pipeline.to_dict()) == pipeline
    assert "serves" not in parse_pipeline({}).to_dict()
    for side in (1e-4, 100.0):
        resolution.in_pixels(parse_pipeline({}), PixelSize(side, side), "any.tif")


# ---------------------------------------------------------------------------
# One preset, one field, three pixel sizes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_size", [0.01, 0.02, 0.04])
def test_row_crop_plants_counts_the_same_field_at_1_2_and_4_cm(pixel_size, tmp_path):
    """16 m x 16 m of the synthetic field, 336 plants planted. Measured: +3.6 %, +4.2 %,
    +3.3 % (weeds over 200 cm2), F1 0.98; the pixel preset of old, tuned at 2.5 cm,
    counted +23.5 % at 1 cm and +11.0 % at 2 cm."""
    field = SyntheticField.at(pixel_size, (16.0, 16.0), seed=0)
    tif = write_geotiff(field, tmp_path / "field.tif")
    result = tiler.run(tif, tmp_path / "out", preset="row-crop-plants", scheduler="threads")
    objects = tiler.read_objects(result.dst)
    truth = field.plant_xy()
    assert len(truth) > 300
    assert abs(len(objects) / len(truth) - 1) < 0.05, (len(objects), len(truth))
    found = np.column_stack([objects["x"], objects["y"]])
    score = match_points(found, truth, 0.5 * field.plant_spacing * field.unit_m).score()
    assert score.f1 > 0.95 and score.recall > 0.97, score
