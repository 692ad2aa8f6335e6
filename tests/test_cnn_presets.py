"""The shipped CNN models and their presets: cards and metadata, exact tiled runs of the real
tree model on a real NAIP tile, refusals, and counts checked against truth another way."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import assert_one_line_error
from test_cli import tiler as tiler_cli

import tiler
from tiler import presets
from tiler.accuracy import match_points
from tiler.cnn.metadata import read_info, resolve, shipped_models
from tiler.evaluate import evaluate
from tiler.reference import run_reference
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.units import PixelSize

NAIP = Path(__file__).parent / "data" / "urban_trees_naip"
TILE = NAIP / "claremont_2020_36.tif"
MODELS = {"trees-naip": "tree-crowns", "row-crop-plants": "row-crop-plants-cnn"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_shipped_model_has_its_card_its_command_and_a_preset(name):
    assert name in shipped_models()
    path = Path(resolve(name))
    card = path.with_suffix(".md").read_text()
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["tiler:card"] == card and meta["tiler:name"] == name
    assert f"`tiler train tiler/data/models/{name}.onnx " in card  # the command that rebuilds it
    assert "/work/" not in card and "/tmp/" not in card  # paths from the checkout's root
    assert presets.load(MODELS[name]).model.info.name == name
    assert path.stat().st_size < 2**20  # small enough to ship in the package


@settings(max_examples=4, deadline=None)
@given(st.sampled_from([(256, 256), (96, 160), (64, 72), (200, 56)]))
def test_tree_crowns_tiled_equals_the_whole_image_on_a_real_tile(chunks):
    """The shipped model on a real NAIP tile through tiler.run: the labels and peaks of the
    whole-image reference at every tiling, each tree one pixel at its peak."""
    import rasterio

    pipeline = presets.load("tree-crowns")
    with rasterio.open(TILE) as ds:
        image = ds.read()
        side = abs(ds.transform.a)
    reference = run_reference(image, np.ones(image.shape[1:], bool), pipeline.resolve_bands(4),
                              PixelSize(side, side))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        result = tiler.run(TILE, Path(tmp) / "o", pipeline, chunk_size=chunks, scheduler="sync")
        labels = np.asarray(tiler.open_labels(result.dst))
        objects = tiler.read_objects(result.dst)
    np.testing.assert_array_equal(labels, reference.labels)
    assert result.n_objects == reference.labels.max() >= 5
    assert (np.bincount(labels.ravel())[1:] == 1).all()  # each object its peak pixel
    assert (objects["confidence"] >= pipeline.model.threshold).all()


def test_tree_crowns_refuses_rgb_only_and_the_wrong_pixel_size(tmp_path):
    from conftest import write_geotiff as write_tif

    rgb = write_tif(tmp_path / "rgb.tif", np.zeros((3, 64, 64), np.uint8))
    proc = tiler_cli("run", rgb, tmp_path / "o1", "--preset", "tree-crowns", cwd=tmp_path)
    assert_one_line_error(proc, "rgb.tif", "takes 4 bands (red, green, blue, nir)")
    fine = Affine(0.025, 0.0, 500000.0, 0.0, -0.025, 4100000.0)
    four = np.zeros((4, 64, 64), np.uint8)
    drone = write_tif(tmp_path / "drone.tif", four, transform=fine, photometric="MINISBLACK")
    proc = tiler_cli("run", drone, tmp_path / "o2", "--preset", "tree-crowns", cwd=tmp_path)
    assert_one_line_error(proc, "drone.tif", "pixel size 2.5 cm is outside the 40 cm to 90 cm")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_evaluate_scores_the_peaks_as_matched_by_hand(tmp_path):
    """A grown run: evaluate matches the peaks (peak_x/y), not the grown objects' centroids."""
    (tmp_path / "grown.yaml").write_text("model:\n  onnx: trees-naip\n  grow: 3 m\n")
    truth = NAIP / "json" / f"{TILE.stem}.json"
    result = evaluate(tmp_path / "grown.yaml", [TILE], [truth], within_m=6.0, keep=tmp_path / "k")
    objects = tiler.read_objects(tmp_path / "k" / TILE.stem)
    import geopandas as gpd

    points = gpd.read_file(truth)
    truth_xy = np.column_stack([points.geometry.x, points.geometry.y])
    peaks = objects[["peak_x", "peak_y"]].to_numpy()
    by_hand = match_points(peaks, truth_xy, 6.0).score()
    assert (objects["area_px"] > 1).any()  # grown: centroids are not the peaks
    got = result.images[0].score
    assert (got.tp, got.fp, got.fn) == (by_hand.tp, by_hand.fp, by_hand.fn)
    assert got.tp > 5


def test_row_crop_cnn_counts_a_field_it_never_saw(tmp_path):
    """Seed 777 is not among the training or validation fields (1-10): F1 >= 0.97."""
    field = SyntheticField.at(0.025, (15.0, 15.0), seed=777)
    tif = write_geotiff(field, tmp_path / "field.tif")
    tiler.run(tif, tmp_path / "out", presets.load("row-crop-plants-cnn"), scheduler="sync")
    objects = tiler.read_objects(tmp_path / "out")
    found = objects[["peak_x", "peak_y"]].to_numpy()
    score = match_points(found, field.plant_xy(), 0.3125).score()
    assert score.n_truth > 200 and score.f1 >= 0.97, score
    assert isinstance(objects, pd.DataFrame)
    assert read_info(resolve("row-crop-plants")).pixel_size_m == pytest.approx(0.025)
