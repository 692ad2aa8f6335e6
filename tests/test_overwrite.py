"""``--overwrite`` replaces tiler's own outputs only; run, report and export refuse alike.

One rule (tiler.io.targets.claim) for a run's DST, a report folder and an
export file: an existing output is refused unless ``--overwrite``, and a folder
holding anything tiler did not write is refused whatever the flags, naming
what it found and deleting nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, tiler

from tiler.synthetic import SyntheticField, write_geotiff

OUTPUTS = ["labels.zarr", "objects.parquet", "run.json"]


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "field.tif"
    return write_geotiff(SyntheticField(height=200, width=240, seed=4), path)


@pytest.fixture(scope="module")
def finished(src, tmp_path_factory) -> Path:
    """A finished run with its default report (DST/report)."""
    dst = tmp_path_factory.mktemp("finished") / "run"
    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", cwd=dst.parent)
    assert proc.returncode == 0, proc.stderr
    proc = tiler("report", dst, "-q", cwd=dst.parent)
    assert proc.returncode == 0, proc.stderr
    return dst


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def copy_run(finished: Path, dst: Path) -> Path:
    shutil.copytree(finished, dst)
    return dst


def test_overwrite_keeps_files_tiler_did_not_write(src, tmp_path):
    """The issue's case: a project folder with photos and a GeoPackage is refused, kept whole."""
    proj = tmp_path / "proj"
    (proj / "photos").mkdir(parents=True)
    (proj / "gis").mkdir()
    (proj / "photos" / "IMG_0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 a photo")
    (proj / "gis" / "fields.gpkg").write_bytes(b"SQLite format 3\x00")
    before = files(proj)
    for flags in ((), ("--overwrite",)):
        proc = tiler("run", src, proj, "--scheduler", "sync", "-q", *flags, cwd=tmp_path)
        line = assert_one_line_error(proc, "proj", "gis/", "photos/", "did not write")
        assert "choose another DST or remove them" in line
        assert files(proj) == before
        assert sorted(p.name for p in proj.iterdir()) == ["gis", "photos"]

    # tiler's names alone, without run.json or a journal, are not recognisably tiler's.
    loose = tmp_path / "loose"
    (loose / "labels.zarr").mkdir(parents=True)
    (loose / "labels.zarr" / "mine.txt").write_text("someone else's store\n")
    proc = tiler("run", src, loose, "--scheduler", "sync", "-q", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "loose", "labels.zarr/", "did not write")
    assert (loose / "labels.zarr" / "mine.txt").exists()


def test_overwrite_replaces_a_run_and_its_report_only(src, finished, tmp_path):
    dst = copy_run(finished, tmp_path / "run")
    assert sorted(p.name for p in dst.iterdir()) == [*OUTPUTS[:2], "report", "run.json"]
    before = files(dst)

    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", cwd=tmp_path)
    assert_one_line_error(proc, "run", "holds the outputs of a tiler run", "--overwrite")
    assert files(dst) == before

    # A file of the user's in the report folder makes the folder theirs: refused, all kept.
    (dst / "report" / "notes.txt").write_text("my notes\n")
    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "run", "report/", "did not write")
    assert (dst / "report" / "notes.txt").read_text() == "my notes\n"
    assert (dst / "run.json").read_bytes() == before["run.json"]

    (dst / "report" / "notes.txt").unlink()
    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dst.iterdir()) == OUTPUTS  # the old report went with the run


def test_report_refuses_an_existing_report_unless_overwrite(finished, tmp_path):
    dst = copy_run(finished, tmp_path / "run")
    before = files(dst / "report")
    (dst / "report" / "report.html").write_text("the old report\n")
    proc = tiler("report", dst, "-q", cwd=tmp_path)
    assert_one_line_error(proc, "report", "holds a tiler report", "--overwrite")
    assert (dst / "report" / "report.html").read_text() == "the old report\n"

    proc = tiler("report", dst, "-q", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tops = {name.split("/")[0] for name in before}  # files, and pyramid.zarr's tree
    assert sorted(p.name for p in (dst / "report").iterdir()) == sorted(tops)
    assert (dst / "report" / "fields.csv").read_bytes() == before["fields.csv"]
    assert "the old report" not in (dst / "report" / "report.html").read_text()

    # --out into a folder of the user's: refused, overwrite or not.
    out = tmp_path / "mine"
    out.mkdir()
    (out / "draft.docx").write_bytes(b"PK")
    proc = tiler("report", dst, "--out", out, "-q", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "mine", "draft.docx", "did not write")
    assert sorted(p.name for p in out.iterdir()) == ["draft.docx"]


def test_export_refuses_an_existing_target_unless_overwrite(finished, tmp_path):
    csv = tmp_path / "objects.csv"
    csv.write_text("my spreadsheet\n")
    proc = tiler("export", finished, "--csv", csv, cwd=tmp_path)
    assert_one_line_error(proc, "objects.csv", "exists", "--overwrite")
    assert csv.read_text() == "my spreadsheet\n"

    proc = tiler("export", finished, "--csv", csv, "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert csv.read_text().startswith("label,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.csv"]  # no partial left


def test_a_runs_yield_folder_goes_with_it_and_a_users_folder_is_refused(src, finished, tmp_path):
    dst = copy_run(finished, tmp_path / "run")
    proc = tiler("yield", "features", dst, "--cell", "1m", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dst / "yield").iterdir()) == ["cells.parquet", "features.tif"]

    # The yield commands write only into a folder of tiler's yield outputs.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    proc = tiler("yield", "features", dst, "--out", mine, "-q", cwd=tmp_path)
    assert_one_line_error(proc, "mine", "notes.txt", "did not write")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]

    (dst / "yield" / "notes.txt").write_text("my notes\n")
    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", "--overwrite", cwd=tmp_path)
    assert_one_line_error(proc, "run", "yield/", "did not write")
    (dst / "yield" / "notes.txt").unlink()
    proc = tiler("run", src, dst, "--scheduler", "sync", "-q", "--overwrite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in dst.iterdir()) == OUTPUTS  # features of the old run: gone
