"""Small fully-convolutional U-Nets for the tree-confidence map, with their cost and reach.

A config (dict) chooses: ``depth`` (levels), ``width`` (channels of level 0, doubled per level),
``conv`` ("std" 3x3 or "sep" depthwise 3x3 + pointwise 1x1), ``stem`` (1, or s = 2, 4: a stride-s
(2s-1) x (2s-1) first conv, so the U-Net runs at 1/s resolution and the logits are upsampled
x s), ``bands`` (4 = RGB+NIR, 3 = RGB). Output: one logit per input pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn(cin: int, cout: int, kind: str, stride: int = 1) -> nn.Sequential:
    k = 2 * stride - 1 if stride > 1 else 3  # a stride-s stem sees every pixel
    if kind == "sep" and cin >= 8:
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def block(cin: int, cout: int, kind: str) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout, kind), conv_bn(cout, cout, kind))


class UNet(nn.Module):
    """The research family (``sep`` convolutions too); tiler.train.net.UNet is the shipped
    subset, kept separate so this harness runs where only torch and numpy are."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        depth, width, kind = cfg["depth"], cfg["width"], cfg["conv"]
        self.stem_stride = cfg.get("stem", 1)
        chans = [width * 2**i for i in range(depth)]
        cin = cfg.get("bands", 4)
        self.stem = (
            conv_bn(cin, chans[0], "std", self.stem_stride) if self.stem_stride > 1 else None
        )
        first = chans[0] if self.stem is not None else cin
        self.down = nn.ModuleList(
            block(first if i == 0 else chans[i - 1], chans[i], kind) for i in range(depth)
        )
        self.up = nn.ModuleList(
            block(chans[i + 1] + chans[i], chans[i], kind) for i in range(depth - 1)
        )
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for i, enc in enumerate(self.down):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        x = self.head(x)
        if self.stem is not None:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x[:, 0]


def receptive_field(cfg: dict) -> int:
    """Analytic receptive field (px, full width) of one output pixel along the deepest path.

    Each 3x3 conv adds 2 x jump; a 2x2 max-pool adds 1 x jump then doubles it; a bilinear x2
    upsample reads 2 low-resolution neighbours (adds 1 x the low-resolution jump).
    A stride-s stem of (2s-1) x (2s-1) adds 2s - 2; the final bilinear x s upsample adds s.
    """
    rf, jump = 1, 1
    if cfg.get("stem", 1) > 1:
        rf, jump = rf + 2 * cfg["stem"] - 2, jump * cfg["stem"]
    for level in range(cfg["depth"]):
        if level:
            rf, jump = rf + jump, jump * 2
        rf += 2 * 2 * jump
    for _ in range(cfg["depth"] - 1):
        rf, jump = rf + jump, jump // 2
        rf += 2 * 2 * jump
    if cfg.get("stem", 1) > 1:
        rf += jump
    return rf


def count_flops(model: nn.Module, bands: int, side: int = 256) -> float:
    """Forward FLOPs (2 x multiply-adds of the convolutions) per megapixel of input."""
    macs = [0]

    def hook(mod: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs[0] += out.numel() * (mod.in_channels // mod.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, bands, side, side, device=next(model.parameters()).device))
    model.train(was_training)
    for h in handles:
        h.remove()
    return 2.0 * macs[0] * 1e6 / (side * side)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
