"""Killed runs and `tiler run --resume`, with real `tiler run` processes killed by signals."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_cluster import cluster, environment, output_bytes, tiler, tiler_command  # noqa: F401

from tiler.io.output import JOURNAL_IDENTITY, LABELS, MANIFEST, OBJECTS, WORKDIR
from tiler.journal import PassLog
from tiler.synthetic import SyntheticField, write_geotiff
from tiler.tiling import Window

CHUNK = 48  # 19 x 17 = 323 tiles a pass: long enough to be caught part-way


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("field") / "field.tif"
    return write_geotiff(SyntheticField(height=900, width=800, seed=5), path, blocksize=64)


@pytest.fixture(scope="module")
def reference(field, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("reference") / "out"
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "-q")
    assert proc.returncode == 0, proc.stderr
    return dst


def journal_logs(dst: Path) -> list[Path]:
    return sorted((dst / WORKDIR / "journal").glob("*.log"))


def interrupt(
    src: Path, dst: Path, *args: object, passes: int = 4, sig=signal.SIGKILL
) -> subprocess.Popen:
    """Start `tiler run` and send it ``sig`` once its ``passes``-th pass has finished tiles."""
    run = subprocess.Popen(
        tiler_command(src, dst, "--chunk-size", CHUNK, "-q", *args),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (len(logs := journal_logs(dst)) >= passes and logs[-1].stat().st_size > 0):
        assert run.poll() is None, f"the run ended before it could be interrupted: {run.stderr}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    run.send_signal(sig)
    run.wait(timeout=60)
    return run


def assert_not_complete(dst: Path) -> None:
    assert not (dst / MANIFEST).exists()
    assert not (dst / LABELS).exists()
    assert not (dst / OBJECTS).exists()


@pytest.mark.parametrize("scheduler", ["sync", "local", "tcp"])
def test_a_killed_run_resumes_with_only_its_unfinished_tiles(
    field, reference, tmp_path, scheduler, request
):
    """SIGKILL `tiler run` part-way; with "tcp" the scheduler and its workers live on, and
    the tasks the dead client left in flight may still write their chunks meanwhile."""
    if scheduler == "tcp":
        scheduler = request.getfixturevalue("cluster").address
    dst = tmp_path / "out"
    run = interrupt(field, dst, "--scheduler", scheduler)
    assert run.returncode == -signal.SIGKILL
    assert_not_complete(dst)
    # What the journal holds now is what the second attempt may reuse (a record the kill
    # cut short is dropped, as --resume drops it).
    finished = {log.stem: len(PassLog.load(log).done) for log in journal_logs(dst)}
    assert sum(finished.values()) > 0

    proc = tiler(field, dst, "--scheduler", scheduler, "--chunk-size", CHUNK, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resuming: attempt 2" in proc.stderr
    assert output_bytes(dst) == output_bytes(reference)
    resume = json.loads((dst / MANIFEST).read_text())["resume"]
    assert resume["attempt"] == 2
    assert resume["tiles_reused"] == sum(finished.values())
    assert resume["tiles_computed"] == resume["tiles"] - resume["tiles_reused"]
    assert 0 < resume["tiles_computed"] < resume["tiles"]
    for stem, count in finished.items():  # the journal's n-th log is the n-th pass
        assert resume["passes"][int(stem[:3])]["reused"] == count
    assert resume["passes"][0]["reused"] == resume["passes"][0]["tiles"]
    assert sorted(p.name for p in dst.iterdir()) == [LABELS, OBJECTS, MANIFEST]


def test_ctrl_c_keeps_the_work_for_resume(field, reference, tmp_path):
    dst = tmp_path / "out"
    run = interrupt(field, dst, "--scheduler", "sync", passes=2, sig=signal.SIGINT)
    assert run.returncode == 130
    # -q (interrupt's) silences the progress lines, never how to finish the run. (The empty
    # line is click's, on KeyboardInterrupt.)
    assert [line for line in run.stderr.read().splitlines() if line] == [
        f"  {dst}: unfinished; run again with --resume to continue",
        "tiler: interrupted",
    ]
    assert_not_complete(dst)
    assert journal_logs(dst)
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert output_bytes(dst) == output_bytes(reference)


def changed_pipeline(tmp_path: Path) -> Path:
    from tiler.config import DEFAULT_PIPELINE_YAML

    config = yaml.safe_load(DEFAULT_PIPELINE_YAML)
    config["refine"][-1] = {"remove_small_objects": {"min_area": 25}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_resume_refuses_a_different_run_and_says_what_changed(field, tmp_path):
    src = tmp_path / "field.tif"
    src.write_bytes(field.read_bytes())
    dst = tmp_path / "out"
    interrupt(src, dst, "--scheduler", "sync", passes=2)
    before = {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}

    # An option given that differs from the run's is refused, naming it and both values.
    attempts = {
        "--config/--preset differs from the run's pipeline (refine": [
            "--config",
            changed_pipeline(tmp_path),
        ],
        "--chunk-size 64 x 64 differs from the run's 48 x 48": ["--chunk-size", 64],
        "--mask 'alpha' differs from the run's 'dataset'": ["--mask", "alpha"],
        "--assume-crs/--pixel-only 'pixel only' differs from the run's 'from the file'": [
            "--pixel-only"
        ],
    }
    for words, args in attempts.items():
        base = ("--scheduler", "sync", "--resume", "-q", "--chunk-size", CHUNK)
        proc = tiler(src, dst, *base, *args)
        assert proc.returncode == 3, proc.stderr
        assert proc.stderr.startswith(f"tiler: error: {dst}: cannot resume: {words}"), proc.stderr
        assert proc.stderr.count("\n") == 1 and "--overwrite" in proc.stderr

    write_geotiff(SyntheticField(height=900, width=800, seed=6), src, blocksize=64)
    proc = tiler(src, dst, "--scheduler", "sync", "--resume", "-q", "--chunk-size", CHUNK)
    assert proc.returncode == 3
    assert "cannot resume: the input changed (fingerprint_sha256" in proc.stderr
    # Nothing was touched by the refusals.
    assert {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()} == before


def test_resume_of_a_complete_run_changes_nothing(reference, field, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    for path in reference.rglob("*"):
        target = dst / path.relative_to(reference)
        target.mkdir(exist_ok=True) if path.is_dir() else target.write_bytes(path.read_bytes())
    before = {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "already complete; nothing to resume" in proc.stderr
    assert {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()} == before
    changed = changed_pipeline(tmp_path)
    proc = tiler(field, dst, "--scheduler", "sync", "--resume", "--config", changed)
    assert proc.returncode == 3
    assert "cannot resume: --config/--preset differs from the run's pipeline" in proc.stderr


def test_resume_takes_the_runs_settings_from_its_journal(field, reference, tmp_path):
    """Ctrl-C, then `--resume` alone: the chunk size and input options are the run's."""
    dst = tmp_path / "out"
    run = interrupt(field, dst, "--scheduler", "sync", "--mask", "alpha", sig=signal.SIGINT)
    assert run.returncode == 130
    proc = tiler(field, dst, "--scheduler", "sync", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resuming: attempt 2" in proc.stderr
    assert output_bytes(dst) == output_bytes(reference)  # the alpha band is the dataset mask
    manifest = json.loads((dst / MANIFEST).read_text())
    assert manifest["chunking"]["chunk_shape"] == [CHUNK, CHUNK]
    assert manifest["input"]["options"]["mask"] == "alpha"
    assert 0 < manifest["resume"]["tiles_reused"] < manifest["resume"]["tiles"]
    # Complete: `--resume` alone finds it so.
    proc = tiler(field, dst, "--scheduler", "sync", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "already complete; nothing to resume" in proc.stderr


def test_a_plain_rerun_into_an_unfinished_run_asks_for_resume_or_overwrite(
    field, reference, tmp_path
):
    dst = tmp_path / "out"
    run = interrupt(field, dst, "--scheduler", "sync", passes=2, sig=signal.SIGINT)
    # (once, on a loaded machine, the rerun below exited 0: say which side failed if again)
    assert run.returncode == 130, run.stderr.read()
    assert (dst / JOURNAL_IDENTITY).is_file(), sorted(p.name for p in dst.rglob("*"))
    before = {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "-q")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == (
        f"tiler: error: {dst}: holds an unfinished run; pass --resume to continue it, "
        "or --overwrite to start again\n"
    )
    assert {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()} == before
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert output_bytes(dst) == output_bytes(reference)
    assert json.loads((dst / MANIFEST).read_text())["resume"]["attempt"] == 1


def test_resume_of_nothing_is_a_first_run(field, reference, tmp_path):
    dst = tmp_path / "out"
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", CHUNK, "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert output_bytes(dst) == output_bytes(reference)
    assert json.loads((dst / MANIFEST).read_text())["resume"]["attempt"] == 1


def test_stores_resumed_into_are_checked_before_anything_is_written(tmp_path):
    """A work store must have this run's shape, chunks and dtype and only allowed codecs."""
    import warnings

    import zarr
    from zarr.codecs import numcodecs

    from tiler.errors import OutputError
    from tiler.io.label_store import create_mask_store

    path = tmp_path / "stage0.zarr"
    create_mask_store(path, (10, 12), (4, 4))
    assert create_mask_store(path, (10, 12), (4, 4)) == str(path)  # reused as it is
    wrong = {
        "shape is (10, 12), this run makes (10, 13)": ((10, 13), (4, 4)),
        "chunks is (4, 4), this run makes (5, 4)": ((10, 12), (5, 4)),
    }
    for words, (shape, chunks) in wrong.items():
        with pytest.raises(OutputError, match=re.escape(words)):
            create_mask_store(path, shape, chunks)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: numcodecs codecs are outside the v3 spec
        zarr.create_array(
            str(tmp_path / "odd.zarr"), shape=(10, 12), chunks=(4, 4), dtype=bool,
            compressors=[numcodecs.Zlib(level=1)],
        )  # fmt: skip
    with pytest.raises(OutputError, match=r"codec\(s\) numcodecs.zlib not allowed"):
        create_mask_store(tmp_path / "odd.zarr", (10, 12), (4, 4))
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(OutputError, match="not a Zarr v3 array tiler wrote"):
        create_mask_store(tmp_path / "junk.zarr", (10, 12), (4, 4))


def test_label_stores_of_this_and_the_former_codecs_are_resumed_into_and_sharded_ones_not(
    tmp_path,
):
    """labels.zarr is zstd level 1 now; one written before (zarr's default, zstd level 0) is
    still resumed into, in its own codecs. A sharded one (tiler never writes it: the codec
    that would hold other codecs inside) is refused in one line naming it."""
    import zarr
    from zarr.codecs import ZstdCodec

    from tiler.errors import OutputError
    from tiler.io.label_store import LABEL_COMPRESSORS, check_store, create_label_store

    shape, chunks, dtype = (10, 12), (4, 4), np.dtype(np.uint32)
    path = create_label_store(tmp_path / "now", shape, chunks, dtype, "", (1, 0, 0, 0, -1, 0))
    assert zarr.open_array(path).compressors == LABEL_COMPRESSORS
    check_store(Path(path), shape, chunks, dtype)
    for name, layout in {
        "former": {"chunks": chunks},
        "sharded": {"chunks": (2, 2), "shards": chunks},
    }.items():
        zarr.create_array(
            str(tmp_path / name), shape=shape, dtype=dtype, fill_value=0, **layout,
            compressors=[ZstdCodec(level=0)],
        )  # fmt: skip
    check_store(tmp_path / "former", shape, chunks, dtype)
    # A shard is the chunk of the chunk grid; the codec holding the inner chunks is refused.
    with pytest.raises(OutputError, match=r"sharded: .* codec\(s\) sharding_indexed not allowed"):
        check_store(tmp_path / "sharded", shape, chunks, dtype)


def test_values_recomputed_on_resume_are_kept_for_the_passes_after(tmp_path):
    """A resumed run's range pass comes from the journal, its value cache died with the run
    before: the histogram pass computes each tile's values again, and keeps them, so the mask
    pass does not compute them a third time (a resume cost more than a clean run)."""
    from tiler import cache as value_cache
    from tiler.config import load_pipeline
    from tiler.io.open_raster import open_geotiff
    from tiler.values import cache_values, cached_histogram

    path = write_geotiff(SyntheticField(height=96, width=80, seed=2), tmp_path / "f.tif")
    source = open_geotiff(path)
    pipeline = load_pipeline(None).resolve_bands(source.count, source.alpha_bands)
    window, halo = Window(0, 48, 0, 40), 2
    outer = Window(0, 50, 0, 42)
    fresh, resumed = value_cache.memory_cache(), value_cache.memory_cache()
    try:
        vmin, vmax, _ = cache_values(source, pipeline, window, halo, fresh)  # a clean run's
        counts = cached_histogram(source, pipeline, window, halo, resumed, vmin, vmax)
        assert counts.sum() > 0
        kept, expected = value_cache.get(resumed, outer), value_cache.get(fresh, outer)
        assert kept is not None
        assert all(np.array_equal(a, b) for a, b in zip(kept, expected, strict=True))
    finally:
        value_cache.drop(fresh)
        value_cache.drop(resumed)


def test_a_preset_in_ground_units_resumes_and_records_its_pixels(field, tmp_path):
    """row-crop-plants (sizes in cm) killed part-way resumes to the bytes of an uninterrupted
    run; run.json records each size as written and the pixels it became at 2.5 cm."""
    preset = ("--preset", "row-crop-plants", "--scheduler", "sync")
    whole = tmp_path / "whole"
    proc = tiler(field, whole, *preset, "--chunk-size", CHUNK, "-q")
    assert proc.returncode == 0, proc.stderr
    dst = tmp_path / "out"
    run = interrupt(field, dst, *preset, passes=2)
    assert run.returncode == -signal.SIGKILL
    assert_not_complete(dst)
    proc = tiler(field, dst, *preset, "--chunk-size", CHUNK, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resuming: attempt 2" in proc.stderr
    assert output_bytes(dst) == output_bytes(whole)
    manifest = json.loads((dst / MANIFEST).read_text())
    assert manifest["resume"]["tiles_reused"] > 0
    assert manifest["units"]["pixel_size_m"] == [0.025, 0.025]
    assert {p["key"]: (p["written"], p["pixels"]) for p in manifest["units"]["parameters"]} == {
        "preprocess[1].gaussian.sigma": ("2.5 cm", 1.0),
        "refine[0].closing.radius": ("2.5 cm", 1),
        "refine[1].opening.radius": ("2.5 cm", 1),
        "refine[3].remove_small_objects.min_area": ("200 cm2", 32),
        "refine[4].split.watershed.min_distance": ("17.5 cm", 7),
        "refine[4].split.watershed.halo": ("80 cm", 32),
    }
    assert manifest["config"]["serves"]["max"] == "8 cm"
    assert manifest["config"]["refine"][4]["split"]["watershed"]["halo"] == 32
