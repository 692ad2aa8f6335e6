"""The run record, ``run.json``: written last, read back by whatever reads a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiler.io import atomic, stores
from tiler.io.output import MANIFEST


def write_manifest(dst: Any, manifest: dict[str, Any]) -> Any:
    """Write ``run.json`` (last): a run is complete only when it says ``"complete": true``."""
    text = json.dumps(manifest, indent=2, default=_json_default) + "\n"
    return atomic.write_text(stores.folder(dst) / MANIFEST, text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_manifest(dst: Any) -> dict[str, Any]:
    return json.loads((stores.folder(dst) / MANIFEST).read_text())
