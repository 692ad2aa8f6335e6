"""tiler.yield_.features reuses the cells it wrote only while they are still the run's:
same run, cell size, index and stand, the stand not found again since."""

from __future__ import annotations

import os

import pytest

import tiler
from tiler import yield_
from tiler.synthetic import SyntheticField, write_geotiff


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reuse")
    src = write_geotiff(SyntheticField.at(0.05, (30.0, 30.0), seed=6), folder / "field.tif")
    tiler.run(src, folder / "run", scheduler="sync")
    tiler.rows(folder / "run")
    return folder / "run"


def _features(run, **kwargs):
    said: list[str] = []
    found = yield_.features(run, log=said.append, **kwargs)
    return found, any("reused" in line for line in said)


def test_the_cells_are_reused_while_they_are_the_runs(run):
    first, reused = _features(run)
    assert not reused and "gap_fraction" in first.table
    again, reused = _features(run)
    assert reused and again.table.equals(first.table)
    # the cells say what size they are, written or read: predict refuses another model's
    assert first.table.attrs["cell_m"] == again.table.attrs["cell_m"] == first.grid.cell_m
    assert not _features(run, cell=2.0)[1]  # another cell size: computed (and written) anew
    assert not _features(run)[1]  # so the 5 m cells are computed again too
    assert _features(run)[1]
    assert not _features(run, index="exgr")[1]  # another index
    assert not _features(run)[1]  # the default, the run's own index (ExG), is not ExGR
    assert _features(run)[1]
    assert _features(run, index="exg")[1]  # the same index named: reused
    assert not _features(run, stand=False)[1]  # the stand's columns are left out


def test_a_stand_found_again_or_a_broken_table_is_computed_anew(run):
    _features(run)
    assert _features(run)[1]
    rows = run / "stand" / "rows.parquet"
    later = (run / "yield" / "cells.parquet").stat().st_mtime_ns + 1000
    os.utime(rows, ns=(later, later))  # as if `tiler rows` ran again after the cells
    assert not _features(run)[1]
    (run / "yield" / "cells.parquet").write_bytes(b"not parquet")
    found, reused = _features(run)
    assert not reused and len(found.table) > 0
    assert _features(run)[1]
