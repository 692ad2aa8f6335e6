"""A finished run read back: the check that it is complete, and its label store's layout.

The one place that decides whether DST holds a finished run (DESIGN.md
section 4: ``run.json`` saying ``"complete": true``): :func:`check_complete`
refuses any other in one line, for whatever reads a run (the API, the report,
the exports); :func:`complete_manifest` asks, for a run deciding what to do
with DST. :func:`open_run` reads the label array's shape, chunks, dtype and
georeferencing from ``labels.zarr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from tiler.errors import OutputError
from tiler.io import output, run_record, stores


def _manifest_or_why(dst: Path) -> tuple[dict[str, Any] | None, str]:
    """``dst``'s manifest if it says the run completed, else ``None`` and why not."""
    try:
        manifest = run_record.read_manifest(dst)
    except (FileNotFoundError, NotADirectoryError):
        return None, "no run.json; not a finished tiler run"
    except ValueError as exc:  # not JSON, or not UTF-8
        return None, f"run.json is not valid JSON ({exc})"
    except OSError as exc:
        return None, f"cannot read run.json ({exc.strerror})"
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        return None, "run.json does not say complete; the run did not finish"
    return manifest, ""


def complete_manifest(dst: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the finished run in ``dst``, or ``None`` if it holds none."""
    return _manifest_or_why(stores.folder(dst))[0]


def check_complete(dst: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the finished run in ``dst``; refused in one line if it holds none."""
    manifest, why = _manifest_or_why(stores.folder(dst))
    if manifest is None:
        raise OutputError(f"{dst}: {why}")
    return manifest


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
    manifest = check_complete(dst)
    store = dst / output.LABELS
    try:
        group = zarr.open_group(str(store), mode="r")
        labels = group["labels"]
        ref = dict(group["spatial_ref"].attrs)
        c, a, b, f, d, e = (float(v) for v in ref["GeoTransform"].split())
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise OutputError(f"{store}: not the label store of a tiler run ({exc})") from None
    inputs = manifest.get("input", {})
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
