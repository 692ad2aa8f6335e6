"""tiler: exact, out-of-core segmentation of huge GeoTIFF orthomosaics.

>>> import tiler
>>> result = tiler.run("ortho.tif", "out/")            # doctest: +SKIP
>>> labels = tiler.open_labels("out/")                 # doctest: +SKIP
>>> objects = tiler.read_objects("out/")               # doctest: +SKIP
>>> stand = tiler.rows("out/", "fields.gpkg")          # doctest: +SKIP
>>> stand.fields, stand.read_rows(), stand.read_gaps()  # doctest: +SKIP

``import tiler`` (and ``tiler --help``) imports none of the stacks a run uses:
each name below is imported from its module the first time it is used
(``tiler.run`` brings in dask, rasterio and Zarr; ``tiler.rows`` the stand's),
so a command or a script pays only for what it calls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tiler.errors import ConfigError, InputError, OutputError, TilerError

if TYPE_CHECKING:  # what the names below are, for type checkers and editors
    from tiler.analysis import StandReport
    from tiler.analysis import analyse as rows
    from tiler.api import RunResult, open_labels, read_objects, run
    from tiler.config import DEFAULT_PIPELINE_YAML, Pipeline, load_pipeline, parse_pipeline

__version__ = "0.1.0"

# Each public name that lives in a heavier module: (module, name there).
_LAZY = {
    "StandReport": ("tiler.analysis", "StandReport"),
    "rows": ("tiler.analysis", "analyse"),
    "RunResult": ("tiler.api", "RunResult"),
    "open_labels": ("tiler.api", "open_labels"),
    "read_objects": ("tiler.api", "read_objects"),
    "run": ("tiler.api", "run"),
    "DEFAULT_PIPELINE_YAML": ("tiler.config", "DEFAULT_PIPELINE_YAML"),
    "Pipeline": ("tiler.config", "Pipeline"),
    "load_pipeline": ("tiler.config", "load_pipeline"),
    "parse_pipeline": ("tiler.config", "parse_pipeline"),
}

__all__ = [
    "DEFAULT_PIPELINE_YAML",
    "ConfigError",
    "InputError",
    "OutputError",
    "Pipeline",
    "RunResult",
    "StandReport",
    "TilerError",
    "__version__",
    "load_pipeline",
    "open_labels",
    "parse_pipeline",
    "read_objects",
    "rows",
    "run",
]


def __getattr__(name: str) -> Any:
    """``tiler.run`` and the other names of :data:`_LAZY`: imported on first use, then kept."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'tiler' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
