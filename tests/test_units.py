"""Sizes in ground units (``radius: 10 cm``): parsed, turned into pixels per input, recorded.

The parsing table and the rounding rules of :mod:`tiler.units`; the pixel size
of real GeoTIFFs (metres, non-square pixels, US feet, degrees) against an
independent computation (pyproj's geodesics for degrees); a bare number means
what it always meant; tiled runs equal the reference that resolves the same
way; ``--pixel-only`` refuses ground units in one line; run.json records both.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from affine import Affine
from conftest import run_tiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from test_cli import assert_one_line_error, field_image, tiler

import tiler as tiler_api
from tiler import resolution
from tiler.config import parse_pipeline
from tiler.errors import ConfigError
from tiler.georef import pixel_area_m2, pixel_sides_m
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import ArraySource
from tiler.reference import run_reference
from tiler.units import PixelSize, area, length

KEY = "refine[0].opening.radius"


def opening(radius) -> dict:
    return {"refine": [{"opening": {"radius": radius}}]}


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "metres"),
    [("2 cm", 0.02), ("0.05 m", 0.05), ("12m", 12.0), ("3 mm", 0.003), ("2 ft", 0.6096),
     (" 1.5e-1 m ", 0.15)],
)  # fmt: skip
def test_a_length_in_ground_units_is_kept_until_the_pixel_size_is_known(written, metres):
    _, (ground,) = length(written, "k.radius")
    assert ground.key == "k.radius" and ground.name == "radius"
    assert ground.written == written.strip()
    assert ground.metres == pytest.approx(metres, rel=1e-12)
    assert not ground.area


@pytest.mark.parametrize(
    ("written", "m2"),
    [("0.01 m2", 0.01), ("1 cm2", 1e-4), ("2 ha", 2e4), ("3 m²", 3.0), ("5 m^2", 5.0),
     ("1 ft2", 0.3048**2), ("4 mm2", 4e-6)],
)  # fmt: skip
def test_an_area_in_ground_units(written, m2):
    _, (ground,) = area(written, "k.min_area")
    assert ground.area and ground.metres == pytest.approx(m2, rel=1e-12)


@pytest.mark.parametrize(
    ("value", "px"), [(3, 3), ("3 px", 3), ("3px", 3), ("3.0 px", 3), (" 7 px", 7)]
)
def test_pixels_written_as_px_are_a_bare_number(value, px):
    assert length(value, "k") == (px, ())


def test_an_area_in_pixels_may_say_px_or_px2():
    assert area("20 px", "k") == area("20 px2", "k") == area(20, "k") == (20, ())


def test_a_float_parameter_in_pixels_stays_a_float():
    assert length("1.5 px", "k", rule="float") == (1.5, ())
    assert length(2, "k", rule="float") == (2.0, ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3 km2", "'3 km2' is not a length; use px, mm, cm, m, ft"),
        ("3 m2", "'3 m2' is not a length"),
        ("3 px2", "'3 px2' is not a length"),
        ("three cm", "'three cm' is not a length"),
        ("cm", "'cm' is not a length"),
        ("2 cm 3", "'2 cm 3' is not a length"),
        ("-2 cm", "expected a number > 0, got -2"),
        ("0 m", "expected a number > 0, got 0"),
        ("2.5 px", "expected an integer >= 1, got 2.5"),
        ("0 px", "expected an integer >= 1, got 0"),
        (2.5, "expected an integer >= 1, got 2.5"),
        (True, "expected an integer >= 1, got True"),
        ([1], "expected an integer >= 1, got [1]"),
    ],
)
def test_a_bad_length_is_refused_in_one_line_naming_the_key(value, message):
    with pytest.raises(ConfigError) as info:
        parse_pipeline(opening(value))
    text = str(info.value)
    assert text.startswith(f"{KEY}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"remove_small_objects": {"min_area": "2 cm"}}, "'2 cm' is not an area; use px, mm2"),
        ({"fill_holes": {"max_area": "1 acre"}}, "'1 acre' is not an area"),
        ({"remove_small_objects": {"min_area": "1.5 px"}}, "expected an integer >= 1, got 1.5"),
    ],
)
def test_a_bad_area_is_refused_naming_the_key(step, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_pipeline({"refine": [step]})
    ((name, found),) = step.items()
    assert str(info.value).startswith(f"refine[0].{name}.{next(iter(found))}: ")


def test_every_length_and_area_parameter_takes_a_unit():
    data = {
        "preprocess": [
            {"index": "exg"},
            {"gaussian": {"sigma": "10 cm"}},
            {"median": {"radius": "10 cm"}},
            {"clahe": {"kernel_size": "1 m"}},
        ],
        "threshold": {"local": {"block_size": "0.5 m"}},
        "refine": [
            {"closing": {"radius": "10 cm"}},
            {"smooth": {"sigma": "5 cm"}},
            {"fill_holes": {"max_area": "0.01 m2"}},
            {"remove_small_objects": {"min_area": "100 cm2"}},
            {"split": {"watershed": {"min_distance": "0.3 m", "footprint": "0.5 m",
                                     "halo": "2 m"}}},
        ],
    }  # fmt: skip
    keys = [g.key for g in resolution.ground(parse_pipeline(data))]
    assert keys == [
        "preprocess[1].gaussian.sigma",
        "preprocess[2].median.radius",
        "preprocess[3].clahe.kernel_size",
        "threshold.local.block_size",
        "refine[0].closing.radius",
        "refine[1].smooth.sigma",
        "refine[2].fill_holes.max_area",
        "refine[3].remove_small_objects.min_area",
        "refine[4].split.watershed.min_distance",
        "refine[4].split.watershed.footprint",
        "refine[4].split.watershed.halo",
    ]
    p = resolution.in_pixels(parse_pipeline(data), PixelSize(0.05, 0.05))
    assert p.filters[0].sigma == pytest.approx(2.0) and p.filters[1].radius == 2
    assert p.filters[2].kernel_size == 20 and p.threshold.block_size == 11
    assert p.refine[0].radius == 2 and p.refine[1].sigma == pytest.approx(1.0)
    assert p.refine[2].max_area == p.refine[3].min_area == 4
    split = p.refine[4]
    assert (split.min_distance, split.footprint, split.halo) == (6, 11, 40)
    assert resolution.ground(p) == ()
    written = parse_pipeline(data)  # as written until resolved: to_dict round-trips
    assert written.to_dict()["refine"][4] == data["refine"][4]
    assert written.to_dict()["preprocess"][1:3] == data["preprocess"][1:3]
    assert parse_pipeline(written.to_dict()) == written
    assert p.to_dict()["refine"][0] == {"closing": {"radius": 2}}
    edges = parse_pipeline({"threshold": {"edges": {"sigma": "3 cm"}}})
    assert resolution.in_pixels(edges, PixelSize(0.01, 0.01)).threshold.sigma == pytest.approx(3)


# ---------------------------------------------------------------------------
# Rounding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "rule", "minimum", "side", "px"),
    [
        ("10 cm", "int", 1, 0.05, 2),  # exactly 2
        ("12.4 cm", "int", 1, 0.05, 2),  # 2.48: nearest
        ("12.5 cm", "int", 1, 0.05, 3),  # 2.5: halves up
        ("1 mm", "int", 1, 0.05, 1),  # 0.02 px: at least 1
        ("1 mm", "int", 0, 0.05, 0),  # a halo may be 0
        ("20 cm", "odd", 3, 0.05, 5),  # 4: an even tie goes up to the odd above
        ("19 cm", "odd", 3, 0.05, 3),  # 3.8: nearest odd is 3
        ("1 cm", "odd", 3, 0.05, 3),  # at least 3
        ("27.5 cm", "odd", 3, 0.05, 5),  # 5.5: nearest odd 5
        ("7 cm", "float", 1, 0.05, 1.4),  # sigma: not rounded
    ],
)
def test_rounding_rules(written, rule, minimum, side, px):
    _, (ground,) = length(written, "k", rule=rule, minimum=minimum)
    got = ground.pixels(PixelSize(side, side))
    assert got == pytest.approx(px, rel=1e-12)
    assert isinstance(got, float) == (rule == "float")


def test_an_area_is_divided_by_the_pixel_area_and_rounded():
    _, (ground,) = area("0.01 m2", "k")
    assert ground.pixels(PixelSize(0.05, 0.05)) == 4
    assert ground.pixels(PixelSize(0.05, 0.1)) == 2  # non-square: the pixel's own area
    assert ground.pixels(PixelSize(0.6, 0.6)) == 1  # 0.03 px: at least one


# ---------------------------------------------------------------------------
# The pixel size of real files
# ---------------------------------------------------------------------------

UTM = "EPSG:32611"
GEOD = Geod(ellps="WGS84")


def _geodesic_sides(lon: float, lat: float, dlon: float, dlat: float) -> tuple[float, float]:
    """(row_m, col_m): pyproj's geodesic lengths of one row down and one column across.

    Measured over 1000 pixels centred on ``lat`` (a geodesic of 5 cm carries
    pyproj's nanometre rounding), then divided.
    """
    k = 1000
    _, _, col = GEOD.inv(lon - k * dlon / 2, lat, lon + k * dlon / 2, lat)
    _, _, row = GEOD.inv(lon, lat - k * dlat / 2, lon, lat + k * dlat / 2)
    return row / k, col / k


H, W = 40, 60


def _expected_sides(crs, t: Affine) -> tuple[float, float]:
    """The pixel's sides in m at the middle row, computed without tiler."""
    if crs == "EPSG:4326":
        y = t.f + t.e * H / 2
        return _geodesic_sides(t.c, y, t.a, -t.e)
    factor = 1200 / 3937 if crs == "EPSG:2263" else 1.0  # US survey foot
    return abs(t.e) * factor, abs(t.a) * factor


FILES = {
    "5 cm": (UTM, Affine(0.05, 0, 500000, 0, -0.05, 4100000)),
    "0.6 m": (UTM, Affine(0.6, 0, 500000, 0, -0.6, 4100000)),
    "non-square": (UTM, Affine(0.05, 0, 500000, 0, -0.1, 4100000)),
    "US feet": ("EPSG:2263", Affine(0.5, 0, 980000, 0, -0.5, 200000)),
    "degrees": ("EPSG:4326", Affine(5e-7, 0, -119.7, 0, -5e-7, 37.1)),
}


@pytest.mark.parametrize("name", list(FILES))
def test_pixel_size_of_a_geotiff_matches_an_independent_computation(name, geotiff):
    crs, transform = FILES[name]
    path = geotiff(np.zeros((3, H, W), np.uint8), crs=crs, transform=transform)
    size = resolution.pixel_size(open_geotiff(path))
    row_m, col_m = _expected_sides(crs, transform)
    assert size.row_m == pytest.approx(row_m, rel=1e-8)
    assert size.col_m == pytest.approx(col_m, rel=1e-8)
    pipeline = resolution.in_pixels(
        parse_pipeline({"refine": [{"smooth": {"sigma": "10 cm"}},
                                   {"remove_small_objects": {"min_area": "1 m2"}}]}),
        size,
    )  # fmt: skip
    assert pipeline.refine[0].sigma == pytest.approx(0.1 / math.sqrt(row_m * col_m), rel=1e-8)
    assert pipeline.refine[1].min_area == max(1, round(1.0 / (row_m * col_m)))


def test_the_sides_multiply_to_the_pixel_area_in_degrees():
    from pyproj import CRS

    wkt = CRS.from_epsg(4326).to_wkt()
    for lat in (0.0, 37.1, 65.0):
        t = (1e-5, 0.0, 10.0, 0.0, -2e-5, lat)
        row_m, col_m = pixel_sides_m(wkt, t, lat)
        assert row_m * col_m == pytest.approx(float(pixel_area_m2(wkt, t, lat)), rel=1e-12)


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

FIVE_CM = Affine(0.05, 0, 500000, 0, -0.05, 4100000)


def _write_config(tmp_path, radius, min_area=8):
    refine = [{"opening": {"radius": radius}}, {"remove_small_objects": {"min_area": min_area}}]
    data = {"preprocess": [{"index": "exg"}], "refine": refine}
    path = tmp_path / f"p{abs(hash((radius, min_area)))}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_bare_number_px_and_the_same_size_in_cm_give_identical_outputs(tmp_path, geotiff):
    src = geotiff(field_image(120, 140), transform=FIVE_CM)
    outputs = []
    for radius, min_area in [(2, 8), ("2 px", "8 px"), ("10 cm", "200 cm2")]:
        dst = tmp_path / f"out-{len(outputs)}"
        config = _write_config(tmp_path, radius, min_area)
        tiler_api.run(src, dst, config=config, chunk_size=32, scheduler="sync")
        labels = tiler_api.open_labels(dst).values
        table = pq.read_table(dst / "objects.parquet").drop(["geometry"])
        outputs.append((labels, table, json.loads((dst / "run.json").read_text())))
    (labels, table, manifest), *others = outputs
    assert labels.max() > 1  # there are objects to compare
    for other_labels, other_table, other_manifest in others:
        assert labels.tobytes() == other_labels.tobytes()
        assert table.equals(other_table)
        assert other_manifest["config"] == manifest["config"]  # the pixels used
    assert manifest["config"]["refine"][0] == {"opening": {"radius": 2}}
    assert manifest["units"] == {"pixel_size_m": [0.05, 0.05], "parameters": []}
    assert outputs[2][2]["units"] == {
        "pixel_size_m": [0.05, 0.05],
        "parameters": [
            {"key": "refine[0].opening.radius", "written": "10 cm", "pixels": 2},
            {"key": "refine[1].remove_small_objects.min_area", "written": "200 cm2", "pixels": 8},
        ],
    }


def test_ground_units_on_a_pixel_only_input_are_refused_in_one_line(tmp_path, geotiff):
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        src = geotiff(field_image(60, 70), crs=None, transform=Affine.identity())
    config = _write_config(tmp_path, "10 cm")
    proc = tiler("run", src, tmp_path / "out", "--pixel-only", "--config", config, cwd=tmp_path)
    assert_one_line_error(proc, "refine[0].opening.radius", "'10 cm'", "--pixel-only", "px")
    assert not (tmp_path / "out").exists()
    # in pixels, the same input runs
    tiler_api.run(src, tmp_path / "px", config=_write_config(tmp_path, "2 px"), pixel_only=True)
    manifest = json.loads((tmp_path / "px" / "run.json").read_text())
    assert manifest["units"] == {"pixel_size_m": None, "parameters": []}


def test_the_reference_refuses_ground_units_without_a_pixel_size():
    image = np.zeros((3, 8, 8), np.uint8)
    pipeline = parse_pipeline(opening("10 cm")).resolve_bands(3)
    with pytest.raises(ConfigError, match="refine\\[0\\].opening.radius: '10 cm'"):
        run_reference(image, np.ones((8, 8), bool), pipeline)


# A pipeline with every kind of ground-unit parameter that is exact when tiled.
GROUND = {
    "preprocess": [{"index": "exg"}, {"gaussian": {"sigma": "4 cm"}}],
    "threshold": "otsu",
    "refine": [
        {"closing": {"radius": "6 cm"}},
        {"fill_holes": {"max_area": "40 cm2"}},
        {"opening": {"radius": "3 cm"}},
        {"remove_small_objects": {"min_area": "60 cm2"}},
    ],
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(8, 40), st.integers(8, 40)),
    sides=st.tuples(st.sampled_from([0.01, 0.02, 0.03, 0.05]), st.sampled_from([0.01, 0.03])),
    chunks=st.tuples(st.integers(1, 17), st.integers(1, 17)),
)
def test_a_ground_unit_pipeline_tiled_equals_the_reference(seed, shape, sides, chunks):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (3, *shape), dtype=np.uint8)
    valid = rng.random(shape) > 0.05
    transform = (sides[1], 0.0, 500000.0, 0.0, -sides[0], 4100000.0)
    source = ArraySource(image, valid, transform=transform)
    written = parse_pipeline(GROUND).resolve_bands(3)
    size = resolution.pixel_size(source)
    assert (size.row_m, size.col_m) == sides
    ref = run_reference(image, valid, written, size)
    labels, seg, _ = run_tiled(source, resolution.in_pixels(written, size), chunks)
    assert seg.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels)


def test_the_passes_refuse_a_pipeline_still_in_ground_units():
    """Only a resolved pipeline runs: a placeholder size never reaches a tile."""
    written = parse_pipeline({"refine": [{"opening": {"radius": "10 cm"}}]})
    with pytest.raises(ValueError, match="ground units"):
        written.in_pixels()
    resolved = resolution.in_pixels(written, PixelSize(0.05, 0.05))
    assert resolved.in_pixels() is resolved
    assert resolved.refine[0].radius == 2
