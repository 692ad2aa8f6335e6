"""A model's work on one tile: its mask, or its instance labels, checked.

The ``model:`` step (:mod:`tiler.steps.model`) names a callable; these tasks
call it on a tile's window grown by the model's halo and refuse, in one line
naming it, an output of the wrong shape or kind.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tiler.config import Model, Pipeline, load_callable
from tiler.errors import ModelError
from tiler.source import RasterSource
from tiler.split import SplitTile, measure_window
from tiler.tiling import Window, expand
from tiler.values import image_shape


def model_mask(source: RasterSource, pipeline: Pipeline, window: Window) -> np.ndarray:
    """The pipeline's model on ``window`` grown by its halo, cropped back, ``&= valid``."""
    model = callable_model(pipeline)
    outer, crop = expand(window, model.halo, image_shape(source))
    image, valid = source.read(pipeline.bands, outer)
    return run_model(model.function, image)[crop] & valid[crop]


def callable_model(pipeline: Pipeline) -> Model:
    """The pipeline's ``model: {callable}`` (an ONNX model runs by blocks: tiler.cnn)."""
    model = pipeline.model
    assert isinstance(model, Model), "only a callable model runs per window"
    return model


def run_model(function: str, image: np.ndarray) -> np.ndarray:
    """``function(image)`` as a bool mask, checked: one clear error if it returns anything else."""
    out = _call(function, image)
    if out.dtype != bool and not (
        np.issubdtype(out.dtype, np.integer) and np.isin(out, (0, 1)).all()
    ):
        raise ModelError(f"model {function}: returned {out.dtype} values; expected a mask")
    return out.astype(bool, copy=False)


def model_window(source: RasterSource, pipeline: Pipeline, window: Window, index: int) -> SplitTile:
    """The model's instances on a tile's window grown by its halo, measured for ownership."""
    model = callable_model(pipeline)
    outer, _ = expand(window, model.halo, image_shape(source))
    image, valid = source.read(pipeline.bands, outer)
    labels, n = model_labels(model.function, image, valid)
    return measure_window(labels, n, outer, window, index, image_shape(source))


def model_labels(function: str, image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """``function(image)`` as instance labels 1..n on valid pixels (in order of their ids)."""
    out = _call(function, image)
    if not np.issubdtype(out.dtype, np.integer) or out.min(initial=0) < 0:
        raise ModelError(f"model {function}: returned {out.dtype} values; expected labels >= 0")
    ids, compact = np.unique(np.where(valid, out, 0), return_inverse=True)
    compact = compact.reshape(out.shape).astype(np.int32)
    if ids[0] != 0:
        compact += 1
    return compact, int(np.count_nonzero(ids))


def _call(function: str, image: np.ndarray) -> np.ndarray:
    """``function(image)`` as an array of the window's shape; one clear error otherwise."""
    out = np.asarray(_model(function)(image))
    if out.shape != image.shape[1:]:
        raise ModelError(
            f"model {function}: returned shape {out.shape} for a window of {image.shape[1:]}"
        )
    return out


@lru_cache(maxsize=8)
def _model(function: str):
    return load_callable(function)


def model_confidence(source: RasterSource, pipeline: Pipeline, window: Window) -> np.ndarray:
    """A points model's confidence on ``window`` (float32; NaN at invalid pixels, never a peak)."""
    model = pipeline.model
    outer, crop = expand(window, model.halo, image_shape(source))
    image, valid = source.read(pipeline.bands, outer)
    conf = confidence(model.function, image)[crop]
    return np.where(valid[crop], conf, np.float32(np.nan))


def confidence(function: str, image: np.ndarray) -> np.ndarray:
    """``function(image)`` as a float32 confidence map, checked (shape, finite, in [0, 1])."""
    out = _call(function, image)
    if not np.issubdtype(out.dtype, np.floating) or not ((out >= 0) & (out <= 1)).all():
        raise ModelError(f"model {function}: expected a confidence map, float in [0, 1]")
    return out.astype(np.float32, copy=False)
