"""`tiler train`: fit the small U-Net to annotated GeoTIFFs and write a tiler model file.

Needs the optional extra ``pip install 'tiler[train]'`` (torch); :func:`require_torch` says so
in one line. Modules: :mod:`~tiler.train.data` (files to arrays), :mod:`~tiler.train.net`
(the U-Net), :mod:`~tiler.train.loop` (training), :mod:`~tiler.train.decode` (the threshold
chosen on validation), :mod:`~tiler.train.export` (ONNX, metadata, model card) and
:mod:`~tiler.train.run` (all of it, as the command runs it). Only these import torch.
"""

from __future__ import annotations

from tiler.errors import TilerError

INSTALL_HINT = "tiler train needs PyTorch: pip install 'tiler[train]'"


def require_torch() -> None:
    """Raise one line if torch (or onnx, onnxruntime) cannot be imported."""
    for module in ("torch", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            raise TilerError(f"{INSTALL_HINT} ({module} is missing)") from None


__all__ = ["INSTALL_HINT", "require_torch"]
