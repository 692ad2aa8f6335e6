"""ONNX export of a trained net (uint8-scaled input in, tree confidence out) and its CPU speed.

The exported graph takes float32 (1, bands, h, w) in 0..255, standardises with the training
mean/std, runs the U-Net and returns sigmoid confidences (1, h, w). Speed: ONNX Runtime on the
CPU with 2 intra-op threads, median of ``reps`` runs on a side x side input.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Deployed(nn.Module):
    def __init__(self, net: nn.Module, stats: list[list[float]]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(stats[0]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(stats[1]).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net((x / 255.0 - self.mean) / self.std))


def export_onnx(net: nn.Module, stats: list[list[float]], bands: int, path: Path) -> None:
    model = Deployed(net, stats).cpu().float().eval()
    dummy = torch.zeros(1, bands, 256, 256)
    kwargs = dict(
        input_names=["image"],
        output_names=["confidence"],
        dynamic_axes={"image": {2: "h", 3: "w"}, "confidence": {1: "h", 2: "w"}},
        opset_version=17,
    )
    try:
        torch.onnx.export(model, (dummy,), str(path), dynamo=False, **kwargs)
    except TypeError:  # a torch without the dynamo switch
        torch.onnx.export(model, (dummy,), str(path), **kwargs)


def ort_mps(path: Path, bands: int, side: int = 1024, reps: int = 3, threads: int = 2) -> float:
    """Megapixels per second of ONNX Runtime on the CPU with ``threads`` threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 255, (1, bands, side, side)).astype(np.float32)
    sess.run(None, {"image": x})
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sess.run(None, {"image": x})
        times.append(time.perf_counter() - t0)
    return side * side / 1e6 / float(np.median(times))


def check_onnx(net: nn.Module, stats: list[list[float]], bands: int, path: Path) -> float:
    """Max |ONNX - torch| confidence on a random 256 x 256 input (CPU, float32)."""
    import onnxruntime as ort

    x = np.random.default_rng(1).uniform(0, 255, (1, bands, 256, 256)).astype(np.float32)
    with torch.no_grad():
        ref = Deployed(net, stats).cpu().float().eval()(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float(np.abs(sess.run(None, {"image": x})[0] - ref).max())
