"""The model file: ONNX (opset 17, dynamic N/H/W), its ``tiler:*`` metadata and model card.

The graph takes the normalised ``(N, C, H, W)`` float32 input of the model file contract
(tiler feeds ``(x * scale - mean) / std``) and returns ``(N, 1, H, W)`` confidences. After
export the file is run in ONNX Runtime against torch on a random input: the largest
difference is reported in the card (and must stay below :data:`MAX_DIFF`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from tiler.cnn import metadata as model_format
from tiler.errors import OutputError
from tiler.train.net import Deployed, UNet

FORMAT = str(model_format.FORMAT)
MAX_DIFF = 1e-4
PIXEL_SIZE_TOLERANCE = 1.5
KEYS = (
    *model_format.REQUIRED,
    "tiler:min_distance_m",
    "tiler:name",
    "tiler:description",
    "tiler:card",
)


def metadata(
    *,
    bands: list[str],
    scale: float,
    mean: list[float],
    std: list[float],
    pixel_size_m: float,
    receptive_field_px: int,
    shift_period_px: int,
    output: str,
    threshold: float,
    min_distance_m: float,
    name: str,
    description: str,
    card: str,
) -> dict[str, str]:
    """The ``metadata_props`` of the contract, as strings (structured ones JSON)."""
    props = {
        "tiler:format": FORMAT,
        "tiler:bands": json.dumps(bands),
        "tiler:normalise": json.dumps({"scale": scale, "mean": mean, "std": std}),
        "tiler:pixel_size_m": repr(float(pixel_size_m)),
        "tiler:pixel_size_tolerance": repr(PIXEL_SIZE_TOLERANCE),
        "tiler:receptive_field_px": str(int(receptive_field_px)),
        "tiler:shift_period_px": str(int(shift_period_px)),
        "tiler:output": output,
        "tiler:threshold": repr(float(threshold)),
        "tiler:name": name,
        "tiler:description": description,
        "tiler:card": card,
    }
    if output == "points":
        props["tiler:min_distance_m"] = repr(float(min_distance_m))
    return props


def export_onnx(net: UNet, path: Path) -> float:
    """Write ``net``'s graph to ``path``; the ONNX Runtime vs torch max difference."""
    model = Deployed(net).cpu().float().eval()
    bands = net.config.bands
    axes = {0: "n", 2: "h", 3: "w"}
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter (dynamo=False) is deprecated, and warns so from inside,
            # but it writes the plain opset-17 graph that every ONNX Runtime runs.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                model,
                (torch.zeros(1, bands, 64, 64),),
                str(path),
                dynamo=False,
                input_names=["image"],
                output_names=["confidence"],
                dynamic_axes={"image": axes, "confidence": axes},
                opset_version=17,
            )
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the model ({exc.strerror})") from None
    return max_difference(model, path, bands)


def set_metadata(path: Path, props: Mapping[str, str]) -> None:
    """Store ``props`` as the file's ``metadata_props`` (after the graph is checked)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, dict(props))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def max_difference(model: Deployed, path: Path, bands: int, side: int = 96) -> float:
    """Max |ONNX Runtime - torch| on a random normalised (2, bands, side, side) input."""
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((2, bands, side, side)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(got - ref).max())


def card(info: Mapping[str, object]) -> str:
    """The model card (markdown): data, command, training, validation score, geometry."""
    val = info["val"]
    assert isinstance(val, Mapping)
    lines = [
        f"# {info['name']}",
        "",
        str(info["description"]) or "A tiler model.",
        "",
        "## Data",
        "",
        f"- images: {info['n_train']} for training, {info['n_val']} for validation "
        f"({info['images']})",
        f"- truth: {info['truth']} ({info['n_points']} "
        f"{'points' if info['kind'] == 'points' else 'masked images'} in training)",
        f"- bands: {', '.join(info['bands'])}; pixel size {info['pixel_size_m']:.4g} m",  # type: ignore[arg-type]
    ]
    if info.get("licence"):
        lines.append(f"- licence: {info['licence']}")
    lines += [
        "",
        "## Training",
        "",
        f"- command: `{info['command']}`",
        f"- seed {info['seed']}; {info['epochs_run']} epochs run, best epoch "
        f"{info['best_epoch']}; {info['seconds']:.0f} s ({info['seconds_per_epoch']:.1f} "
        f"s/epoch, of which {info['val_seconds_per_epoch']:.1f} s validation)",
        f"- net: U-Net depth {info['depth']}, width {info['width']}, stem stride "
        f"{info['stem']}, {info['params']:,} parameters; torch {torch.__version__}",
        "",
        "## Validation (at the chosen threshold)",
        "",
        "| threshold | precision | recall | F1 | count error | truth | found |",
        "|---|---|---|---|---|---|---|",
        f"| {val['threshold']:g} | {val['precision']:.3f} | {val['recall']:.3f} | "
        f"{val['f1']:.3f} | {val['count_error']:+.1%} | {val['n_truth']} | {val['n_pred']} |",
        "",
        f"Matched one to one within {info['within_m']:g} m; peaks at least "
        f"{info['min_distance_m']:g} m apart."
        if info["kind"] == "points"
        else "Pixel F1.",
        "",
        "## Geometry",
        "",
        f"- receptive field {info['receptive_field_px']} px; shift period "
        f"{info['shift_period_px']} px; trained at {info['pixel_size_m']:.4g} m/px",
        f"- ONNX Runtime vs torch: max |difference| {info['onnx_max_diff']:.2g}",
        "",
    ]
    return "\n".join(lines)
