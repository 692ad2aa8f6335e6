"""Presets: documented pipeline files for the common jobs, shipped in the package.

``tiler run SRC DST --preset NAME`` runs one; ``tiler presets`` lists them and
``tiler pipeline --preset NAME`` prints one, to copy and adapt.
"""

from __future__ import annotations

from importlib import resources

import yaml

from tiler.config import Pipeline, parse_pipeline
from tiler.errors import ConfigError
from tiler.units import PixelSize

_FOLDER = resources.files("tiler") / "data" / "presets"


def names() -> list[str]:
    """The presets, sorted."""
    return sorted(
        p.name.removesuffix(".yaml") for p in _FOLDER.iterdir() if p.name.endswith(".yaml")
    )


def text(name: str) -> str:
    """The pipeline file of preset ``name``."""
    if name not in names():
        raise ConfigError(f"preset {name!r}: unknown; available: {', '.join(names())}")
    return (_FOLDER / f"{name}.yaml").read_text()


def describe(name: str) -> str:
    """The preset's first comment line: what it is for."""
    return text(name).splitlines()[0].removeprefix("#").strip()


def load(name: str) -> Pipeline:
    """The validated pipeline of preset ``name``."""
    return parse_pipeline(yaml.safe_load(text(name)))


def splitting(size: PixelSize | None = None) -> list[str]:
    """The presets that split touching objects (a watershed ``split`` step); given the
    input's pixel ``size``, only those that serve it (their ``serves:`` range)."""

    def serves(pipeline: Pipeline) -> bool:
        return size is None or pipeline.serves is None or pipeline.serves.includes(size)

    return [name for name in names() if (p := load(name)).split is not None and serves(p)]
