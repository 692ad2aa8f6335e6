"""The command line: its success path and its error contract (DESIGN.md section 5).

Every error a user can fix gives one line on stderr that names the file (or the
pipeline key), a non-zero exit status, no traceback, and no output that looks
complete. The CLI runs as a real subprocess, because the contract is about
stderr, exit status and tracebacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
import zarr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from tiler import __version__
from tiler.config import DEFAULT_PIPELINE_YAML, load_pipeline, parse_pipeline
from tiler.io.objects_table import OBJECT_COLUMNS

OUTPUTS = ["labels.zarr", "objects.parquet", "run.json"]
# 5 cm pixels in UTM 11N. Given explicitly: the factory's default goes through
# rasterio's from_origin, which warns under affine 3 (and warnings are errors here).
TRANSFORM = Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)
BLOBS = [(12, 15, 6), (40, 20, 8), (25, 50, 7), (50, 58, 5)]  # row, col, radius


def field_image(height: int = 60, width: int = 70, bands: int = 3) -> np.ndarray:
    """Brown soil with round green plants: the default pipeline finds one object per blob."""
    image = np.empty((bands, height, width), np.uint8)
    image[:3] = np.array([120, 90, 60], np.uint8)[:, None, None]
    image[3:] = 50
    rr, cc = np.mgrid[:height, :width]
    for r, c, radius in BLOBS:
        disk = (rr - r) ** 2 + (cc - c) ** 2 <= radius**2
        image[:3, disk] = np.array([60, 170, 50], np.uint8)[:, None]
    return image


def tiler(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m tiler.cli ARGS`` in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "tiler.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Non-zero exit, no traceback, exactly one ``tiler: error:`` line naming ``names``."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("tiler: error: "), line
    for name in names:
        assert name in line, f"{name!r} not in {line!r}"
    return line


def assert_not_complete(dst: Path) -> None:
    """DST is absent, or holds nothing that could pass for a finished run."""
    if dst.exists():
        present = {p.name for p in dst.iterdir()}
        assert not present & set(OUTPUTS), present


@pytest.fixture
def tif(geotiff):
    """The ``geotiff`` factory with an explicit transform."""

    def make(image: np.ndarray, name: str | None = None, **kwargs) -> Path:
        kwargs.setdefault("transform", TRANSFORM)
        return geotiff(image, name=name, **kwargs)

    return make


def read_manifest(dst: Path) -> dict:
    return json.loads((dst / "run.json").read_text())


def read_labels(dst: Path) -> np.ndarray:
    return zarr.open_group(str(dst / "labels.zarr"), mode="r")["labels"][:]


# ---------------------------------------------------------------------------
# Bad input files
# ---------------------------------------------------------------------------


def _missing(tmp_path, tif):
    return tmp_path / "missing.tif"


def _directory(tmp_path, tif):
    path = tmp_path / "folder.tif"
    path.mkdir()
    return path


def _empty(tmp_path, tif):
    path = tmp_path / "empty.tif"
    path.touch()
    return path


def _text(tmp_path, tif):
    path = tmp_path / "notes.tif"
    path.write_text("this is not a raster\n")
    return path


def _pil(fmt: str):
    def make(tmp_path, tif):
        from PIL import Image

        path = tmp_path / f"{fmt.lower()}-renamed.tif"
        Image.fromarray(np.moveaxis(field_image(), 0, -1)).save(path, format=fmt)
        return path

    return make


def _georeferenced_png(tmp_path, tif):
    """A georeferenced raster in another GDAL format: the GTiff driver alone must refuse it."""
    import rasterio

    path = tmp_path / "georef-png.tif"
    image = field_image()
    with rasterio.open(
        path,
        "w",
        driver="PNG",
        count=3,
        height=60,
        width=70,
        dtype="uint8",
        crs="EPSG:32611",
        transform=TRANSFORM,
    ) as ds:
        ds.write(image)
    return path


def _truncated(tmp_path, tif):
    """An uncompressed tiled GeoTIFF cut in half: the header opens, the tiles do not read."""
    full = tif(field_image(200, 200), name="full.tif", compress=None, blocksize=64)
    path = tmp_path / "truncated.tif"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_INPUTS = {
    "missing": (_missing, "no such file"),
    "directory": (_directory, "directory"),
    "empty": (_empty, "empty"),
    "text": (_text, "GeoTIFF"),
    "png": (_pil("PNG"), "GeoTIFF"),
    "jpeg": (_pil("JPEG"), "GeoTIFF"),
    "georeferenced-png": (_georeferenced_png, "GeoTIFF"),
    "truncated": (_truncated, "window"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gives_one_line_naming_the_file(case, tmp_path, tif):
    make, what = BAD_INPUTS[case]
    src = make(tmp_path, tif)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "--scheduler", "sync", "--chunk-size", 64, "-q", cwd=tmp_path)
    assert_one_line_error(proc, src.name, what)
    assert proc.stdout == ""
    assert_not_complete(dst)


@pytest.mark.parametrize("what", ["no-crs", "identity-transform"])
def test_input_without_georeferencing_is_refused(what, tmp_path, tif):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        if what == "no-crs":
            src = tif(field_image(), name="no-crs.tif", crs=None)
        else:
            src = tif(field_image(), name="pixels-only.tif", transform=Affine.identity())
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "--scheduler", "sync", cwd=tmp_path)
    expected = "no CRS" if what == "no-crs" else "no geotransform"
    assert_one_line_error(proc, src.name, expected, "--pixel-only")
    assert_not_complete(dst)


# ---------------------------------------------------------------------------
# The output directory
# ---------------------------------------------------------------------------


def test_non_empty_destination_needs_overwrite(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "notes.txt").write_text("my notes\n")
    (dst / "sub").mkdir()
    (dst / "sub" / "keep.bin").write_bytes(b"\x00\x01")

    # Files tiler did not write: refused, --overwrite or not (see test_overwrite.py).
    for flags in ((), ("--overwrite",)):
        refused = tiler("run", src, dst, "--scheduler", "sync", *flags, cwd=tmp_path)
        assert_one_line_error(refused, "out", "notes.txt, sub/", "did not write")
        assert sorted(p.name for p in dst.iterdir()) == ["notes.txt", "sub"]
        assert (dst / "notes.txt").read_text() == "my notes\n"
        assert (dst / "sub" / "keep.bin").read_bytes() == b"\x00\x01"

    (dst / "notes.txt").unlink()
    (dst / "sub" / "keep.bin").unlink()
    (dst / "sub").rmdir()
    tiler("run", src, dst, "--scheduler", "sync", "-q", cwd=tmp_path)
    replaced = tiler("run", src, dst, "--scheduler", "sync", "--overwrite", "-q", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(os.listdir(dst)) == OUTPUTS
    assert read_manifest(dst)["complete"] is True
    manifest = (dst / "run.json").read_bytes()

    again = tiler("run", src, dst, "--scheduler", "sync", cwd=tmp_path)
    assert_one_line_error(again, "--overwrite")
    assert (dst / "run.json").read_bytes() == manifest


def test_failed_overwrite_leaves_nothing_that_looks_complete(tmp_path, tif):
    full = tif(field_image(200, 200), name="full.tif", compress=None, blocksize=64)
    src = tmp_path / "truncated.tif"
    src.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    dst = tmp_path / "out"
    (dst / "labels.zarr").mkdir(parents=True)
    (dst / "objects.parquet").write_bytes(b"old table")
    (dst / "run.json").write_text(json.dumps({"complete": True, "object_count": 7}))

    proc = tiler(
        "run",
        src,
        dst,
        "--scheduler",
        "sync",
        "--chunk-size",
        64,
        "--overwrite",
        "-q",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, src.name)
    assert not (dst / "run.json").exists()
    assert_not_complete(dst)


def test_destination_equal_to_input_is_refused(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    before = src.read_bytes()
    proc = tiler("run", src, src, "--scheduler", "sync", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "field.tif")
    assert src.read_bytes() == before


def test_destination_containing_the_input_is_refused_even_with_overwrite(tmp_path, tif):
    folder = tmp_path / "survey"
    folder.mkdir()
    src = tif(field_image(), name="survey/field.tif")
    before = src.read_bytes()
    proc = tiler("run", src, folder, "--scheduler", "sync", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "survey", "input")
    assert sorted(os.listdir(folder)) == ["field.tif"]
    assert src.read_bytes() == before


# ---------------------------------------------------------------------------
# Invalid pipeline files
# ---------------------------------------------------------------------------

UNKNOWN_STEP = """\
preprocess:
  - index: exg
