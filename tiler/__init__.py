"""tiler: exact, out-of-core segmentation of huge GeoTIFF orthomosaics.

>>> import tiler
>>> result = tiler.run("ortho.tif", "out/")            # doctest: +SKIP
>>> labels = tiler.open_labels("out/")                 # doctest: +SKIP
>>> objects = tiler.read_objects("out/")               # doctest: +SKIP
>>> stand = tiler.rows("out/", "fields.gpkg")          # doctest: +SKIP
>>> stand.fields, stand.read_rows(), stand.read_gaps()  # doctest: +SKIP
"""

from tiler.analysis import StandReport
from tiler.analysis import analyse as rows
from tiler.api import RunResult, open_labels, read_objects, run
from tiler.config import DEFAULT_PIPELINE_YAML, Pipeline, load_pipeline, parse_pipeline
from tiler.errors import ConfigError, InputError, OutputError, TilerError

__version__ = "0.1.0"

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
