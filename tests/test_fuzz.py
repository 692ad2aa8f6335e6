"""Hostile input files (issue 7): a bounded fuzz run of ``tiler run`` on mutated GeoTIFFs.

The harness is tests/fuzz_tiff.py: it mutates small valid GeoTIFFs (byte flips,
truncations, absurd tag values, garbage GeoKeys, structured cases) and runs
each through the command line in a subprocess under a wall-time and a memory
limit. Every case must end in a complete run or in one clean ``tiler: error:``
line naming the file; a hang, a crash, a traceback or a noisy error fails, with
the command that replays the case. ``make fuzz`` runs a longer campaign.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fuzz_tiff import (
    BASES,
    FAILURES,
    GDAL_NODATA,
    GEO_KEY_DIRECTORY,
    HEIGHT,
    IMAGE_WIDTH,
    KINDS,
    LONG,
    STRUCTURED,
    WIDTH,
    Case,
    Tiff,
    _limit,
    control_case,
    judge,
    make_bases,
    make_case,
    run_case,
    run_cases,
    summary,
)

SEED = 7
CASES = len(KINDS) * len(BASES)  # 48: every kind of mutation of every base file, once
JOBS = min(3, (os.cpu_count() or 1) + 1)
CONTROLS = ["tiled-deflate", "bigtiff-striped-raw"]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, bytes]:
    return make_bases(tmp_path_factory.mktemp("fuzz-bases"))


@pytest.fixture(scope="module")
def campaign(bases, tmp_path_factory):
    """The unmutated controls and the fuzz cases, run together in one pool."""
    workdir = tmp_path_factory.mktemp("fuzz-cases")
    thunks = [lambda b=b: control_case(b, bases) for b in CONTROLS]
    thunks += [lambda i=i: make_case(SEED, i, bases) for i in range(CASES)]
    outcomes = run_cases(thunks, workdir, jobs=JOBS, timeout=60, memory_mb=2048)
    return workdir, outcomes[: len(CONTROLS)], outcomes[len(CONTROLS) :]


# ---------------------------------------------------------------------------
# The harness itself: parsing, rewriting, drawing cases, judging outcomes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BASES))
def test_parser_reads_the_base_files(bases, name):
    t = Tiff.parse(bases[name])
    assert t.big == name.startswith("bigtiff")
    assert t.tiled == ("-tiled-" in f"-{name}")
    assert t.values(IMAGE_WIDTH) == [WIDTH]
    assert t.values(257) == [HEIGHT]
    assert t.values(258) == [8, 8, 8]
    assert t.values(277) == [3]
    blocks = 30 if t.tiled else 10  # 16 x 16 tiles, or strips of 8 rows
    assert len(t.values(t.offsets_tag)) == len(t.values(t.counts_tag)) == blocks
    assert len(t.data_ranges()) == blocks
    assert max(b for _, b in t.data_ranges()) <= len(t.data)
    keys = t.values(GEO_KEY_DIRECTORY)
    assert keys[:3] == [1, 1, 0] and len(keys) == 4 + 4 * keys[3]
    assert [3072, 0, 1, 32611] in [keys[i : i + 4] for i in range(4, len(keys), 4)]
    # the structure (header, IFD, out-of-line values) and the blocks do not overlap
    for a, b in t.structure_ranges():
        assert all(b <= c or d <= a for c, d in t.data_ranges())


@pytest.mark.parametrize("name", ["tiled-deflate", "bigtiff-striped-raw"])
def test_rewritten_directory_is_what_gdal_reads(bases, name, tmp_path):
    t = Tiff.parse(bases[name])
    original = tmp_path / "original.tif"
    original.write_bytes(t.data)
    same = tmp_path / "same.tif"
    same.write_bytes(t.with_fields({IMAGE_WIDTH: (LONG, [WIDTH])}))  # SHORT -> LONG, moved
    changed = tmp_path / "changed.tif"
    changed.write_bytes(t.with_fields({GDAL_NODATA: (2, [b"7\0"])}))
    with rasterio.open(original) as a, rasterio.open(same) as b, rasterio.open(changed) as c:
        assert Tiff.parse(same.read_bytes()).ifd >= len(t.data)
        np.testing.assert_array_equal(a.read(), b.read())
        assert (a.crs, a.transform, a.nodata) == (b.crs, b.transform, b.nodata)
        assert a.nodata is None and c.nodata == 7


def test_cases_are_deterministic_and_cover_every_kind_and_base(bases):
    cases = [make_case(SEED, i, bases) for i in range(CASES)]
    again = [make_case(SEED, i, bases) for i in range(CASES)]
    assert [(c.base, c.kind, c.description, c.data) for c in cases] == [
        (c.base, c.kind, c.description, c.data) for c in again
    ]
    assert {(c.kind, c.base) for c in cases} == {(k, b) for k in KINDS for b in BASES}
    assert all(c.data != bases[c.base] for c in cases)
    assert all(c.description in STRUCTURED for c in cases if c.kind == "structured")
    other_seed = [make_case(SEED + 1, i, bases).data for i in range(CASES)]
    assert sum(a.data != b for a, b in zip(cases, other_seed, strict=True)) > CASES // 2


def _outputs(dst, complete=True):
    dst.mkdir()
    (dst / "labels.zarr").mkdir()
    (dst / "objects.parquet").write_bytes(b"PAR1")
    (dst / "run.json").write_text(json.dumps({"complete": complete}))


ERROR_LINE = "tiler: error: {src}: cannot read window rows 0:32, cols 0:32: TIFFFillTile"
JUDGED = {
    # name: (returncode, stderr, outputs in DST, timed out, expected status)
    "clean-error": (2, ERROR_LINE + "\n", None, False, "error"),
    "complete-run": (0, "", True, False, "ok"),
    "warnings-before-the-error": (
        2,
        "Warning 1: TIFFReadDirectory\n" + ERROR_LINE,
        None,
        False,
        "noisy-error",
    ),
    "error-not-naming-the-file": (
        5,
        "tiler: error: tile 3: ValueError: x\n",
        None,
        False,
        "bad-error",
    ),
    "error-leaving-run-json": (2, ERROR_LINE, True, False, "bad-error"),
    "traceback": (
        1,
        "Traceback (most recent call last):\nValueError: x\n",
        None,
        False,
        "traceback",
    ),
    "memory": (1, "Traceback (most recent call last):\nMemoryError\n", None, False, "memory"),
    "segfault": (-11, "Fatal Python error: Segmentation fault\n", None, False, "signal"),
    "timeout": (-6, "", None, True, "timeout"),
    "exit-0-without-outputs": (0, "", None, False, "incomplete"),
    "exit-0-run-json-not-complete": (0, "", False, False, "incomplete"),
    "exit-status-120": (120, ERROR_LINE, None, False, "bad-exit"),
}


@pytest.mark.parametrize("name", list(JUDGED))
def test_judge(name, tmp_path):
    returncode, stderr, outputs, timed_out, expected = JUDGED[name]
    src = tmp_path / "case-s1-00001-flip-data.tif"
    dst = tmp_path / "out"
    if outputs is not None:
        _outputs(dst, complete=outputs)
    status, problem = judge(returncode, "", stderr.format(src=src), src, dst, timed_out=timed_out)
    assert status == expected, problem
    assert (status in FAILURES) == (expected not in ("ok", "error"))


def test_memory_limit_is_enforced():
    proc = subprocess.run(
        [sys.executable, "-c", "bytearray(3 << 30)"],
        preexec_fn=_limit(2048 << 20),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "MemoryError" in proc.stderr, proc.stderr


def test_a_hang_is_stopped_and_reported(bases, tmp_path):
    outcome = run_case(control_case("tiled-deflate", bases), tmp_path, timeout=0.3)
    assert outcome.status == "timeout" and outcome.failed
    assert outcome.returncode is not None and outcome.returncode < 0  # killed, not left running
    assert outcome.seconds < 15
    assert "timeout" in outcome.report() and "replay:" in outcome.report()


# ---------------------------------------------------------------------------
# The bounded fuzz run
# ---------------------------------------------------------------------------


def test_unmutated_files_run_to_completion(campaign):
    _, controls, _ = campaign
    for outcome in controls:
        assert outcome.status == "ok", outcome.report()


def test_hostile_files_end_in_a_complete_run_or_one_clean_error_line(campaign):
    workdir, _, outcomes = campaign
    failed = [o for o in outcomes if o.failed]
    if failed:
        pytest.fail(
            f"{len(failed)} of {len(outcomes)} fuzz cases failed (files kept under {workdir}):\n\n"
            + "\n".join(o.report() for o in failed)
            + "\n"
            + summary(outcomes),
            pytrace=False,
        )
    statuses = {o.status for o in outcomes}
    assert statuses == {"ok", "error"}, statuses  # the mutations both break and spare files


# ---------------------------------------------------------------------------
# The files the campaigns caught, kept (tests/fuzz-repro/README.txt says what each broke)
# ---------------------------------------------------------------------------

REPRO = Path(__file__).parent / "fuzz-repro"


@pytest.mark.parametrize("path", sorted(REPRO.glob("*.tif")), ids=lambda p: p.stem)
def test_caught_files_now_end_in_a_complete_run_or_one_clean_error_line(path, tmp_path):
    case = Case(0, 0, "repro", "repro", path.stem, path.read_bytes(), label=path.stem)
    outcome = run_case(case, tmp_path, timeout=60, memory_mb=2048)
    assert not outcome.failed, outcome.report()
