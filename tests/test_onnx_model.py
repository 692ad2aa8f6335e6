"""``model: {onnx}``: a CNN run by fixed blocks, bit-identical at any tiling (tiler.cnn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import zarr
from affine import Affine
from conftest import run_tiled, write_geotiff
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx_nets import make_net, metadata

import tiler
from tiler.cnn.blocks import (
    aligned_chunks,
    block_work,
    confidence,
    symmetric_index,
    wasteful,
)
from tiler.cnn.metadata import read_info
from tiler.cnn.session import session
from tiler.config import parse_pipeline
from tiler.errors import ConfigError, ModelError
from tiler.io.raster import ArraySource
from tiler.reference import run_reference
from tiler.resolution import in_pixels
from tiler.tiling import TileGrid, Window
from tiler.units import PixelSize

TRANSFORM = (0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)
PIXEL = PixelSize(0.05, 0.05)
SLOW = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Random U-Nets: depth 1 with linear upsampling, depth 2 with nearest."""
    root = tmp_path_factory.mktemp("nets")
    return {
        1: make_net(root / "d1.onnx", depth=1, resize="linear", seed=1),
        2: make_net(root / "d2.onnx", depth=2, resize="nearest", seed=2),
    }


def pipeline(path, refine=(), bands=None, **params):
    data = {"model": {"onnx": str(path), **params}, "refine": list(refine)}
    if bands is not None:
        data["bands"] = bands
    return parse_pipeline(data)


