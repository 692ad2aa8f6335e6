"""The README's Python examples, run as written (in a folder holding the files they name).

Each ```python block of README.md runs in a fresh namespace, in a folder
where ``ortho.tif`` (a small synthetic RGBA orthomosaic) and
``pipeline.yaml`` (the default pipeline) exist, so an example that stops
working fails here instead of in a user's hands.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

from tiler.config import DEFAULT_PIPELINE_YAML
from tiler.synthetic import SyntheticField, write_geotiff

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_python_example_runs_as_written(code, tmp_path, monkeypatch):
    matplotlib.use("Agg")  # objects.plot() draws off screen
    monkeypatch.chdir(tmp_path)
    write_geotiff(SyntheticField(height=300, width=280, seed=3), tmp_path / "ortho.tif")
    (tmp_path / "pipeline.yaml").write_text(DEFAULT_PIPELINE_YAML)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    if "labels" in namespace:  # the georeferencing the example prints is the input's
        import rasterio

        with rasterio.open(tmp_path / "ortho.tif") as ds:
            assert namespace["labels"].rio.crs == ds.crs
            assert namespace["labels"].rio.transform() == ds.transform
