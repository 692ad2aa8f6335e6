"""The stand along the rows, per cell (:mod:`tiler.yield_.cells`): rows and gaps clipped to cells.

The stand of a run (``tiler rows``: ``RUN/stand``; ``tiler report --rows``:
``RUN/report/stand``) has one LineString per row (``rows.parquet``) and one
per gap, plant to plant (``gaps.parquet``), in the raster's CRS, each with its
length in metres (``length_m``). A row's (or gap's) length in a cell is its
``length_m`` times the fraction of its line inside the cell (shapely's
intersection with the cell polygon, found through an STRtree): the lengths
of a row over all cells add up to its ``length_m``, and stay metres in a CRS
in feet or degrees.

Per cell: ``row_m`` (the rows' length in it, m), ``gap_m`` (the gaps'),
and the row figures ``spacing_cv``, ``miss_pct``, ``multiples_pct`` averaged
over the rows crossing it, each weighted by its length in the cell (rows
whose figure is NaN left out; NaN where none is left).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tiler.errors import InputError
from tiler.io import output

FILES = ("rows.parquet", "gaps.parquet")
WEIGHTED = ("spacing_cv", "miss_pct", "multiples_pct")  # per row, weighted by length in the cell


def stand_folder(run: Any, stand: str | os.PathLike | bool | None) -> Path | None:
    """Where the run's stand is: ``stand`` if a folder is given (it must hold both files),
    else ``RUN/stand`` or ``RUN/report/stand``, whichever holds both; None if neither
    (or ``stand`` is False)."""
    if stand is False:
        return None
    if stand is not None and stand is not True:
        folder = Path(stand)
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise InputError(
                f"{folder}: no {missing[0]} here; expected the folder of `tiler rows` "
                "(rows.parquet and gaps.parquet)"
            )
        return folder
    if not isinstance(run, Path):  # object storage: the stand is only ever written by path
        return None
    for folder in (run / output.STAND, run / output.REPORT / output.STAND):
        if all((folder / name).is_file() for name in FILES):
            return folder
    if stand is True:
        raise InputError(f"{run}: no stand (rows.parquet, gaps.parquet): run `tiler rows` first")
    return None


def _read(path: Path, columns: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    import pyarrow.parquet as pq
    import shapely

    try:
        table = pq.read_table(path, columns=[*columns, "geometry"])
    except Exception as exc:  # noqa: BLE001 (any unreadable file: one line)
        raise InputError(f"{path}: not a stand table of `tiler rows` ({exc})") from None
    lines = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    values = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns}
    return values, lines


def _clipped(lines: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(line, box, fraction)``: each line's share of its own length inside each box it
    crosses."""
    import shapely

    tree = shapely.STRtree(boxes)
    line, box = tree.query(lines, predicate="intersects")
    whole = shapely.length(lines)
    inside = shapely.length(shapely.intersection(lines[line], boxes[box]))
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(whole[line] > 0, inside / whole[line], 0.0)
    return line, box, fraction


def stand_columns(folder: Path, boxes: np.ndarray) -> dict[str, np.ndarray]:
    """Per cell of ``boxes`` (polygons, raster CRS): ``row_m``, ``gap_m`` and the
    length-weighted :data:`WEIGHTED` row figures."""
    n = len(boxes)
    rows, row_lines = _read(folder / FILES[0], ["length_m", *WEIGHTED])
    gaps, gap_lines = _read(folder / FILES[1], ["length_m"])
    line, box, fraction = _clipped(row_lines, boxes)
    metres = rows["length_m"][line] * fraction
    out = {"row_m": np.bincount(box, weights=metres, minlength=n)}
    for name in WEIGHTED:
        value = rows[name][line]
        known = np.isfinite(value) & (metres > 0)
        weight = np.bincount(box[known], weights=metres[known], minlength=n)
        total = np.bincount(box[known], weights=(value * metres)[known], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(weight > 0, total / weight, np.nan)
    line, box, fraction = _clipped(gap_lines, boxes)
    out["gap_m"] = np.bincount(box, weights=gaps["length_m"][line] * fraction, minlength=n)
    return out