def random_image(seed: int, shape, nodata: bool):
    """Smooth-ish uint8 bands (so the net's output has structure) and a validity mask."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (3, shape[0] // 3 + 1, shape[1] // 3 + 1))
    image = np.repeat(np.repeat(coarse, 3, axis=1), 3, axis=2)[:, : shape[0], : shape[1]]
    image = np.clip(image + rng.integers(-40, 41, image.shape), 0, 255).astype(np.uint8)
    valid = rng.random(shape) > 0.15 if nodata else np.ones(shape, bool)
    return image, valid


@st.composite
def cases(draw):
    shape = (draw(st.integers(1, 70)), draw(st.integers(1, 90)))
    chunks = (draw(st.integers(1, shape[0] + 5)), draw(st.integers(1, shape[1] + 5)))
    depth = draw(st.sampled_from([1, 2]))
    period = 2**depth
    block = period * draw(st.integers(1, 6))
    return dict(
        seed=draw(st.integers(0, 2**16)),
        shape=shape,
        chunks=chunks,
        depth=depth,
        block=block,
        batch=draw(st.integers(1, 4)),
        threshold=draw(st.sampled_from([0.45, 0.5, 0.55, 0.6])),
        nodata=draw(st.booleans()),
        refine=draw(st.sampled_from([(), ({"opening": {"radius": 1}},), ({"fill_holes": {}},)])),
    )


@SLOW
@given(case=cases())
def test_tiled_equals_the_whole_image_reference(nets, case):
    image, valid = random_image(case["seed"], case["shape"], case["nodata"])
    p = pipeline(
        nets[case["depth"]],
        case["refine"],
        block=case["block"],
        batch=case["batch"],
        threshold=case["threshold"],
    ).resolve_bands(3)
    ref = run_reference(image, valid, p, PIXEL)
    source = ArraySource(image, valid, transform=TRANSFORM)
    labels, seg, _ = run_tiled(source, p, case["chunks"])
    np.testing.assert_array_equal(labels, ref.labels)
    assert seg.threshold == case["threshold"]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases())
def test_tiler_run_on_random_geotiffs_equals_the_reference(nets, tmp_path_factory, case):
    """Through the API, on real GeoTIFFs (nodata 0 sometimes), as a user runs it."""
    assume(max(case["shape"]) > 4 or not case["refine"])  # a reach beyond the image is refused
    image, valid = random_image(case["seed"], case["shape"], case["nodata"])
    if case["nodata"]:
        image[:, ~valid] = 0
    root = tmp_path_factory.mktemp("run")
    src = write_geotiff(
        root / "in.tif", image, nodata=0 if case["nodata"] else None, transform=Affine(*TRANSFORM)
    )
    config = {"model": {"onnx": str(nets[case["depth"]]), "block": case["block"],
              "batch": case["batch"], "threshold": case["threshold"]},
              "refine": list(case["refine"])}  # fmt: skip
    tiler.run(src, root / "out", config, chunk_size=case["chunks"], scheduler="sync", warn=print)
    with rasterio.open(src) as ds:
        ref = run_reference(ds.read(), ds.dataset_mask() > 0, _resolved(config, 3), PIXEL)
    labels = zarr.open_array(str(root / "out" / "labels.zarr" / "labels"), mode="r")[:]
    np.testing.assert_array_equal(labels, ref.labels)


@SLOW
@given(
    seed=st.integers(0, 2**16),
    shape=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    windows=st.lists(st.tuples(*[st.integers(0, 59)] * 4), min_size=1, max_size=4),
    depth=st.sampled_from([1, 2]),
)
def test_any_window_is_bit_identical_to_the_whole(nets, seed, shape, windows, depth):
    """Confidence of a window = the same pixels of the whole image's, bit for bit."""
    image, valid = random_image(seed, shape, True)
    model = pipeline(nets[depth], block=8).resolve_bands(3).model
    source = ArraySource(image, valid, transform=TRANSFORM)
    whole = confidence(source, (1, 2, 3), model, Window.whole(shape))
    assert whole.dtype == np.float32 and whole.shape == shape
    for r0, r1, c0, c1 in windows:
        r0, r1 = sorted((r0 % shape[0], r1 % shape[0]))
        c0, c1 = sorted((c0 % shape[1], c1 % shape[1]))
        window = Window(r0, r1 + 1, c0, c1 + 1)
        part = confidence(source, (1, 2, 3), model, window)
        np.testing.assert_array_equal(part, whole[window.slices])


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("shape", [(64, 80), (37, 53)])
def test_blocks_equal_one_forward_pass_of_the_padded_image(nets, depth, shape):
    """Up to float rounding, the blocks are the network run once on the reflect-padded image."""
    image, valid = random_image(depth, shape, False)
    model = pipeline(nets[depth], block=16).resolve_bands(3).model
    conf = confidence(ArraySource(image, valid), (1, 2, 3), model, Window.whole(shape))
    h, period = model.info.halo, model.info.shift_period_px
    extra = [(-(s + 2 * h)) % period for s in shape]
    padded = np.pad(image, ((0, 0), (h, h + extra[0]), (h, h + extra[1])), mode="symmetric")
    sess = session(model.path, model.provider, model.threads)
    x = model.info.normalise(padded)[None]
    full = sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0]
    expected = full[h : h + shape[0], h : h + shape[1]]
    np.testing.assert_allclose(conf, expected, atol=1e-5, rtol=0)
    # The test can fail: a window not grown by the halo sees other pixels.
    assert np.abs(conf - expected).max() < 1e-5


def test_batch_position_does_not_change_results(nets):
    """A block computed first, or third, in its batch gives the same bits."""
    image, valid = random_image(5, (16, 48), False)
    model = pipeline(nets[2], block=16, batch=4).resolve_bands(3).model
    source = ArraySource(image, valid)
    alone = confidence(source, (1, 2, 3), model, Window(0, 16, 32, 48))  # position 0
    third = confidence(source, (1, 2, 3), model, Window(0, 16, 0, 48))[:, 32:]  # position 2
    assert np.array_equal(alone, third)


def test_symmetric_index_is_numpys_symmetric_pad():
    for size in (1, 2, 5):
        index = np.arange(-13, size + 13)
        expected = np.pad(np.arange(size), 13, mode="symmetric")
        np.testing.assert_array_equal(symmetric_index(index, size), expected)