refine:
  - closing: {radius: 1}
  - blur: {radius: 2}
"""
BAD_SIGMA = """\
preprocess:
  - index: exg
  - gaussian: {sigma: abc}
"""
UNKNOWN_KEY = """\
preprocess:
  - index: exg
colour: green
"""
INVALID_YAML = "preprocess: [index: exg\n  - refine: [\n"
BAND_OUT_OF_RANGE = "bands: [1, 2, 9]\npreprocess:\n  - index: exg\n"
NDVI_WITHOUT_NIR = "preprocess:\n  - index: ndvi\n"

# name -> (file content or None for a missing file, substrings of the error line)
BAD_PIPELINES = {
    "unknown-step": (
        UNKNOWN_STEP,
        [
            "pipeline.yaml",
            "refine[1]",
            "'blur'",
            "erosion, dilation, opening, closing, smooth, fill_holes, remove_small_objects, split",
        ],
    ),
    "bad-parameter-type": (BAD_SIGMA, ["pipeline.yaml", "preprocess[1].gaussian.sigma", "'abc'"]),
    "unknown-top-level-key": (
        UNKNOWN_KEY,
        ["pipeline.yaml", "colour", "unknown key", "bands, preprocess, threshold"],
    ),
    "missing-file": (None, ["pipeline.yaml", "not found"]),
    "invalid-yaml": (INVALID_YAML, ["pipeline.yaml", "YAML", "line"]),
    "empty-file": ("", ["pipeline.yaml", "mapping"]),
    "band-out-of-range": (BAND_OUT_OF_RANGE, ["bands", "band 9", "field.tif", "3 band(s)"]),
    "ndvi-without-nir": (NDVI_WITHOUT_NIR, ["preprocess[0].nir", "band 4", "field.tif"]),
}


@pytest.mark.parametrize("case", BAD_PIPELINES, ids=list(BAD_PIPELINES))
def test_invalid_pipeline_gives_one_line_naming_the_key(case, tmp_path, tif):
    content, expected = BAD_PIPELINES[case]
    src = tif(field_image(), name="field.tif")
    config = tmp_path / "pipeline.yaml"
    if content is not None:
        config.write_text(content)
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "-c", config, "--scheduler", "sync", cwd=tmp_path)
    assert_one_line_error(proc, *expected)
    assert proc.returncode == 2
    assert_not_complete(dst)


def test_pipeline_path_that_is_a_directory(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    (tmp_path / "configs").mkdir()
    proc = tiler(
        "run",
        src,
        tmp_path / "out",
        "--config",
        tmp_path / "configs",
        "--scheduler",
        "sync",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "configs", "pipeline file")
    assert_not_complete(tmp_path / "out")


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


def test_unknown_scheduler_gives_one_line(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "--scheduler", "bogus", "-q", cwd=tmp_path)
    assert_one_line_error(proc, "scheduler", "'bogus'", "local, threads, sync")
    assert not dst.exists()


def test_unknown_scheduler_is_refused_before_a_previous_run_is_touched(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    dst = tmp_path / "out"
    assert tiler("run", src, dst, "--scheduler", "sync", "-q", cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}
    proc = tiler("run", src, dst, "--scheduler", "bogus", "--overwrite", "-q", cwd=tmp_path)
    assert_one_line_error(proc, "scheduler")
    assert {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()} == before


def test_truncated_input_on_the_local_cluster_is_one_line(tmp_path, tif):
    """The error crosses the process boundary of a distributed worker intact."""
    src = _truncated(tmp_path, tif)
    dst = tmp_path / "out"
    args = ("--scheduler", "local", "--workers", "1", "--chunk-size", 64, "-q")
    proc = tiler("run", src, dst, *args, cwd=tmp_path)
    line = assert_one_line_error(proc, src.name, "window rows")
    assert "previous exception" not in line
    assert not dst.exists()


def test_a_failed_run_leaves_nothing_and_can_be_retried(tmp_path, tif):
    good = tif(field_image(), name="field.tif")
    bad = _truncated(tmp_path, tif)
    dst = tmp_path / "out"
    dst.mkdir()
    proc = tiler("run", bad, dst, "--scheduler", "sync", "--chunk-size", 64, "-q", cwd=tmp_path)
    assert_one_line_error(proc, bad.name)
    assert list(dst.iterdir()) == []  # the work folder and partial store are gone
    proc = tiler("run", good, dst, "--scheduler", "sync", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(dst)) == OUTPUTS


def test_usage_errors_are_short(tmp_path):
    proc = tiler("run", "--chunk-size", 0, "a.tif", "out", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--chunk-size" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_and_version(tmp_path):
    script = Path(sys.executable).with_name("tiler")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tiler.cli"]
    top = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith("Usage:")
    for name in ("run", "pipeline", "demo"):
        assert name in top.stdout

    sub = tiler("run", "--help", cwd=tmp_path)
    assert sub.returncode == 0, sub.stderr
    assert "Usage: tiler run [OPTIONS] SRC DST" in sub.stdout
    options = ("--config", "--chunk-size", "--workers", "--scheduler", "--overwrite", "--quiet")
    for option in options:
        assert option in sub.stdout

    version = tiler("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert __version__ in version.stdout


def test_pipeline_prints_the_default_pipeline(tmp_path):
    proc = tiler("pipeline", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DEFAULT_PIPELINE_YAML
    assert parse_pipeline(yaml.safe_load(proc.stdout)) == load_pipeline(None)


# ---------------------------------------------------------------------------
# Success
# ---------------------------------------------------------------------------


def test_run_writes_exactly_the_outputs_and_a_summary(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    dst = tmp_path / "out"
    proc = tiler("run", src, dst, "--scheduler", "sync", "--chunk-size", 32, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    # DST holds the three outputs and nothing else: no work folder, no partial files.
    assert sorted(os.listdir(dst)) == OUTPUTS
    leftovers = [p for p in dst.rglob("*") if "partial" in p.name or "tiler-work" in p.name]
    assert leftovers == []

    manifest = read_manifest(dst)
    assert manifest["complete"] is True
    labels = read_labels(dst)
    table = pq.read_table(dst / "objects.parquet")
    n = manifest["object_count"]
    assert n == len(BLOBS)
    assert n == table.num_rows == int(labels.max())
    assert labels.shape == (60, 70)
    assert zarr.open_group(str(dst / "labels.zarr"), mode="r")["labels"].chunks == (32, 32)
    assert set(np.unique(labels)) == set(range(n + 1))
    assert table.column("label").to_pylist() == list(range(1, n + 1))
    assert sum(table.column("area_px").to_pylist()) == int((labels > 0).sum())
    assert set(OBJECT_COLUMNS) | {"geometry"} <= set(table.column_names)
    assert manifest["chunking"]["chunk_shape"] == [32, 32]
    assert manifest["input"]["path"] == str(src.resolve())

    # The summary: one "key: value" line each.
    summary = [line.split(":", 1) for line in proc.stdout.splitlines()]
    keys = [key for key, _ in summary]
    assert keys == [
        "pipeline", "objects", "threshold", "image", "time", "labels", "table", "manifest", "GIS"
    ]  # fmt: skip
    pipeline, *values = [value.strip() for _, value in summary]
    assert pipeline == "default (`tiler pipeline`)"
    assert int(values[0]) == n
    assert float(values[1]) == pytest.approx(manifest["threshold"]["value"], rel=1e-5)
    assert values[2].startswith("60 x 70 px") and "6 tile(s)" in values[2]
    assert values[3].endswith("MP/s)")
    assert values[4:7] == [str(dst / name) for name in OUTPUTS]
    assert values[7].startswith(f"tiler export {dst} --cog labels.tif")


def test_local_cluster_matches_threads(tmp_path, tif):
    src = tif(field_image(), name="field.tif")
    runs = {}
    for scheduler in ("threads", "local"):
        dst = tmp_path / scheduler
        args = ["--scheduler", scheduler, "--chunk-size", 32]
        if scheduler == "local":
            args += ["--workers", 1, "--threads-per-worker", 1]
        proc = tiler("run", src, dst, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert sorted(os.listdir(dst)) == OUTPUTS
        assert read_manifest(dst)["complete"] is True
        runs[scheduler] = (read_labels(dst), pq.read_table(dst / "objects.parquet"), proc.stderr)
    labels, table, log = runs["local"]
    np.testing.assert_array_equal(labels, runs["threads"][0])
    assert table.drop_columns(["geometry"]).equals(runs["threads"][1].drop_columns(["geometry"]))
    assert "1 thread(s) in this process, dashboard http://127.0.0.1:" in log
    assert "0.0.0.0" not in log
