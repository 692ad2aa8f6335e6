"""``--resume`` continues a run as it was: its settings come from what the run recorded.

An unfinished run's journal records what the run is of (input, options the
input was opened with, pipeline, chunks: :func:`tiler.api.record.identity_of`); a
finished one's ``run.json`` records the same. Resuming, every setting left out
is taken from there, so the user repeats nothing; a setting given that differs
is refused, naming the option and both values (it would be a different run).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiler.errors import OutputError
from tiler.io import output, stores
from tiler.io.finished import complete_manifest
from tiler.journal import describe_change

# The line an interrupted run leaves in the log (shown even with -q).
RESUME_HINT = "unfinished; run again with --resume to continue"
ADVICE = "leave it out to continue the run as it was, or pass --overwrite to start again"


def recorded(dst: Path) -> dict[str, Any] | None:
    """What the run in ``dst`` is of: its journal's record if unfinished, else its run.json's."""
    try:
        return json.loads((stores.folder(dst) / output.JOURNAL_IDENTITY).read_text())["run"]
    except (FileNotFoundError, NotADirectoryError):
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{dst / output.JOURNAL_IDENTITY}: unreadable ({exc!r})") from None
    manifest = complete_manifest(dst)
    return manifest_identity(manifest) if manifest is not None else None


def manifest_identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """The identity (as the journal records it) of the finished run ``manifest`` describes."""
    inputs = manifest.get("input", {})
    keys = ("path", "height", "width", "size_bytes", "fingerprint_sha256", "options", "mosaic")
    return {
        "input": {k: inputs[k] for k in keys if k in inputs},
        "pipeline": manifest.get("config"),
        "chunks": manifest.get("chunking", {}).get("chunk_shape"),
        "tiler_version": manifest.get("tiler_version"),
    }


@dataclass(frozen=True)
class Settings:
    """The settings of a run; ``None``: not given."""

    config: Any = None
    chunk_size: int | tuple[int, int] | None = None
    driver: str | None = None
    mask: str | None = None
    assume_crs: str | None = None
    pixel_only: bool | None = None

    def completed(self, before: dict[str, Any] | None) -> Settings:
        """These settings, each left out taken from the run ``before`` (if any)."""
        if before is None:
            return self
        options = before.get("input", {}).get("options", {})
        how = options.get("georeferencing")
        georeferencing_given = self.assume_crs is not None or self.pixel_only is not None
        chunks = before.get("chunks")
        return Settings(
            config=self.config if self.config is not None else before.get("pipeline"),
            chunk_size=self.chunk_size if self.chunk_size is not None else _pair(chunks),
            driver=self.driver if self.driver is not None else options.get("driver"),
            mask=self.mask if self.mask is not None else options.get("mask"),
            assume_crs=self.assume_crs
            if georeferencing_given
            else (options.get("crs_wkt") if how == "assumed" else None),
            pixel_only=self.pixel_only if georeferencing_given else how == "none",
        )


def _pair(chunks: Any) -> tuple[int, int] | None:
    return tuple(chunks) if isinstance(chunks, list) and len(chunks) == 2 else None


def check(dst: Path, before: dict[str, Any], given: Settings, now: dict[str, Any]) -> None:
    """Refuse to resume with an option given that makes ``now`` a different run than ``before``.

    Only options given are checked here (those left out came from ``before``);
    what else changed (the input itself, tiler's version) the journal refuses.
    """
    checks = [
        (given.chunk_size, "chunks", "--chunk-size", _chunk_text),
        (given.config, "pipeline", "--config/--preset", None),
        (given.driver, "driver", "--driver", repr),
        (given.mask, "mask", "--mask", repr),
        (_given_georeferencing(given), "georeferencing", "--assume-crs/--pixel-only", repr),
    ]
    options_before = before.get("input", {}).get("options", {})
    options_now = now.get("input", {}).get("options", {})
    for value, key, option, text in checks:
        if value is None:
            continue
        if key in ("chunks", "pipeline"):
            a, b = before.get(key), now.get(key)
        elif key == "georeferencing":
            a, b = _georeferencing(options_before), _georeferencing(options_now)
        else:
            a, b = options_before.get(key), options_now.get(key)
        if a == b:
            continue
        if text is None:  # the pipeline: what differs in it
            what = describe_change({key: a}, {key: b}).split(" changed ", 1)[-1]
            words = f"{option} differs from the run's pipeline {what}"
        else:
            words = f"{option} {text(b)} differs from the run's {text(a)}"
        raise OutputError(f"{dst}: cannot resume: {words}; {ADVICE}")


def _given_georeferencing(given: Settings) -> bool | None:
    return True if given.assume_crs is not None or given.pixel_only is not None else None


def _georeferencing(options: dict[str, Any]) -> str:
    how = options.get("georeferencing", "file")
    if how == "assumed":
        from pyproj import CRS

        return f"assumed {CRS.from_wkt(options.get('crs_wkt', '')).to_string()}"
    return "pixel only" if how == "none" else "from the file"


def _chunk_text(chunks: Any) -> str:
    return " x ".join(str(c) for c in chunks) if isinstance(chunks, list) else repr(chunks)
