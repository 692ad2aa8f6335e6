"""The shipped fully-convolutional U-Net, its receptive field and its shift period.

The recipe of ``benchmarks/cnn`` (results-round2.md): depth 3, width 16, plain 3 x 3
convolutions, a stride-2 stem; 121k parameters, a receptive field of 103 px and a shift
period of 8 px. One logit per input pixel; :class:`Deployed` adds the sigmoid and the
``(N, 1, H, W)`` output of the model file contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """``depth`` levels, ``width`` channels at level 0 (doubled per level), ``stem`` stride
    (1, 2 or 4: a stride-s (2s-1) x (2s-1) first convolution), ``bands`` input channels."""

    depth: int = 3
    width: int = 16
    stem: int = 2
    bands: int = 4

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    k = 2 * stride - 1 if stride > 1 else 3  # a stride-s stem sees every pixel
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout), _conv(cout, cout))


class UNet(nn.Module):
    """A U-Net returning ``(N, H, W)`` logits for ``(N, bands, H, W)`` inputs.

    Inputs whose sides are multiples of :func:`shift_period` run exactly as trained; others
    run too (the upsampling follows the skip connections' sizes).
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        chans = [config.width * 2**i for i in range(config.depth)]
        self.stem = _conv(config.bands, chans[0], config.stem) if config.stem > 1 else None
        first = chans[0] if self.stem is not None else config.bands
        self.down = nn.ModuleList(
            _block(first if i == 0 else chans[i - 1], chans[i]) for i in range(config.depth)
        )
        self.up = nn.ModuleList(
            _block(chans[i + 1] + chans[i], chans[i]) for i in range(config.depth - 1)
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
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        x = self.head(x)
        if self.stem is not None:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x[:, 0]


class Deployed(nn.Module):
    """The exported graph: normalised ``(N, C, H, W)`` in, ``(N, 1, H, W)`` in [0, 1] out."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))[:, None]


def receptive_field(config: NetConfig) -> int:
    """Full width in px of one output pixel's receptive field, along the deepest path.

    Each 3 x 3 conv adds 2 x jump; a 2 x 2 max-pool adds 1 x jump then doubles it; a bilinear
    x2 upsample reads 2 low-resolution neighbours (adds the low-resolution jump). A stride-s
    stem of (2s-1) x (2s-1) adds 2s - 2; the final bilinear x s upsample adds s.
    """
    rf, jump = 1, 1
    if config.stem > 1:
        rf, jump = rf + 2 * config.stem - 2, jump * config.stem
    for level in range(config.depth):
        if level:
            rf, jump = rf + jump, jump * 2
        rf += 2 * 2 * jump
    for _ in range(config.depth - 1):
        rf, jump = rf + jump, jump // 2
        rf += 2 * 2 * jump
    if config.stem > 1:
        rf += jump
    return rf


def shift_period(config: NetConfig) -> int:
    """The net commutes with shifts that are multiples of this: 2^(depth-1) x stem stride."""
    return 2 ** (config.depth - 1) * config.stem


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
