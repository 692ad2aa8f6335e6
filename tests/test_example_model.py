"""The shipped example learned segmenter: exact per tile, and reproducible from its script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import run_tiled

from tiler.config import load_pipeline
from tiler.examples import pixel_classifier, train
from tiler.io.raster import ArraySource
from tiler.reference import run_reference

PIPELINE = Path(__file__).parents[1] / "benchmarks" / "pipelines" / "naip-trees-learned.yaml"


@pytest.mark.parametrize("chunks", [(37, 53), (64, 64), (256, 256)])
def test_the_example_model_is_exact_at_any_tiling(naip_tiles, chunks):
    with rasterio.open(naip_tiles[1]) as ds:
        image = ds.read()
    valid = np.ones(image.shape[1:], dtype=bool)
    pipeline = load_pipeline(PIPELINE).resolve_bands(4)
    ref = run_reference(image, valid, pipeline)
    labels, _, _ = run_tiled(ArraySource(image, valid), pipeline, chunks, "threads")
    assert ref.labels.max() > 0
    np.testing.assert_array_equal(labels, ref.labels)


def test_a_window_scores_like_the_whole_tile(naip_tiles):
    with rasterio.open(naip_tiles[0]) as ds:
        image = ds.read()
    whole = pixel_classifier.probability(image)
    np.testing.assert_array_equal(
        pixel_classifier.probability(image[:, 17:90, 5:]), whole[17:90, 5:]
    )
    assert 0 < pixel_classifier.trees(image).mean() < 1


def test_the_shipped_coefficients_come_from_the_training_script():
    shipped = pixel_classifier.load()
    again = train.train()
    assert again["trained_on"] == shipped["trained_on"]
    for key in ("mean", "scale", "coef"):
        np.testing.assert_allclose(again[key], shipped[key], rtol=1e-6, err_msg=key)
    assert again["intercept"] == pytest.approx(shipped["intercept"], rel=1e-6)
