"""Tests of the procedural synthetic orthomosaic (tiler.synthetic)."""

from __future__ import annotations

import functools
import time
import tracemalloc

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.enums import ColorInterp

from tiler.accuracy import match_points
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.tiling import Window

H, W = 700, 900
FIELD = SyntheticField(height=H, width=W, seed=3)
EXG_GREEN = 40  # excess green 2G - R - B above which a pixel is vegetation


@functools.cache
def full_image(seed: int = 3) -> np.ndarray:
    return SyntheticField(height=H, width=W, seed=seed).read(Window(0, H, 0, W))


def exg(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[i].astype(np.int32) for i in range(3))
    return 2 * g - r - b


@st.composite
def windows(draw: st.DrawFn) -> Window:
    spans = []
    for size in (H, W):
        start = draw(st.integers(0, size - 1))
        thin = draw(st.booleans())
        stop = start + 1 if thin else draw(st.integers(start + 1, size))
        spans.append((start, stop))
    return Window.of(spans[0], spans[1])


@settings(max_examples=60, deadline=None, database=None)
@given(window=windows())
def test_window_equals_slice_of_full_image(window):
    got = FIELD.read(window)
    assert got.shape == (4, *window.shape)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, full_image()[(slice(None), *window.slices)])


def test_overlapping_windows_agree_far_from_origin():
    field = SyntheticField(height=200_000, width=200_000, seed=11)
    a = field.read(Window(100_000, 100_300, 120_000, 120_400))
    b = field.read(Window(100_123, 100_201, 119_950, 120_333))
    np.testing.assert_array_equal(a[:, 123:201, :333], b[:, :, 50:])
    assert (a[3] == 255).all() and (exg(a) > EXG_GREEN).any()


def test_deterministic_and_seed_dependent():
    window = Window(100, 400, 200, 600)
    a = SyntheticField(height=H, width=W, seed=3).read(window)
    np.testing.assert_array_equal(a, SyntheticField(height=H, width=W, seed=3).read(window))
    b = SyntheticField(height=H, width=W, seed=4).read(window)
    assert (a != b).any(axis=0).mean() > 0.5
    assert not np.array_equal(FIELD.plant_centres(), SyntheticField(H, W, seed=4).plant_centres())


def test_alpha_footprint():
    img = full_image()
    alpha = img[3]
    assert set(np.unique(alpha)) == {0, 255}
    assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
    assert (alpha[H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] == 255).all()
    assert (img[:3, alpha == 0] == 0).all()
    assert 0.7 < (alpha == 255).mean() < 0.95
    # the footprint is an inset convex polygon: each row and column inside is one run
    for mask in (alpha > 0, (alpha > 0).T):
        runs = np.diff(mask.astype(np.int8), axis=1, prepend=0, append=0)
        assert ((runs == 1).sum(axis=1) <= 1).all()
    assert not (alpha[: int(0.03 * H)] > 0).any() and not (alpha[:, -int(0.03 * W) :] > 0).any()


def test_colours_are_plausible():
    img = full_image()
    inside = img[3] == 255
    green = (exg(img) > EXG_GREEN) & inside
    assert 0.05 < green.sum() / inside.sum() < 0.40
    soil = inside & ~green
    r, g, b = (img[i][soil].mean() for i in range(3))
    assert 120 <= r <= 150 and 95 <= g <= 115 and 70 <= b <= 85
    r, g, b = (img[i][green].mean() for i in range(3))
    assert 40 <= r <= 70 and 110 <= g <= 160 and 30 <= b <= 60


def test_plant_centres_ground_truth():
    img = full_image()
    centres = FIELD.plant_centres()
    assert centres.dtype == np.float64 and centres.shape[1] == 2
    rows, cols = centres.astype(np.int64).T
    assert np.array_equal(centres, np.stack([rows, cols], axis=1))
    assert (img[3, rows, cols] == 255).all()
    assert (exg(img)[rows, cols] > EXG_GREEN).mean() > 0.95
    expected = (img[3] > 0).sum() / (FIELD.row_spacing * FIELD.plant_spacing)
    assert 0.8 * expected < len(centres) < 1.0 * expected
    window = Window(100, 350, 250, 700)
    sub = FIELD.plant_centres(window)
    inside = (rows >= 100) & (rows < 350) & (cols >= 250) & (cols < 700)
    np.testing.assert_array_equal(np.unique(sub, axis=0), np.unique(centres[inside], axis=0))


