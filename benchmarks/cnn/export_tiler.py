"""Export a (random-weight or trained) U-Net of :mod:`benchmarks.cnn.nets` as a tiler model.

The ONNX file follows the model file contract (README, "Models"): float32 ``(N, C, H, W)``
in, sigmoid confidence ``(N, H, W)`` out, normalisation outside the graph (tiler feeds
``(x * scale - mean) / std``) and the ``tiler:*`` metadata.

    python -m benchmarks.cnn.export_tiler OUT.onnx [--depth 3 --width 16 --stem 2 --bands 4]
"""

from __future__ import annotations

import argparse
import json

import onnx
import torch

from benchmarks.cnn.nets import UNet, receptive_field


class Confidence(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def export(path: str, cfg: dict, output: str = "points") -> None:
    net = Confidence(UNet(cfg)).eval()
    bands = cfg.get("bands", 4)
    dummy = torch.zeros(1, bands, 256, 256)
    axes = {"image": {0: "n", 2: "h", 3: "w"}, "confidence": {0: "n", 1: "h", 2: "w"}}
    torch.onnx.export(net, (dummy,), path, input_names=["image"], output_names=["confidence"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    model = onnx.load(path)
    names = ["red", "green", "blue", "nir"][:bands]
    meta = {
        "tiler:format": "1",
        "tiler:bands": json.dumps(names),
        "tiler:normalise": json.dumps(
            {"scale": 1 / 255, "mean": [0.4] * bands, "std": [0.2] * bands}
        ),
        "tiler:pixel_size_m": "0.6",
        "tiler:pixel_size_tolerance": "1.5",
        "tiler:receptive_field_px": str(receptive_field(cfg)),
        "tiler:shift_period_px": str(2 ** (cfg["depth"] - 1) * cfg.get("stem", 1)),
        "tiler:output": output,
        "tiler:threshold": "0.5",
        "tiler:min_distance_m": "2.4",
        "tiler:name": f"d{cfg['depth']}-w{cfg['width']}-stem{cfg.get('stem', 1)}",
    }
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, path)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--stem", type=int, default=2)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--output", default="mask")
    a = parser.parse_args()
    cfg = {"depth": a.depth, "width": a.width, "conv": "std", "stem": a.stem, "bands": a.bands}
    export(a.out, cfg, a.output)
