"""Presets: shipped, documented pipelines, runnable by name."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import tiler
from tiler import presets
from tiler.cli import cli
from tiler.config import parse_pipeline
from tiler.errors import ConfigError

EXPECTED = {"canopy-cover", "row-crop-plants", "tree-crowns"}


def test_the_documented_presets_exist():
    assert set(presets.names()) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_preset_parses_round_trips_and_says_what_it_is_for(name):
    pipeline = presets.load(name)
    assert parse_pipeline(pipeline.to_dict()) == pipeline
    assert parse_pipeline(yaml.safe_load(presets.text(name))) == pipeline
    assert len(presets.describe(name)) > 20
    assert (pipeline.split is not None) == (name != "canopy-cover")


def test_an_unknown_preset_names_the_ones_there_are():
    with pytest.raises(ConfigError, match="preset 'nope': unknown; available: canopy-cover"):
        presets.load("nope")


def test_cli_lists_prints_and_runs_presets(naip_tiles, tmp_path):
    runner = CliRunner()
    listed = runner.invoke(cli, ["presets"])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()] == sorted(EXPECTED)

    printed = runner.invoke(cli, ["pipeline", "--preset", "tree-crowns"])
    assert printed.exit_code == 0 and printed.output == presets.text("tree-crowns")

    src = naip_tiles[0]
    dst = tmp_path / "out"
    ran = runner.invoke(cli, ["run", str(src), str(dst), "--preset", "tree-crowns", "-q"])
    assert ran.exit_code == 0, ran.output
    by_name = tiler.run(src, tmp_path / "api", config=presets.load("tree-crowns"), scheduler="sync")
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