@pytest.mark.parametrize("pixel_size", [0.01, 0.02, 0.04])
def test_the_same_field_at_another_pixel_size_holds_the_same_plants(pixel_size):
    """Sizes are on the ground: at 1, 2 or 4 cm the plants of the 2.5 cm field are where
    they were, as big as they were, and the soil between them as bare."""
    base = SyntheticField.at(0.025, (6.0, 8.0), seed=5)
    field = SyntheticField.at(pixel_size, (6.0, 8.0), seed=5)
    assert base.shape == (240, 320) and base.scale == 1.0
    assert field.shape == (round(6 / pixel_size), round(8 / pixel_size))
    snap = (0.025 + pixel_size) / 2 * np.sqrt(2)  # both centres snap to their pixel
    score = match_points(field.plant_xy(), base.plant_xy(), snap).score()
    # all but a plant or two on the footprint's edge, which is drawn pixel by pixel
    assert score.n_truth > 50 and score.fp + score.fn <= 2
    img = field.read(Window.whole(field.shape))
    share = (exg(img) > EXG_GREEN).sum() / (img[3] > 0).sum()
    img = base.read(Window.whole(base.shape))
    assert share == pytest.approx((exg(img) > EXG_GREEN).sum() / (img[3] > 0).sum(), rel=0.05)


def test_properties_and_validation():
    field = SyntheticField(pixel_size=0.05, origin_xy=(10.0, 20.0))
    assert field.shape == (8000, 8000) and field.count == 4
    assert field.transform == Affine(0.05, 0.0, 10.0, 0.0, -0.05, 20.0)
    with pytest.raises(ValueError):
        FIELD.read(Window(0, H + 1, 0, 10))
    with pytest.raises(ValueError):
        FIELD.read(Window(5, 4, 0, 10))
    with pytest.raises(ValueError):
        SyntheticField(height=0)
    assert FIELD.read(Window(3, 3, 0, 10)).shape == (4, 0, 10)


def test_write_geotiff_round_trip(tmp_path):
    field = SyntheticField(height=H, width=W, seed=3, origin_xy=(400000.0, 5000000.0))
    calls = []
    out = write_geotiff(
        field, tmp_path / "field.tif", blocksize=256, progress=lambda *a: calls.append(a)
    )
    assert out == tmp_path / "field.tif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.tif"]
    assert calls[-1] == (H, H) and len(calls) == 3
    with rasterio.open(out) as src:
        assert (src.count, src.height, src.width) == (4, H, W)
        assert src.dtypes == ("uint8",) * 4
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert src.compression.name.lower() == "deflate"
        assert src.colorinterp == (
            ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha,
        )  # fmt: skip
        assert src.crs.to_epsg() == 32611
        assert src.transform.almost_equals(field.transform)
        data = src.read()
        mask = src.dataset_mask()
    np.testing.assert_array_equal(data, full_image())
    np.testing.assert_array_equal(mask > 0, data[3] > 0)


def test_write_geotiff_removes_partial_file_on_error(tmp_path):
    def boom(done, total):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_geotiff(FIELD, tmp_path / "x.tif", blocksize=256, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_huge_field_is_lazy():
    t0 = time.perf_counter()
    field = SyntheticField(height=200_000, width=200_000, seed=1)
    middle = Window(100_000, 100_256, 150_000, 150_256)
    field.read(Window(100_000, 100_001, 150_000, 150_001))  # builds the per-seed plant stamps
    tracemalloc.start()
    try:
        corner = field.read(Window(199_744, 200_000, 199_744, 200_000))
        inner = field.read(middle)
        centres = field.plant_centres(middle)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert corner.shape == inner.shape == (4, 256, 256)
    assert (corner == 0).all()  # the far corner is outside the field footprint
    assert (inner[3] == 255).all() and 30 < len(centres) < 120
    assert peak < 8 * 2**20  # a few copies of the window, nothing image-sized
    assert elapsed < 2.0


def test_cli_writes_each_seeds_field_and_its_plant_centres(tmp_path):
    import pandas as pd
    from test_cli import assert_one_line_error
    from test_cli import tiler as tiler_cli

    proc = tiler_cli("synthetic", "f", "--seeds", "4,6-7", "--extent", "6m", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for seed in (4, 6, 7):
        field = SyntheticField.at(0.025, (6.0, 6.0), seed=seed)
        with rasterio.open(tmp_path / "f" / f"field-{seed}.tif") as src:
            assert src.transform == field.transform and src.crs == rasterio.crs.CRS.from_user_input(
                field.crs
            )
            np.testing.assert_array_equal(
                src.read(), field.read(Window(0, field.height, 0, field.width))
            )
        truth = pd.read_csv(tmp_path / "f" / f"field-{seed}.csv")
        np.testing.assert_array_equal(truth[["x", "y"]].to_numpy(), field.plant_xy())
        assert len(truth) > 10
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == sorted(
        f"field-{s}{e}"
        for s in (4, 6, 7)
        for e in (".tif", ".csv", "-rows.geojson", "-gaps.geojson")
    )
    for bad, words in [("2-1", "empty range"), ("1,1", "repeats"), ("x", "numbers or ranges")]:
        proc = tiler_cli("synthetic", "g", "--seeds", bad, cwd=tmp_path)
        assert_one_line_error(proc, "--seeds", words)
