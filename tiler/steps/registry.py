"""Pipeline names to step classes: the one place that lists every step.

A new step is one class in its family's module and one line here (a new
index: one :class:`~tiler.steps.indices.Formula` and its line in
:data:`~tiler.steps.indices.INDICES`).
"""

from __future__ import annotations

from tiler.steps.base import Step, ThresholdStep
from tiler.steps.contrast import Clahe, Equalize
from tiler.steps.edges import CannyEdges
from tiler.steps.filters import Gaussian, Median
from tiler.steps.grow import Grow
from tiler.steps.indices import INDICES, Index
from tiler.steps.model import Model
from tiler.steps.morphology import FillHoles, Morphology, RemoveSmallObjects, Smooth
from tiler.steps.split import Split
from tiler.steps.thresholds import FixedThreshold, LocalThreshold, MultiOtsu, Otsu, Percentile


def _by_name(*classes: type[Step]) -> dict[str, type[Step]]:
    return {name: cls for cls in classes for name in cls.names}


PREPROCESS = _by_name(Index, Gaussian, Median, Equalize, Clahe)
REFINE = _by_name(Morphology, Smooth, FillHoles, RemoveSmallObjects, Split)
# ``threshold: otsu`` is written bare, ``threshold: 0.1`` as a number, the others as a mapping.
BARE_THRESHOLDS: dict[str, type[ThresholdStep]] = {"otsu": Otsu}
NUMBER_THRESHOLD = FixedThreshold
THRESHOLDS: dict[str, type[ThresholdStep]] = {
    "percentile": Percentile,
    "grow": Grow,
    "edges": CannyEdges,
    "multi_otsu": MultiOtsu,
    "local": LocalThreshold,
}
THRESHOLD_USAGE = (
    Otsu.usage,
    FixedThreshold.usage,
    *(cls.usage for cls in THRESHOLDS.values()),
)
MODEL = Model

__all__ = [
    "BARE_THRESHOLDS",
    "INDICES",
    "MODEL",
    "NUMBER_THRESHOLD",
    "PREPROCESS",
    "REFINE",
    "THRESHOLDS",
    "THRESHOLD_USAGE",
]
