"""The ``model:`` step: a user's segmenter run per tile with its halo."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_tiled

from tiler.config import load_callable, parse_pipeline
from tiler.errors import ConfigError, ModelError
from tiler.io.raster import ArraySource
from tiler.reference import run_reference

TRANSFORM = (0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)


def model_pipeline(function: str, halo: int, refine=()):
    data = {"model": {"callable": f"example_models:{function}", "halo": halo}}
    return parse_pipeline({**data, "refine": list(refine)}).resolve_bands(3)


def blobs(seed: int, shape=(37, 45)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (3, shape[0] // 4 + 1, shape[1] // 4 + 1))
    image = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, : shape[0], : shape[1]]
    image = np.clip(image + rng.integers(-30, 31, image.shape), 0, 255).astype(np.uint8)
    return image, rng.random(shape) > 0.1


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("chunks", [(3, 4), (5, 7), (16, 16), (37, 45)])
@pytest.mark.parametrize(
    ("function", "halo", "refine"),
    [
        ("bright_mean", 1, ()),
        ("bright_mean", 3, [{"opening": {"radius": 1}}, {"remove_small_objects": {"min_area": 4}}]),
        ("green_pixels", 0, [{"fill_holes": {}}]),
    ],
)
def test_a_model_within_its_halo_is_exact(seed, chunks, function, halo, refine):
    image, valid = blobs(seed)
    pipeline = model_pipeline(function, halo, refine)
    ref = run_reference(image, valid, pipeline)
    labels, seg, _ = run_tiled(ArraySource(image, valid, transform=TRANSFORM), pipeline, chunks)
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.threshold is None


def test_a_model_beyond_its_halo_differs_at_the_seams():
    """With no halo, a 3 x 3 model sees clipped windows at every tile edge."""
    image, valid = blobs(7, (40, 40))
    exact = run_reference(image, valid, model_pipeline("bright_mean", 0)).labels
    tiled, _, _ = run_tiled(ArraySource(image, valid), model_pipeline("bright_mean", 0), (5, 5))
    assert (tiled > 0).sum() != (exact > 0).sum()


@pytest.mark.parametrize(
    ("function", "message"),
    [("wrong_shape", "returned shape (1, 1) for a window of"), ("probabilities", "float64")],
)
def test_a_model_that_returns_no_mask_is_one_clear_error(function, message):
    image, valid = blobs(1)
    with pytest.raises(ModelError, match=f"model example_models:{function}: .*") as info:
        run_tiled(ArraySource(image, valid), model_pipeline(function, 0), (16, 16))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("model", "extra", "expected"),
    [
        ({"callable": "example_models:nothing"}, {}, "has no callable 'nothing'"),
        ({"callable": "no_such_package.models:f"}, {}, "cannot import 'no_such_package.models'"),
        ({"callable": "example_models"}, {}, "expected 'package.module:function'"),
        ({"halo": 3}, {}, "model.callable: required"),
        ({"callable": "example_models:bright_mean", "halo": -1}, {}, "model.halo"),
        ({"callable": "example_models:bright_mean", "output": "polygons"}, {}, "model.output"),
        ({"callable": "example_models:bright_mean"}, {"threshold": "otsu"}, "threshold: not"),
        ({"callable": "example_models:bright_mean"}, {"preprocess": []}, "preprocess: not"),
    ],
)
def test_the_model_is_checked_before_any_work(model, extra, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_pipeline({"model": model, **extra})


def test_model_pipelines_round_trip():
    pipeline = model_pipeline("bright_mean", 2, [{"closing": {"radius": 1}}])
    assert parse_pipeline(pipeline.to_dict()) == pipeline
    assert pipeline.to_dict()["model"] == {
        "callable": "example_models:bright_mean",
        "halo": 2,
        "output": "mask",
    }
    assert load_callable("example_models:bright_mean").__name__ == "bright_mean"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("chunks", [(3, 4), (5, 7), (16, 16), (37, 45)])
def test_model_instances_within_the_halo_are_the_whole_images(seed, chunks):
    """Instances owned by centroid: with a halo over the whole image, exactly the reference."""
    image, valid = blobs(seed)
    data = {"model": {"callable": "example_models:bright_blobs", "halo": 64, "output": "labels"}}
    pipeline = parse_pipeline(data).resolve_bands(3)
    ref = run_reference(image, valid, pipeline)
    labels, seg, columns = run_tiled(
        ArraySource(image, valid, transform=TRANSFORM), pipeline, chunks
    )
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.n_objects == ref.labels.max() > 0
    np.testing.assert_array_equal(columns["area_px"], np.bincount(ref.labels.ravel())[1:])


def test_model_labels_must_be_labels():
    image, valid = blobs(2)
    data = {"model": {"callable": "example_models:negative_labels", "output": "labels"}}
    with pytest.raises(ModelError, match="expected labels >= 0"):
        run_tiled(ArraySource(image, valid), parse_pipeline(data).resolve_bands(3), (16, 16))


def test_model_labels_take_no_refine_steps():
    data = {"model": {"callable": "example_models:bright_blobs", "output": "labels"}}
    with pytest.raises(ConfigError, match="refine: not allowed with model output 'labels'"):
        parse_pipeline({**data, "refine": [{"opening": {}}]})
