"""A finished run read back: the check that it is complete, and its label store's layout.

What the exports (and any reader of DST) need before they read a run:
:func:`check_complete` refuses a run whose ``run.json`` is missing or does
not say complete; :func:`open_run` reads the label array's shape, chunks,
dtype and georeferencing from ``labels.zarr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine

from tiler.errors import OutputError
from tiler.io import output, run_record


def check_complete(dst: Path) -> None:
    """Refuse ``dst`` unless its ``run.json`` says the run completed."""
    try:
        manifest = run_record.read_manifest(dst)
    except FileNotFoundError:
        raise OutputError(f"{dst}: no run.json; not a finished tiler run") from None
    if manifest.get("complete") is not True:
        raise OutputError(f"{dst}: run.json does not say complete; the run did not finish")


@dataclass(frozen=True)
class FinishedRun:
    """The parts of a finished run an export needs."""

    dst: Path
    store: str  # labels.zarr
    shape: tuple[int, int]
    chunks: tuple[int, int]
    dtype: np.dtype
    source: str | None  # the input GeoTIFF, whose mask marks nodata (if recorded)
    crs_wkt: str
    transform: Affine
    georeferenced: bool  # False for a --pixel-only run: no CRS, no metres

    @property
    def own_paths(self) -> list[Path]:
        """The run's outputs, which no export may overwrite."""
        return [self.dst / name for name in (output.LABELS, output.OBJECTS, output.MANIFEST)]


def open_run(dst: str | os.PathLike) -> FinishedRun:
    """Check ``dst`` holds a complete run and read its labels' layout and georeferencing."""
    import zarr

    dst = Path(dst)
    check_complete(dst)
    store = dst / output.LABELS
    try:
        group = zarr.open_group(str(store), mode="r")
        labels = group["labels"]
        ref = dict(group["spatial_ref"].attrs)
        c, a, b, f, d, e = (float(v) for v in ref["GeoTransform"].split())
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise OutputError(f"{store}: not the label store of a tiler run ({exc})") from None
    inputs = run_record.read_manifest(dst).get("input", {})
    crs_wkt = str(ref.get("crs_wkt") or "")
    how = inputs.get("options", {}).get("georeferencing", "file")
    return FinishedRun(
        dst=dst,
        store=str(store),
        shape=tuple(labels.shape),
        chunks=tuple(labels.chunks),
        dtype=np.dtype(labels.dtype),
        source=inputs.get("path"),
        crs_wkt=crs_wkt,
        transform=Affine(a, b, c, d, e, f),
        georeferenced=bool(crs_wkt) and how != "none",
    )
