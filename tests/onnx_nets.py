"""Small random-weight U-Nets written with ``onnx.helper`` (no torch), with tiler metadata.

Conv 3x3 + Relu, MaxPool 2x2 stride 2 per level, Resize x2 (linear or
nearest) back up, Concat skip connections, a 3x3 head and a Sigmoid: the
shape of the shipped family at toy size. ``depth`` levels make the net
shift-equivariant for shifts of ``2**depth`` px.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Generous receptive fields (full widths) per depth: the blocks' halo must cover them.
RECEPTIVE_FIELD = {1: 21, 2: 45}


def metadata(channels: int, depth: int, **overrides) -> dict[str, str]:
    """The contract's keys for a test net; ``overrides`` replace (None: drop) keys."""
    meta = {
        "tiler:format": "1",
        "tiler:bands": json.dumps([f"b{k}" for k in range(channels)]),
        "tiler:normalise": json.dumps(
            {"scale": 1 / 255, "mean": [0.5] * channels, "std": [0.25] * channels}
        ),
        "tiler:pixel_size_m": "0.05",
        "tiler:pixel_size_tolerance": "1.5",
        "tiler:receptive_field_px": str(RECEPTIVE_FIELD[depth]),
        "tiler:shift_period_px": str(2**depth),
        "tiler:output": "mask",
        "tiler:threshold": "0.5",
        "tiler:name": f"test-d{depth}",
        "tiler:description": "random weights, for tests",
    }
    for key, value in overrides.items():
        key = key if key.startswith("tiler:") else f"tiler:{key}"
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    return meta


def make_net(
    path: Path,
    *,
    channels: int = 3,
    depth: int = 1,
    width: int = 4,
    resize: str = "linear",
    seed: int = 0,
    meta: dict[str, str] | None = None,
    input_channels: int | None = None,
) -> Path:
    """Write a random U-Net to ``path`` and return it (``meta``: its metadata_props)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x: str, cin: int, cout: int, name: str, relu: bool = True) -> str:
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits.extend(
            [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"], pads=[1, 1, 1, 1]
            )
        )
        if not relu:
            return f"{name}.c"
        nodes.append(helper.make_node("Relu", [f"{name}.c"], [name]))
        return name

    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    x, skips, c = conv("x", channels, width, "enc0"), [], width
    for level in range(1, depth + 1):
        skips.append((x, c))
        nodes.append(
            helper.make_node("MaxPool", [x], [f"pool{level}"], kernel_shape=[2, 2], strides=[2, 2])
        )
        x = conv(f"pool{level}", c, c * 2, f"enc{level}")
        c *= 2
    for level in range(depth, 0, -1):
        skip, sc = skips.pop()
        nodes.append(helper.make_node("Resize", [x, "", "scales"], [f"up{level}"], mode=resize))
        nodes.append(helper.make_node("Concat", [skip, f"up{level}"], [f"cat{level}"], axis=1))
        x = conv(f"cat{level}", sc + c, sc, f"dec{level}")
        c = sc
    logits = conv(x, c, 1, "head", relu=False)
    nodes.append(helper.make_node("Sigmoid", [logits], ["y"]))
    cin = channels if input_channels is None else input_channels
    graph = helper.make_graph(
        nodes,
        "unet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata(channels, depth) if meta is None else meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
