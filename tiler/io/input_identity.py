"""Which file a run read: its fingerprint, and the run's input opened again (moved or not).

run.json records the input's size and :func:`fingerprint`; a reader of the
run (the report, the COG export) opens the input again through :func:`reopen`,
as the run opened it, and a moved input only if it is the very same file.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiler.errors import InputError
from tiler.io import remote
from tiler.io.fingerprint import CHUNK, digest
from tiler.io.open_raster import open_geotiff
from tiler.io.raster import GeoTiffSource


def fingerprint(path: Path, chunk: int = CHUNK) -> str:
    """A quick identity of a large file: :func:`tiler.io.fingerprint.digest` of its bytes."""
    with path.open("rb") as f:

        def read(start: int, stop: int) -> bytes:
            f.seek(start)
            return f.read(stop - start)

        return digest(path.stat().st_size, read, chunk)


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


def check_unchanged(path: Path, inputs: dict, why: str) -> None:
    """Refuse the run's input at its recorded ``path`` if it is gone or no longer the file read.

    ``why``: what the reader needs the input for (and what to do), said when it is gone.
    """
    if not path.is_file():
        raise InputError(f"{path}: the run's input is gone; {why}")
    if "fingerprint_sha256" in inputs and fingerprint(path) != inputs["fingerprint_sha256"]:
        raise InputError(f"{path}: changed since the run (its fingerprint differs)")


def reopen(
    inputs: dict, moved_to: str | os.PathLike | None = None, *, why: str = "it is read again"
) -> GeoTiffSource:
    """A finished run's input, opened again as the run opened it (from run.json's ``input``).

    The input must be the very file the run read: at its recorded path and
    unchanged (:func:`check_unchanged`), or, if ``moved_to`` says where it is
    now, of the same size and fingerprint (:func:`check_moved_input`).
    """
    if "mosaic" in inputs:  # many files read as one (tiler.io.mosaic)
        from tiler.io import mosaic

        return mosaic.reopen(inputs, moved_to, why)
    options = inputs.get("options", {})
    how = options.get("georeferencing", "file")
    if remote.is_url(str(moved_to or inputs["path"])):  # by two range reads, not by stat
        remote.check_identity(str(moved_to or inputs["path"]), inputs)
    elif moved_to is None:
        check_unchanged(Path(inputs["path"]), inputs, why)
    else:
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
