"""Which file a run read: its fingerprint, and the run's input opened again (moved or not).

run.json records the input's size and :func:`fingerprint`; a reader of the
run (the report, the COG export) opens the input again through :func:`reopen`,
as the run opened it, and a moved input only if it is the very same file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tiler.errors import InputError
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import GeoTiffSource


def fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """A quick identity of a large file: its size and the SHA-256 of its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            digest.update(f.read(chunk))
    return digest.hexdigest()


def check_moved_input(path: Path, inputs: dict) -> None:
    """Refuse ``path`` as a run's moved input unless its size and fingerprint are run.json's."""
    if not path.is_file():
        raise InputError(f"{path}: no such file (given as the run's input, {inputs['path']})")
    if "fingerprint_sha256" not in inputs or "size_bytes" not in inputs:
        raise InputError(
            f"{path}: run.json holds no size and fingerprint of the run's input to check it against"
        )
    size = path.stat().st_size
    if size != inputs["size_bytes"]:
        raise InputError(
            f"{path}: not the run's input: {size} bytes, where {inputs['path']} had "
            f"{inputs['size_bytes']}"
        )
    if fingerprint(path) != inputs["fingerprint_sha256"]:
        raise InputError(
            f"{path}: not the run's input: same size as {inputs['path']}, but its fingerprint "
            "(SHA-256 of its first and last MiB) differs"
        )


def reopen(inputs: dict, moved_to: str | os.PathLike | None = None) -> GeoTiffSource:
    """A finished run's input, opened again as the run opened it (from run.json's ``input``).

    ``moved_to``: where the input is now, accepted only as the very file the
    run read (:func:`check_moved_input`).
    """
    options = inputs.get("options", {})
    how = options.get("georeferencing", "file")
    if moved_to is not None:
        check_moved_input(Path(moved_to), inputs)
    return open_geotiff(
        inputs["path"] if moved_to is None else moved_to,
        max_pixels=None,  # the run accepted it
        max_ratio=None,
        driver=options.get("driver", "GTiff"),
        mask=options.get("mask", "dataset"),
        assume_crs=options.get("crs_wkt") if how == "assumed" else None,
        pixel_only=how == "none",
    )
