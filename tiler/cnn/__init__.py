"""Convolutional networks as ONNX models: metadata, sessions, exact block inference.

* :mod:`.metadata` — the model file contract: :class:`~.metadata.ModelInfo`, shipped names.
* :mod:`.session` — ONNX Runtime sessions per process, device and thread rules.
* :mod:`.blocks` — confidence by fixed blocks, bit-identical at any tiling.

Nothing is imported here: the step (:mod:`tiler.steps.onnx_model`) reads
metadata and sessions below the graph layer, the blocks sit in it.
"""