def test_tiler_run_on_a_geotiff_equals_the_reference_and_records_the_model(nets, tmp_path):
    image, _ = random_image(3, (61, 77), False)
    image[:, :5, :9] = 0  # nodata corner
    src = write_geotiff(
        tmp_path / "in.tif", image, nodata=0, transform=Affine(*TRANSFORM), blocksize=16
    )
    config = {"model": {"onnx": str(nets[1]), "block": 16, "threshold": 0.5}}
    (tmp_path / "p.yaml").write_text(json.dumps(config))
    cuda = cli("run", src, tmp_path / "gpu", "-c", tmp_path / "p.yaml", "--device", "cuda")
    assert cuda.returncode != 0 and "Traceback" not in cuda.stderr
    assert cuda.stderr.strip().splitlines() == [
        line for line in cuda.stderr.strip().splitlines() if "--device" not in line
    ]
    assert "tiler: error: model.device: cuda needs onnxruntime-gpu" in cuda.stderr
    done = cli("run", src, tmp_path / "out", "-c", tmp_path / "p.yaml", "--chunk-size", 23,
               "--scheduler", "threads", "--device", "cpu", "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with rasterio.open(src) as ds:
        ref = run_reference(ds.read(), ds.dataset_mask() > 0, _resolved(config, 3), PIXEL)
    labels = zarr.open_array(str(tmp_path / "out" / "labels.zarr" / "labels"), mode="r")[:]
    np.testing.assert_array_equal(labels, ref.labels)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    model = record["threshold"]["model"]
    assert record["threshold"]["method"] == "onnx" and record["threshold"]["value"] == 0.5
    assert model["provider"] == "CPUExecutionProvider" and model["block"] == 16
    assert model["sha256"] == read_info(nets[1]).sha256 and model["name"] == "test-d1"
    assert model["metadata"]["tiler:shift_period_px"] == "2"


def cli(*args: object) -> subprocess.CompletedProcess:
    """``python -m tiler.cli ARGS`` in a fresh interpreter, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    command = [sys.executable, "-m", "tiler.cli", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _resolved(config, count):
    return parse_pipeline(config).resolve_bands(count)


def test_default_chunks_are_a_multiple_of_the_block(nets, tmp_path):
    image, _ = random_image(4, (40, 50), False)
    src = write_geotiff(tmp_path / "in.tif", image, transform=Affine(*TRANSFORM))
    config = {"model": {"onnx": str(nets[2]), "block": 24}}
    result = tiler.run(src, tmp_path / "out", config, scheduler="sync")
    chunks = json.loads((result.dst / "run.json").read_text())["chunking"]["chunk_shape"]
    assert [c % 24 for c in chunks] == [0, 0]


@given(
    shape=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    chunks=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    block=st.sampled_from([8, 16, 48]),
    batch=st.integers(1, 5),
)
def test_block_work_counts_the_windows_each_tile_runs(shape, chunks, block, batch):
    runs = 0
    for *_, w in TileGrid(shape, chunks):
        n = (-(-w.row_stop // block) - w.row_start // block) * (
            -(-w.col_stop // block) - w.col_start // block
        )
        runs += -(-n // batch) * batch
    blocks = -(-shape[0] // block) * -(-shape[1] // block)
    assert block_work(shape, chunks, block, batch) == pytest.approx(runs / blocks)
    aligned = aligned_chunks(chunks, block)
    assert (
        block_work(shape, aligned, block, 1) == 1.0 and wasteful(shape, aligned, block, 1) is None
    )


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tiler:threshold": None}, "metadata tiler:threshold: missing"),
        ({"tiler:bands": "red,green"}, "metadata tiler:bands: not JSON"),
        ({"tiler:normalise": '{"scale": 1}'}, "metadata tiler:normalise: expected"),
        ({"tiler:output": "polygons"}, "metadata tiler:output: expected one of mask, points"),
        ({"tiler:shift_period_px": "2.5"}, "metadata tiler:shift_period_px: expected a positive"),
        ({"tiler:format": "2"}, "metadata tiler:format: unsupported"),
        ({"tiler:output": "points"}, "metadata tiler:min_distance_m: missing"),
    ],
)
def test_bad_metadata_is_refused_in_one_line_naming_file_and_key(tmp_path, change, expected):
    path = make_net(tmp_path / "bad.onnx", meta=metadata(3, 1, **change))
    with pytest.raises(ModelError) as info:
        pipeline(path)
    assert str(path) in one_line(info) and expected in str(info.value)


def test_wrong_channel_count_is_refused(tmp_path):
    path = make_net(tmp_path / "four.onnx", channels=3, input_channels=4)
    with pytest.raises(ModelError) as info:
        pipeline(path)
    assert "tiler:bands: names 3 bands but the input takes 4 channels" in one_line(info)


@pytest.mark.parametrize(
    ("params", "extra", "expected"),
    [
        ({"onnx": "no-such-model"}, {}, "no shipped model 'no-such-model' (shipped: "),
        ({"onnx": "missing/file.onnx"}, {}, "model.onnx: no such file"),
        ({"device": "cuda"}, {}, "model.device: cuda needs onnxruntime-gpu"),
        ({"device": "tpu"}, {}, "model.device: expected one of auto, cpu, cuda"),
        ({"block": 10}, {}, "model.block: 10 is not a multiple of the model's shift period (4"),
        ({"threshold": 0}, {}, "model.threshold: expected a number in (0, 1]"),
        ({"callable": "example_models:bright_mean"}, {}, "'onnx' and 'callable' exclude"),
        ({"colour": 1}, {}, "model.colour: unknown parameter"),
    ],
)
def test_bad_settings_are_refused_in_one_line(nets, params, extra, expected):
    config = {"model": {"onnx": str(nets[2]), **params}, **extra}
    with pytest.raises(ConfigError) as info:
        parse_pipeline(config)
    assert expected in one_line(info)


def test_bands_must_match_the_model(nets):
    with pytest.raises(ConfigError) as info:
        pipeline(nets[1], bands=[1, 2]).resolve_bands(4, source="in.tif")
    assert "in.tif: bands: 2 band(s) given but model test-d1 takes 3" in one_line(info)
    assert pipeline(nets[1]).resolve_bands(5).bands == (1, 2, 3)  # the first 3
    with pytest.raises(ConfigError, match="takes 3 bands"):
        pipeline(nets[1]).resolve_bands(2)


def test_pixel_size_out_of_tolerance_is_refused_with_the_gdalwarp_hint(nets, tmp_path):
    image, _ = random_image(1, (20, 20), False)
    coarse = Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0)
    src = write_geotiff(tmp_path / "coarse.tif", image, transform=coarse)
    with pytest.raises(ConfigError) as info:
        tiler.run(src, tmp_path / "out", {"model": {"onnx": str(nets[1])}}, scheduler="sync")
    message = one_line(info)
    assert "coarse.tif: pixel size 0.5 m is out of model test-d1's range" in message
    assert "gdalwarp -tr 0.05 0.05" in message
    assert not (tmp_path / "out").exists()


def test_the_recorded_config_parses_back_to_the_same_run(tmp_path):
    """run.json's config (what --resume re-reads) gives the same model, in ground units too."""
    path = make_net(tmp_path / "p.onnx", meta=metadata(3, 1, output="points", min_distance_m="0.5"))
    first = pipeline(path, block=8, device="cpu").resolve_bands(3)
    again = parse_pipeline(first.to_dict()).resolve_bands(3)
    assert again.to_dict() == first.to_dict() and again.model == first.model
    assert first.to_dict()["model"]["min_distance"] == "0.5 m"
    assert in_pixels(again, PIXEL).model.min_distance == pytest.approx(10.0)
