"""The confidence pass of an ONNX model: every tile's confidence into ``confidence.zarr``.

The network runs once per block (:mod:`tiler.cnn.blocks`), tile by tile,
and its confidence is kept, float32 and 0 at invalid pixels, in a work Zarr
chunked as the tiles. A mask output (``output: mask``) is the stored
confidence thresholded (:class:`tiler.masks.ConfidenceMask`): the local
``refine`` steps then read their halos from the store instead of running the
network again. A points output decodes peaks from the same store (with a
halo: :meth:`tiler.cnn.blocks.StoredConfidence.read`).
"""

from __future__ import annotations

from functools import partial

from tiler.cnn.blocks import StoredConfidence, write_confidence
from tiler.config import Pipeline
from tiler.inference import model_confidence
from tiler.masks import ConfidenceMask
from tiler.passes.instances import model_points
from tiler.passes.runner import PassRunner
from tiler.passes.segmentation import Segmentation
from tiler.plan import window_graph
from tiler.points import ReadConfidence
from tiler.steps.onnx_model import OnnxModel

CONFIDENCE = "confidence.zarr"


def stored_confidence(run: PassRunner, pipeline: Pipeline) -> StoredConfidence:
    """Run the model on every tile once; its confidence, stored in the work folder."""
    model = pipeline.model
    assert isinstance(model, OnnxModel)
    path = run.confidence_store(CONFIDENCE)
    windows = [window for *_, window in run.grid]
    args = (run.source, pipeline.bands, model, path)
    run.compute("confidence", window_graph("confidence", write_confidence, args, windows))
    return StoredConfidence(path, run.grid.shape)


def confidence_mask(run: PassRunner, pipeline: Pipeline) -> ConfidenceMask:
    """``output: mask``: the stored confidence ``>= threshold`` (0 at invalid pixels)."""
    assert isinstance(pipeline.model, OnnxModel)
    return ConfidenceMask(stored_confidence(run, pipeline), pipeline.model.threshold)


def point_objects(run: PassRunner, pipeline: Pipeline) -> Segmentation:
    """``output: points``: peaks of the confidence as objects (:mod:`tiler.points`).

    An ONNX model's confidence is stored first and read with halos from the
    store; a callable's is computed on each window (:func:`model_confidence`).
    """
    if isinstance(pipeline.model, OnnxModel):
        read: ReadConfidence = stored_confidence(run, pipeline).read
    else:
        read = partial(model_confidence, run.source, pipeline)
    return model_points(run, pipeline, read)
