"""A points model (``model: {output: points}``): peaks become objects, exactly, at any tiling."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from conftest import run_tiled, write_geotiff
from test_model import TRANSFORM, blobs

import tiler
from tiler.config import parse_pipeline
from tiler.errors import ConfigError, ModelError
from tiler.io.raster import ArraySource
from tiler.points import PointSettings, reference_points
from tiler.reference import run_reference


def points_pipeline(**points):
    model = {"callable": "example_models:confidence", "output": "points", **points}
    return parse_pipeline({"model": model}).resolve_bands(3)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("chunks", [(1, 2), (3, 4), (5, 7), (16, 16), (37, 45)])
@pytest.mark.parametrize(
    "points",
    [
        {"threshold": 0.5, "min_distance": 2},
        {"threshold": 0.4, "min_distance": 3, "grow": 2.5, "mask_threshold": 0.3},
        {"threshold": 0.6, "min_distance": 0, "grow": 1},
    ],
)
def test_points_tiled_equal_the_whole_image(seed, chunks, points):
    image, valid = blobs(seed)
    pipeline = points_pipeline(**points)
    ref = run_reference(image, valid, pipeline)
    labels, seg, _ = run_tiled(ArraySource(image, valid, transform=TRANSFORM), pipeline, chunks)
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.n_objects == ref.labels.max() > 0
    _, peaks = reference_points(ref.values, PointSettings(**pipeline.model.points))
    for key, values in peaks.items():
        np.testing.assert_array_equal(seg.extra_columns[key], values, err_msg=key)


def test_tiler_run_writes_peaks_and_confidence(tmp_path):
    image, _ = blobs(3, (40, 48))
    src = write_geotiff(tmp_path / "in.tif", image)
    config = {
        "model": {
            "callable": "example_models:confidence",
            "output": "points",
            "threshold": 0.5,
            "min_distance": "0.1 m",  # 2 px at 5 cm
            "grow": "0.1 m",
        }
    }
    tiler.api.run(src, tmp_path / "out", config, chunk_size=16, scheduler="sync")
    table = pq.read_table(tmp_path / "out" / "objects.parquet").to_pandas()
    labels = zarr.open_group(tmp_path / "out" / "labels.zarr", mode="r")["labels"][:]
    assert len(table) == labels.max() > 0
    assert {"peak_x", "peak_y", "confidence"} <= set(table.columns)
    assert (table["confidence"] >= 0.5).all()
    assert table["peak_x"].notna().all() and table["peak_y"].notna().all()


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ({}, "model.threshold: required with output 'points'"),
        ({"threshold": 1.5}, "model.threshold: expected a confidence in"),
        ({"threshold": 0.5, "min_distance": -1}, "model.min_distance"),
        ({"threshold": 0.5, "grow": -2}, "model.grow"),
        ({"threshold": 0.5, "grow": "-1 m"}, "model.grow"),
    ],
)
def test_bad_point_settings_are_one_line(points, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        points_pipeline(**points)
    assert "\n" not in str(info.value)


def test_point_keys_need_output_points():
    data = {"model": {"callable": "example_models:bright_mean", "grow": 2}}
    with pytest.raises(ConfigError, match="model.grow: only with output 'points'"):
        parse_pipeline(data)


def test_a_confidence_outside_0_1_is_refused():
    image, valid = blobs(1)
    data = {"model": {"callable": "example_models:bad_confidence", "output": "points"}}
    pipeline = parse_pipeline({"model": {**data["model"], "threshold": 0.5}}).resolve_bands(3)
    with pytest.raises(ModelError, match="expected a confidence map"):
        run_tiled(ArraySource(image, valid), pipeline, (16, 16))


@pytest.mark.parametrize("chunks", [(7, 9), (16, 16), (40, 48)])
@pytest.mark.parametrize("grow", [None, "0.12 m"])
def test_an_onnx_points_model_tiles_exactly(tmp_path, chunks, grow):
    """A random-weight U-Net on a smooth image: realistic peaks, counted once at any tiling."""
    from onnx_nets import make_net, metadata
    from scipy import ndimage as ndi

    from tiler.resolution import in_pixels
    from tiler.units import PixelSize

    meta = metadata(3, 1, output="points", threshold="0.3", min_distance_m="0.1")
    net = make_net(tmp_path / "points.onnx", meta=meta, seed=4)
    rng = np.random.default_rng(5)
    image = ndi.gaussian_filter(rng.random((3, 40, 48)), (0, 2, 2))
    image = (255 * (image - image.min()) / np.ptp(image)).astype(np.uint8)
    valid = np.ones((40, 48), bool)
    valid[:3, :5] = False
    model = {"onnx": str(net), "block": 16, **({"grow": grow} if grow else {})}
    pipeline = parse_pipeline({"model": model}).resolve_bands(3)
    size = PixelSize(0.05, 0.05)
    ref = run_reference(image, valid, pipeline, size)
    resolved = in_pixels(pipeline, size)
    labels, seg, _ = run_tiled(ArraySource(image, valid, transform=TRANSFORM), resolved, chunks)
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.n_objects == ref.labels.max() > 1
    _, peaks = reference_points(ref.values, PointSettings(**resolved.model.points))
    np.testing.assert_array_equal(seg.extra_columns["confidence"], peaks["confidence"])


@pytest.mark.parametrize(
    ("output", "extra", "expected"),
    [
        ("points", {"grow": "-1 m"}, "model.grow"),
        ("points", {"mask_threshold": 0}, "model.mask_threshold: expected a number in"),
        ("mask", {"grow": 2}, "model.grow: only for a points model"),
    ],
)
def test_bad_onnx_point_settings_are_one_line(tmp_path, output, extra, expected):
    from onnx_nets import make_net, metadata

    points = {"min_distance_m": "0.1"} if output == "points" else {}
    net = make_net(tmp_path / "m.onnx", meta=metadata(3, 1, output=output, **points))
    with pytest.raises(ConfigError, match=expected) as info:
        parse_pipeline({"model": {"onnx": str(net), **extra}})
    assert "\n" not in str(info.value)
