"""Post-run diagnostics (tiler.diagnostics): runs that end badly warn, with the likely cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import tiler
from tiler import presets
from tiler.cli import cli
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.units import PixelSize

GREEN, SOIL = (60, 160, 50), (120, 100, 80)


def blobs(size: int = 80) -> np.ndarray:
    """Soil with four green 10 x 10 squares: four objects of 100 px under the default."""
    image = np.empty((3, size, size), dtype=np.uint8)
    image[:] = np.array(SOIL, dtype=np.uint8)[:, None, None]
    for r, c in ((10, 10), (10, 50), (50, 10), (50, 50)):
        image[:, r : r + 10, c : c + 10] = np.array(GREEN, dtype=np.uint8)[:, None, None]
    return image


def run_warnings(src, dst, config) -> tuple[tiler.RunResult, list[str]]:
    warned: list[str] = []
    result = tiler.run(src, dst, config, scheduler="sync", chunk_size=32, warn=warned.append)
    recorded = json.loads((dst / "run.json").read_text())["warnings"]
    assert recorded == warned  # what the user saw is kept in run.json
    return result, warned


def pipeline(**changes) -> dict:
    base = yaml.safe_load(tiler.config.DEFAULT_PIPELINE_YAML)
    base.update(changes)
    return base


def test_objects_as_expected_give_no_warning(geotiff, tmp_path):
    result, warned = run_warnings(geotiff(blobs()), tmp_path / "out", None)
    assert result.n_objects == 4 and warned == []


def test_zero_objects_from_a_threshold_at_the_top_of_the_value_range(geotiff, tmp_path):
    config = pipeline(threshold={"percentile": 100})
    result, warned = run_warnings(geotiff(blobs()), tmp_path / "out", config)
    assert result.n_objects == 0
    assert len(warned) == 1
    assert warned[0].startswith("0 objects found: the threshold ")
    assert "is at or above the index's largest value" in warned[0]


def test_zero_objects_from_a_constant_index(geotiff, tmp_path):
    image = np.full((3, 40, 40), 90, dtype=np.uint8)
    result, warned = run_warnings(geotiff(image), tmp_path / "out", None)
    assert result.n_objects == 0
    assert warned == [
        "0 objects found: the index is constant (0) over the valid pixels, so no threshold "
        "separates anything; check the bands and the index"
    ]


def test_zero_objects_because_min_area_removed_them_all(geotiff, tmp_path):
    src = geotiff(blobs())
    kept, _ = run_warnings(src, tmp_path / "kept", pipeline(refine=[]))
    largest = int(tiler.read_objects(kept.dst)["area_px"].max())  # squares grown by the blur
    refine = [{"remove_small_objects": {"min_area": 500}}]
    result, warned = run_warnings(src, tmp_path / "out", pipeline(refine=refine))
    assert result.n_objects == 0
    assert len(warned) == 1
    assert (
        "all 4 objects of the mask are smaller than remove_small_objects' min_area 500 px"
        in (warned[0])
    )
    assert f"(the largest: {largest} px)" in warned[0]


def test_zero_objects_from_an_empty_mask(geotiff, tmp_path):
    config = pipeline(threshold=5.0)  # ExG is at most 2
    result, warned = run_warnings(geotiff(blobs()), tmp_path / "out", config)
    assert result.n_objects == 0
    assert warned == [
        "0 objects found: the mask is empty (threshold 5, polarity above, then the refine "
        "steps); check the index, the threshold and the polarity (`tiler pipeline`)"
    ]


@pytest.fixture(scope="module")
def field_tif(tmp_path_factory):
    return write_geotiff(
        SyntheticField(height=500, width=500), tmp_path_factory.mktemp("f") / "f.tif"
    )


def test_merged_looking_objects_point_to_the_splitting_presets(field_tif, tmp_path):
    """The default pipeline merges touching plants; row-crop-plants splits them and is quiet."""
    cli_run = CliRunner().invoke(
        cli, ["run", str(field_tif), str(tmp_path / "default"), "--scheduler", "sync", "-q"]
    )
    assert cli_run.exit_code == 0, cli_run.output
    assert "pipeline:   default (`tiler pipeline`)" in cli_run.output
    hints = [line for line in cli_run.output.splitlines() if line.startswith("tiler: warning:")]
    assert len(hints) == 1
    assert "are over twice the median area" in hints[0]
    # tree-crowns-classical serves 5 cm to 1 m pixels, not this field's 2.5 cm: not suggested here
    assert "preset row-crop-plants (`tiler presets`) splits" in hints[0]

    _, warned = run_warnings(field_tif, tmp_path / "split", presets.load("row-crop-plants"))
    assert warned == []


def test_only_presets_that_serve_the_pixel_size_are_suggested():
    assert presets.splitting() == ["row-crop-plants", "tree-crowns-classical"]
    assert presets.splitting(PixelSize(0.025, 0.025)) == ["row-crop-plants"]
    assert presets.splitting(PixelSize(0.6000000000000106, 0.6)) == ["tree-crowns-classical"]
    assert presets.splitting(PixelSize(3.0, 3.0)) == []  # then: "a watershed `split` step"


def test_the_summary_names_the_preset_or_config_that_ran(field_tif, tmp_path):
    runner = CliRunner()
    by_preset = runner.invoke(
        cli,
        ["run", str(field_tif), str(tmp_path / "p"), "--preset", "canopy-cover", "-q"]
        + ["--scheduler", "sync"],
    )
    assert by_preset.exit_code == 0, by_preset.output
    assert "pipeline:   preset canopy-cover\n" in by_preset.output
    config = tmp_path / "mine.yaml"
    config.write_text(presets.text("row-crop-plants"))
    by_file = runner.invoke(
        cli,
        [
            "run",
            str(field_tif),
            str(tmp_path / "c"),
            "-c",
            str(config),
            "-q",
            "--scheduler",
            "sync",
        ],
    )
    assert by_file.exit_code == 0, by_file.output
    assert f"pipeline:   config {config}\n" in by_file.output
