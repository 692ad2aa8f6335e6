"""The pipeline file (tiler.config): parsing, validation, stages and halos, band resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi
from skimage.filters import threshold_local

from tiler.config import (
    DEFAULT_PIPELINE_YAML,
    FillHoles,
    FixedThreshold,
    Gaussian,
    Index,
    LocalThreshold,
    Median,
    Morphology,
    MultiOtsu,
    Otsu,
    Pipeline,
    RemoveSmallObjects,
    Smooth,
    Stage,
    load_pipeline,
    parse_pipeline,
)
from tiler.errors import ConfigError, TilerError

DEFAULT = yaml.safe_load(DEFAULT_PIPELINE_YAML)
REFINE_STEPS = (
    "erosion, dilation, opening, closing, smooth, fill_holes, remove_small_objects, split"
)


def pipeline(**data) -> Pipeline:
    return parse_pipeline(data)


# ---------------------------------------------------------------------------
# The default pipeline and round trips
# ---------------------------------------------------------------------------


def test_default_pipeline_parses():
    p = load_pipeline(None)
    assert p == parse_pipeline(DEFAULT)
    assert p.preprocess == (Index("exg"), Gaussian(1.0))
    assert p.index == Index("exg")
    assert p.filters == (Gaussian(1.0),)
    assert p.threshold == Otsu()
    assert p.polarity == "above"
    assert p.refine == (
        Morphology("closing", 1),
        Morphology("opening", 1),
        FillHoles(),
        RemoveSmallObjects(20),
    )
    assert p.connectivity == 2
    assert p.bands is None


def test_empty_mapping_gives_the_documented_defaults():
    p = parse_pipeline({})
    assert p == Pipeline(preprocess=(Index("exg"),))
    assert (p.threshold, p.polarity, p.refine, p.connectivity, p.bands) == (
        Otsu(),
        "above",
        (),
        2,
        None,
    )


def test_default_pipeline_file_loads(tmp_path):
    path = tmp_path / "default.yaml"
    path.write_text(DEFAULT_PIPELINE_YAML)
    assert load_pipeline(path) == load_pipeline(None)
    assert load_pipeline(str(path)) == load_pipeline(None)


ROUND_TRIPS = {
    "default": DEFAULT,
    "empty": {},
    "ndvi": {
        "bands": [3, 4],
        "preprocess": [{"index": "ndvi", "red": 3, "nir": 4}],
        "threshold": 0.25,
        "polarity": "below",
        "connectivity": 1,
    },
    "band-and-two-gaussians": {
        "preprocess": [{"band": 2}, {"gaussian": {"sigma": 0.5}}, {"gaussian": {"sigma": 2}}],
        "threshold": -3,
        "refine": [
            {"erosion": {"radius": 2}},
            {"dilation": {"radius": 3}},
            {"fill_holes": {"max_area": 10}},
        ],
    },
    "bare-step-names": {
        "preprocess": [{"index": "gray"}],
        "refine": ["closing", "fill_holes", {"opening": None}],
    },
    "local-after-object": {
        "refine": [
            {"closing": {"radius": 1}},
            {"fill_holes": {}},
            {"opening": {"radius": 1}},
            {"remove_small_objects": {"min_area": 5}},
        ]
    },
    "hsv-median-multi-otsu-smooth": {
        "preprocess": [{"index": {"hsv": "s"}}, {"median": {"radius": 2}}],
        "threshold": {"multi_otsu": {"classes": 3, "keep": [1, 2]}},
        "refine": [{"smooth": {"sigma": 1.5}}, {"fill_holes": {}}],
    },
    "equalize-then-gaussian-percentile": {
        "preprocess": [{"index": "exg"}, {"equalize": {}}, {"gaussian": {"sigma": 1.0}}],
        "threshold": {"percentile": 90},
    },
    "split-last": {
        "refine": [
            {"closing": {"radius": 1}},
            {"split": {"watershed": {"min_distance": 5, "footprint": 3, "halo": 40}}},
        ],
    },
    "clahe": {
        "preprocess": [{"index": "exg"}, {"clahe": {"kernel_size": 64, "clip_limit": 0.02}}],
    },
    "exgr-local-threshold": {
        "preprocess": [{"index": "exgr"}],
        "threshold": {"local": {"block_size": 31, "method": "median", "offset": -0.01}},
    },
}


@pytest.mark.parametrize("data", ROUND_TRIPS.values(), ids=list(ROUND_TRIPS))
def test_to_dict_round_trips(data):
    p = parse_pipeline(data)
    d = p.to_dict()
    assert parse_pipeline(d) == p
    assert parse_pipeline(d).to_dict() == d
    # Through YAML and JSON (the manifest) as well.
    assert parse_pipeline(yaml.safe_load(yaml.safe_dump(d))) == p
    assert parse_pipeline(json.loads(json.dumps(d))) == p


@pytest.mark.parametrize("data", ROUND_TRIPS.values(), ids=list(ROUND_TRIPS))
def test_resolved_pipeline_round_trips(data):
    resolved = parse_pipeline(data).resolve_bands(4)
    assert resolved.bands is not None
    d = resolved.to_dict()
    assert d["bands"] == list(resolved.bands)
    assert parse_pipeline(d) == resolved
    assert resolved.resolve_bands(4) == resolved


def test_defaults_are_written_out():
    d = pipeline(preprocess=[{"index": "exg"}], refine=["closing"]).to_dict()
    assert d == {
        "preprocess": [{"index": "exg"}],
        "threshold": "otsu",
        "polarity": "above",
        "refine": [{"closing": {"radius": 1}}],
        "connectivity": 2,
    }
    ndvi = pipeline(preprocess=[{"index": "ndvi"}]).to_dict()
    assert ndvi["preprocess"] == [{"index": "ndvi", "red": 1, "nir": 4}]


def test_fixed_threshold_is_a_float():
    p = pipeline(threshold=1)
    assert p.threshold == FixedThreshold(1.0)
    assert isinstance(p.threshold.value, float)


def test_step_classes_follow_the_design():
    # DESIGN.md section 1: the class decides how a step runs in tiles.
    assert Index("exg").kind == "pixel" and Index("exg").reach == 0
    assert FixedThreshold(0.1).kind == "pixel"
    assert Otsu().kind == "global"
    assert Gaussian(1.0).kind == "local"
    assert Morphology("erosion", 1).kind == "local"
    assert FillHoles().kind == "object" and FillHoles().reach == 0
    assert RemoveSmallObjects(3).kind == "object" and RemoveSmallObjects(3).reach == 0
    assert Index("hsv", channel="h").kind == "pixel" and Index("exgr").reach == 0
    assert Median(3).kind == "local" and Median(3).reach == 3
    assert Smooth(1.0).kind == "local" and Smooth(1.0).reach == Gaussian(1.0).reach
    assert MultiOtsu(3, (2,)).kind == "global"
    assert LocalThreshold(31, "mean").kind == "local" and LocalThreshold(31, "mean").reach == 15


# ---------------------------------------------------------------------------
# Reach and stages
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sigma", "reach"),
    [(0.1, 0), (0.125, 1), (0.3, 1), (0.5, 2), (1.0, 4), (1.2, 5), (1.5, 6), (2.5, 10), (3.0, 12)],
)
def test_gaussian_reach(sigma, reach):
    assert Gaussian(sigma).reach == reach == int(4 * sigma + 0.5)


@pytest.mark.parametrize("block_size", [3, 5, 7, 11, 15, 31, 61])
@pytest.mark.parametrize("method", ["gaussian", "mean"])
def test_local_threshold_reach_is_scikit_images_support(block_size, method):
    """A pixel changes the local threshold exactly ``reach`` pixels away, not further.

    (The median's window is ``block_size`` wide by definition; the property
    tests cover it against the whole image.)
    """
    impulse = np.zeros((1, 2 * block_size + 41))
    centre = impulse.shape[1] // 2
    impulse[0, centre] = 1.0
    changed = np.flatnonzero(threshold_local(impulse, block_size, method, mode="nearest"))
    reach = LocalThreshold(block_size, method).reach
    assert changed[0] == centre - reach
    assert changed[-1] == centre + reach


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.5])
def test_gaussian_reach_is_scipys_kernel_radius(sigma):
    impulse = np.zeros(81)
    impulse[40] = 1.0
    out = ndi.gaussian_filter1d(impulse, sigma, mode="constant", truncate=4.0)
    support = np.flatnonzero(out)
    assert support[0] == 40 - Gaussian(sigma).reach
    assert support[-1] == 40 + Gaussian(sigma).reach


@pytest.mark.parametrize(
    ("op", "radius", "reach"),
    [("erosion", 1, 1), ("dilation", 3, 3), ("opening", 1, 2), ("closing", 2, 4)],
)
def test_morphology_reach(op, radius, reach):
    assert Morphology(op, radius).reach == reach


@pytest.mark.parametrize(
    ("preprocess", "reach"),
    [
        ([{"index": "exg"}], 0),
        ([{"index": "exg"}, {"gaussian": {"sigma": 1.0}}], 4),
        ([{"band": 1}, {"gaussian": {"sigma": 1.0}}, {"gaussian": {"sigma": 0.5}}], 6),
        ([{"index": "gray"}, {"gaussian": {"sigma": 0.1}}], 0),
    ],
)
def test_preprocess_reach_sums_the_gaussian_radii(preprocess, reach):
    assert pipeline(preprocess=preprocess).preprocess_reach == reach


def test_default_pipeline_reach():
    p = load_pipeline(None)
    assert p.preprocess_reach == 4
    assert p.stages() == [
        Stage(
            (Morphology("closing", 1), Morphology("opening", 1)),
            (FillHoles(), RemoveSmallObjects(20)),
        )
    ]
    assert p.stages()[0].reach == 4


def _names(steps) -> tuple[str, ...]:
    return tuple(getattr(step, "op", type(step).__name__) for step in steps)


# refine -> [(local step names, object step names, reach), ...]
STAGES = {
    "empty": ([], [((), (), 0)]),
    "only-local": (
        [{"erosion": {"radius": 2}}, {"dilation": {"radius": 3}}],
        [(("erosion", "dilation"), (), 5)],
    ),
    "only-object": (
        ["fill_holes", {"remove_small_objects": {"min_area": 4}}],
        [((), ("FillHoles", "RemoveSmallObjects"), 0)],
    ),
    "issue-example": (
        [
            {"closing": {"radius": 1}},
            "fill_holes",
            {"opening": {"radius": 1}},
            {"remove_small_objects": {"min_area": 20}},
        ],
        [(("closing",), ("FillHoles",), 2), (("opening",), ("RemoveSmallObjects",), 2)],
    ),
    "object-first": (
        ["fill_holes", {"closing": {"radius": 1}}],
        [((), ("FillHoles",), 0), (("closing",), (), 2)],
    ),
    "three-stages": (
        [
            {"erosion": {"radius": 1}},
            "fill_holes",
            {"remove_small_objects": {"min_area": 3}},
            {"dilation": {"radius": 2}},
            {"opening": {"radius": 1}},
            "fill_holes",
            {"erosion": {"radius": 1}},
        ],
        [
            (("erosion",), ("FillHoles", "RemoveSmallObjects"), 1),
            (("dilation", "opening"), ("FillHoles",), 4),
            (("erosion",), (), 1),
        ],
    ),
}


@pytest.mark.parametrize("case", STAGES, ids=list(STAGES))
def test_stages_split_refine(case):
    refine, expected = STAGES[case]
    p = pipeline(refine=refine)
    stages = p.stages()
    assert [(_names(s.local), _names(s.objects), s.reach) for s in stages] == expected
    # The stages hold every refine step once, in order.
    assert tuple(step for s in stages for step in (*s.local, *s.objects)) == p.refine
    # Only the first stage may start without local steps.
    assert all(s.local for s in stages[1:])


def test_issue_example_stages_exactly():
    p = pipeline(
        refine=[
            {"closing": {"radius": 1}},
            {"fill_holes": {}},
            {"opening": {"radius": 1}},
            {"remove_small_objects": {"min_area": 20}},
        ]
    )
    assert p.stages() == [
        Stage((Morphology("closing", 1),), (FillHoles(),)),
        Stage((Morphology("opening", 1),), (RemoveSmallObjects(20),)),
    ]


# ---------------------------------------------------------------------------
# Validation: every message names the key at fault
# ---------------------------------------------------------------------------

EXG = {"index": "exg"}

# (pipeline data, substrings the message must contain)
BAD = {
    "not-a-mapping": ([{"index": "exg"}], ["pipeline must be a mapping", "preprocess"]),
    "none": (None, ["pipeline must be a mapping"]),
    "unknown-top-key": ({"colour": "green"}, ["colour: unknown key", "allowed: bands, preprocess"]),
    "bands-empty": ({"bands": []}, ["bands:", "non-empty list"]),
    "bands-string": ({"bands": "1,2,3"}, ["bands:"]),
    "bands-zero": ({"bands": [1, 0]}, ["bands[1]", ">= 1", "0"]),
    "bands-str-item": ({"bands": [1, "2"]}, ["bands[1]", "'2'"]),
    "bands-bool": ({"bands": [1, True]}, ["bands[1]", "True"]),
    "bands-float": ({"bands": [1.0, 2]}, ["bands[0]"]),
    "bands-repeat": ({"bands": [1, 2, 1]}, ["bands:", "repeat"]),
    "threshold-word": ({"threshold": "mean"}, ["threshold:", "'otsu'", "'mean'"]),
    "threshold-bool": ({"threshold": True}, ["threshold:", "True"]),
    "threshold-nan": ({"threshold": float("nan")}, ["threshold:", "nan"]),
    "threshold-inf": ({"threshold": float("inf")}, ["threshold:", "inf"]),
    "threshold-list": ({"threshold": [0.1]}, ["threshold:"]),
    "polarity": ({"polarity": "up"}, ["polarity:", "'above'", "'below'", "'up'"]),
    "connectivity-3": ({"connectivity": 3}, ["connectivity:", "1", "2", "3"]),
    "connectivity-bool": ({"connectivity": True}, ["connectivity:", "True"]),
    "connectivity-str": ({"connectivity": "2"}, ["connectivity:", "'2'"]),
    "connectivity-float": ({"connectivity": 2.0}, ["connectivity:", "2.0"]),
    "ndvi-same-band": (
        {"preprocess": [{"index": "ndvi", "red": 2, "nir": 2}]},
        ["preprocess[0]", "red and nir", "2"],
    ),
    "preprocess-empty": ({"preprocess": []}, ["preprocess:", "non-empty list"]),
    "preprocess-null": ({"preprocess": None}, ["preprocess:"]),
    "preprocess-mapping": ({"preprocess": EXG}, ["preprocess:"]),
    "preprocess-no-index": (
        {"preprocess": [{"gaussian": {"sigma": 1}}]},
        ["preprocess[0]", "first preprocess step", "'index:'"],
    ),
    "second-index": (
        {"preprocess": [EXG, {"index": "gray"}]},
        ["preprocess[1].index", "first preprocess step"],
    ),
    "second-band": ({"preprocess": [EXG, {"band": 2}]}, ["preprocess[1].band", "first"]),
    "unknown-index": (
        {"preprocess": [{"index": "evi"}]},
        ["preprocess[0].index", "'evi'", "exg, exgr, ndvi, gray, vari, gli, ngrdi, {hsv: h|s|v}"],
    ),
    "index-extra": (
        {"preprocess": [{"index": "exg", "red": 1}]},
        ["preprocess[0].red", "index exg", "none"],
    ),
    "ndvi-extra": (
        {"preprocess": [{"index": "ndvi", "blue": 3}]},
        ["preprocess[0].blue", "red, nir"],
    ),
    "ndvi-nir-zero": ({"preprocess": [{"index": "ndvi", "nir": 0}]}, ["preprocess[0].nir", ">= 1"]),
    "ndvi-red-str": ({"preprocess": [{"index": "ndvi", "red": "1"}]}, ["preprocess[0].red"]),
    "band-zero": ({"preprocess": [{"band": 0}]}, ["preprocess[0].band", ">= 1"]),
    "band-float": ({"preprocess": [{"band": 1.5}]}, ["preprocess[0].band", "1.5"]),
    "unknown-preprocess-step": (
        {"preprocess": [EXG, {"blur": {"sigma": 1}}]},
        ["preprocess[1]", "'blur'", "index, band, gaussian"],
    ),
    "two-steps-in-one-item": (
        {"preprocess": [{"index": "exg", "gaussian": {"sigma": 1}}]},
        ["preprocess[0]", "one step per list item"],
    ),
    "empty-item": ({"preprocess": [{}]}, ["preprocess[0]"]),
    "number-item": ({"preprocess": [42]}, ["preprocess[0]", "42"]),
    "sigma-str": (
        {"preprocess": [EXG, {"gaussian": {"sigma": "abc"}}]},
        ["preprocess[1].gaussian.sigma", "'abc'"],
    ),
    "sigma-zero": (
        {"preprocess": [EXG, {"gaussian": {"sigma": 0}}]},
        ["preprocess[1].gaussian.sigma", "> 0"],
    ),
    "sigma-negative": (
        {"preprocess": [EXG, {"gaussian": {"sigma": -1.0}}]},
        ["preprocess[1].gaussian.sigma", "> 0"],
    ),
    "sigma-bool": (
        {"preprocess": [EXG, {"gaussian": {"sigma": True}}]},
        ["preprocess[1].gaussian.sigma"],
    ),
    "sigma-inf": (
        {"preprocess": [EXG, {"gaussian": {"sigma": float("inf")}}]},
        ["preprocess[1].gaussian.sigma"],
    ),
    "sigma-missing": (
        {"preprocess": [EXG, {"gaussian": {}}]},
        ["preprocess[1].gaussian.sigma", "required"],
    ),
    "gaussian-bare": (
        {"preprocess": [EXG, "gaussian"]},
        ["preprocess[1].gaussian.sigma", "required"],
    ),
    "gaussian-number": (
        {"preprocess": [EXG, {"gaussian": 1.0}]},
        ["preprocess[1].gaussian", "mapping", "sigma"],
    ),
    "gaussian-unknown-param": (
        {"preprocess": [EXG, {"gaussian": {"sigma": 1, "size": 3}}]},
        ["preprocess[1].gaussian.size", "unknown parameter", "sigma"],
    ),
    "gaussian-extra-key": (
        {"preprocess": [EXG, {"gaussian": {"sigma": 1}, "mode": "x"}]},
        ["preprocess[1]", "'mode'", "'gaussian'"],
    ),
    "refine-mapping": ({"refine": {"closing": {"radius": 1}}}, ["refine:", "list"]),
    "refine-unknown-step": (
        {"refine": [{"closing": {"radius": 1}}, {"blur": {}}]},
        ["refine[1]", "'blur'", REFINE_STEPS],
    ),
    "refine-unknown-third": (
        {"refine": ["closing", "opening", "erode"]},
        ["refine[2]", "'erode'", REFINE_STEPS],
    ),
    "radius-zero": ({"refine": [{"closing": {"radius": 0}}]}, ["refine[0].closing.radius", ">= 1"]),
    "radius-float": ({"refine": [{"opening": {"radius": 1.5}}]}, ["refine[0].opening.radius"]),
    "radius-str": (
        {"refine": ["fill_holes", {"erosion": {"radius": "2"}}]},
        ["refine[1].erosion.radius", "'2'"],
    ),
    "radius-unknown-param": (
        {"refine": [{"dilation": {"size": 2}}]},
        ["refine[0].dilation.size", "radius"],
    ),
    "radius-number": ({"refine": [{"dilation": 2}]}, ["refine[0].dilation", "mapping"]),
    "max-area-zero": (
        {"refine": [{"fill_holes": {"max_area": 0}}]},
        ["refine[0].fill_holes.max_area", ">= 1"],
    ),
    "fill-holes-unknown-param": (
        {"refine": [{"fill_holes": {"min_area": 3}}]},
        ["refine[0].fill_holes.min_area", "max_area"],
    ),
    "min-area-missing": (
        {"refine": [{"remove_small_objects": {}}]},
        ["refine[0].remove_small_objects.min_area", "required"],
    ),
    "min-area-negative": (
        {"refine": [{"remove_small_objects": {"min_area": -1}}]},
        ["refine[0].remove_small_objects.min_area", ">= 1"],
    ),
    "min-area-number": (
        {"refine": [{"remove_small_objects": 20}]},
        ["refine[0].remove_small_objects", "mapping", "min_area"],
    ),
    "two-refine-steps": (
        {"refine": [{"closing": {}, "opening": {}}]},
        ["refine[0]", "one step per list item"],
    ),
    "refine-extra-key": (
        {"refine": [{"closing": {"radius": 1}, "foo": 1}]},
        ["refine[0]", "'foo'", "'closing'"],
    ),
    "hsv-without-channel": (
        {"preprocess": [{"index": "hsv"}]},
        ["preprocess[0].index", "{hsv: v}"],
    ),
    "hsv-bad-channel": (
        {"preprocess": [{"index": {"hsv": "x"}}]},
        ["preprocess[0].index.hsv", "h, s, v", "'x'"],
    ),
    "median-radius-zero": (
        {"preprocess": [{"index": "exg"}, {"median": {"radius": 0}}]},
        ["preprocess[1].median.radius", ">= 1"],
    ),
    "smooth-without-sigma": ({"refine": [{"smooth": {}}]}, ["refine[0].smooth.sigma", "required"]),
    "equalize-with-parameters": (
        {"preprocess": [{"index": "exg"}, {"equalize": {"nbins": 64}}]},
        ["preprocess[1].equalize.nbins", "unknown parameter"],
    ),
    "clahe-without-kernel-size": (
        {"preprocess": [{"index": "exg"}, {"clahe": {"clip_limit": 0.01}}]},
        ["preprocess[1].clahe.kernel_size", "required"],
    ),
    "clahe-negative-clip": (
        {"preprocess": [{"index": "exg"}, {"clahe": {"kernel_size": 8, "clip_limit": -1}}]},
        ["preprocess[1].clahe.clip_limit", ">= 0"],
    ),
    "percentile-out-of-range": (
        {"threshold": {"percentile": 101}},
        ["threshold.percentile", "0 to 100", "101"],
    ),
    "split-not-last": (
        {"refine": [{"split": {"watershed": {}}}, {"opening": {}}]},
        ["refine[0].split", "last refine step"],
    ),
    "split-even-footprint": (
        {"refine": [{"split": {"watershed": {"footprint": 4}}}]},
        ["refine[0].split.watershed.footprint", "odd"],
    ),
    "split-without-method": (
        {"refine": [{"split": {}}]},
        ["refine[0].split", "watershed"],
    ),
    "unknown-threshold-method": (
        {"threshold": {"triangle": {}}},
        ["threshold", "'triangle'", "multi_otsu", "local"],
    ),
    "multi-otsu-keep-out-of-range": (
        {"threshold": {"multi_otsu": {"classes": 3, "keep": [3]}}},
        ["threshold.multi_otsu.keep[0]", "0..2"],
    ),
    "multi-otsu-without-keep": (
        {"threshold": {"multi_otsu": {"classes": 2}}},
        ["threshold.multi_otsu.keep", "required"],
    ),
    "multi-otsu-too-many-classes": (
        {"threshold": {"multi_otsu": {"classes": 9, "keep": [1]}}},
        ["threshold.multi_otsu.classes", "at most 5"],
    ),
    "local-even-block": (
        {"threshold": {"local": {"block_size": 10}}},
        ["threshold.local.block_size", "odd", "10"],
    ),
    "local-bad-method": (
        {"threshold": {"local": {"block_size": 11, "method": "max"}}},
        ["threshold.local.method", "gaussian, mean, median", "'max'"],
    ),
    "local-unknown-parameter": (
        {"threshold": {"local": {"block_size": 11, "radius": 3}}},
        ["threshold.local.radius", "unknown parameter", "block_size"],
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_validation_error_names_the_key(case):
    data, expected = BAD[case]
    with pytest.raises(ConfigError) as info:
        parse_pipeline(data)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert isinstance(info.value, TilerError)
    assert info.value.exit_code != 0


def test_load_pipeline_prefixes_the_file(tmp_path):
    path = tmp_path / "plants.yaml"
    path.write_text(
        "preprocess:\n  - index: exg\nrefine:\n  - closing: {radius: 1}\n  - blur: {}\n"
    )
    with pytest.raises(ConfigError, match=r"plants\.yaml: refine\[1\]: unknown step 'blur'"):
        load_pipeline(path)


def test_load_pipeline_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: pipeline file not found"):
        load_pipeline(path)


def test_load_pipeline_directory(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the pipeline file"):
        load_pipeline(tmp_path)


def test_load_pipeline_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"preprocess:\n  - index: exg  # \xe9t\xe9\xff\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml: cannot read the pipeline file"):
        load_pipeline(path)


def test_load_pipeline_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("preprocess:\n  - index: exg\nrefine: [closing\n  - opening: {\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert "(line " in message
    assert "\n" not in message


def test_load_pipeline_empty_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match=r"empty\.yaml: the pipeline must be a mapping"):
        load_pipeline(path)


# ---------------------------------------------------------------------------
# Bands, resolved against a file
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "alpha", "bands"),
    [
        (3, (), (1, 2, 3)),
        (4, (4,), (1, 2, 3)),
        (4, (), (1, 2, 3, 4)),
        (5, (2,), (1, 3, 4, 5)),
        (6, (1, 6), (2, 3, 4, 5)),
    ],
)
def test_default_bands_exclude_alpha(count, alpha, bands):
    p = load_pipeline(None)
    resolved = p.resolve_bands(count, alpha, source="field.tif")
    assert resolved.bands == bands
    assert p.bands is None  # the original is unchanged
    assert resolved.preprocess == p.preprocess and resolved.refine == p.refine
    assert resolved.threshold == p.threshold and resolved.connectivity == p.connectivity


def test_explicit_bands_are_kept_in_order():
    p = pipeline(bands=[3, 2, 1])
    assert p.resolve_bands(4, (4,)).bands == (3, 2, 1)
    # An explicitly listed alpha band that is not the mask (--mask nodata/none) is the user's
    # choice; as the mask, it is refused as a colour (test_alpha_band_never_takes_a_colour_role).
    assert pipeline(bands=[2, 3, 4]).resolve_bands(4, (4,), alpha_is_mask=False).bands == (2, 3, 4)


def test_every_band_alpha():
    p = pipeline(preprocess=[{"band": 1}])
    with pytest.raises(ConfigError, match=r"mask\.tif: every band is alpha.*'bands:'"):
        p.resolve_bands(2, (1, 2), source="mask.tif")


@pytest.mark.parametrize(("bands", "bad"), [([1, 2, 9], 9), ([4, 1, 2], 4)])
def test_band_out_of_range(bands, bad):
    with pytest.raises(ConfigError) as info:
        pipeline(bands=bands).resolve_bands(3, source="field.tif")
    message = str(info.value)
    for part in ("bands:", f"band {bad}", "out of range", "field.tif", "3 band(s)", "1..3"):
        assert part in message, message


@pytest.mark.parametrize("index", ["exg", "gray"])
@pytest.mark.parametrize(
    ("count", "alpha", "bands"), [(4, (), [1, 2]), (2, (), None), (3, (3,), None)]
)
def test_rgb_index_needs_three_bands(index, count, alpha, bands):
    p = pipeline(preprocess=[{"index": index}], bands=bands)
    with pytest.raises(ConfigError) as info:
        p.resolve_bands(count, alpha, source="field.tif")
    message = str(info.value)
    assert message.startswith(f"field.tif: preprocess[0].index: {index} needs 3 selected bands")
    assert "bands: [1, 2]" in message or "bands: [1]" in message
    assert f"({count} band(s) in the file)" in message


def test_ndvi_roles_must_be_selected():
    ndvi = [{"index": "ndvi"}]  # red: 1, nir: 4
    assert pipeline(preprocess=ndvi).resolve_bands(4).bands == (1, 2, 3, 4)
    with pytest.raises(ConfigError) as info:
        pipeline(preprocess=ndvi).resolve_bands(3, source="rgb.tif")
    message = str(info.value)
    for part in ("preprocess[0].nir", "band 4 does not exist", "rgb.tif", "3 band(s)", "exg"):
        assert part in message, message
    assert "'bands:'" not in message  # listing a band the file lacks cannot help
    # An alpha fourth band is not selected by default, and is never proposed as NIR.
    with pytest.raises(ConfigError, match=r"preprocess\[0\]\.nir: band 4 is the file's alpha"):
        pipeline(preprocess=ndvi).resolve_bands(4, (4,), source="rgba.tif")
    with pytest.raises(ConfigError, match=r"preprocess\[0\]\.red: band 1 is not among"):
        pipeline(preprocess=ndvi, bands=[2, 4]).resolve_bands(4, source="cir.tif")
    roles = [{"index": "ndvi", "red": 3, "nir": 5}]
    assert pipeline(preprocess=roles, bands=[5, 3]).resolve_bands(5).bands == (5, 3)


def test_band_index_is_a_position_in_the_selected_bands():
    assert pipeline(preprocess=[{"band": 3}]).resolve_bands(3).index == Index("band", band=3)
    assert pipeline(preprocess=[{"band": 2}], bands=[4, 1]).resolve_bands(4).bands == (4, 1)
    with pytest.raises(ConfigError) as info:
        pipeline(preprocess=[{"band": 4}]).resolve_bands(3, source="field.tif")
    message = str(info.value)
    assert message.startswith("field.tif: preprocess[0].band: 4 is out of range")
    assert "3 band(s) are selected (1..3)" in message
    # k counts selected bands, not the file's: band 3 of two selected bands is out of range.
    with pytest.raises(ConfigError, match=r"preprocess\[0\]\.band: 3 is out of range.*\(1\.\.2\)"):
        pipeline(preprocess=[{"band": 3}], bands=[2, 3]).resolve_bands(5)


@pytest.mark.parametrize("listed", [None, [1, 2, 3, 4]])
def test_alpha_band_is_never_proposed_or_taken_as_nir(listed):
    """Issue 19: NDVI on RGBA advised listing band 4 (alpha) as NIR, then ran on alpha."""
    p = pipeline(preprocess=[{"index": "ndvi"}], bands=listed)  # red 1, nir 4
    with pytest.raises(ConfigError) as info:
        p.resolve_bands(4, (4,), source="rgba.tif")
    message = str(info.value)
    assert message.startswith("rgba.tif: preprocess[0].nir: band 4 is the file's alpha band")
    assert "set nir: to its near-infrared band (bands that are not alpha: 1, 2, 3)" in message
    assert "\n" not in message
    # The way through for NIR tagged alpha by mistake: say the tag is no mask, and list it.
    assert "--mask nodata" in message
    if listed:
        assert p.resolve_bands(4, (4,), alpha_is_mask=False).bands == tuple(listed)
    else:  # not the mask, but not listed either: still not taken
        with pytest.raises(ConfigError, match="is near-infrared tagged alpha by mistake, list it"):
            p.resolve_bands(4, (4,), alpha_is_mask=False)


@pytest.mark.parametrize(
    ("preprocess", "bands", "colour"),
    [([{"index": "exg"}], [2, 3, 4], "blue"), ([{"band": 1}], [4, 1], "its values")],
)
def test_alpha_band_never_takes_a_colour_role(preprocess, bands, colour):
    p = pipeline(preprocess=preprocess, bands=bands)
    with pytest.raises(ConfigError) as info:
        p.resolve_bands(4, (4,), source="rgba.tif")
    message = str(info.value)
    assert message.startswith("rgba.tif: bands: band 4 is the file's alpha band")
    assert f"would read as {colour}" in message and "leave it out of 'bands:'" in message
    assert p.resolve_bands(4, (4,), alpha_is_mask=False).bands == tuple(bands)
