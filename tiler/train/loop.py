"""The training loop: patches and targets, augmentation, AdamW, early stopping on val F1.

Targets (points): a Gaussian of peak 1 and ``sigma`` px around every point, summed and
clamped to 1; the loss is MSE on the sigmoid output weighted ``1 + 10 x target``. Masks: the
mask, and binary cross-entropy. Every sample of a batch gets one of the 8 flips/quarter
turns and a brightness/contrast jitter. The learning rate warms up linearly over the first
5 % of the steps, then follows a cosine to 0. After each epoch the validation images are
predicted whole and decoded at the threshold of the best F1; the weights of the best epoch
are kept, and training stops after ``patience`` epochs without a better F1. On the CPU with a
seed, two runs give the same weights (deterministic algorithms, one seeded generator).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from tiler.cnn.metadata import halo_px
from tiler.train.data import Dataset, Sample
from tiler.train.decode import Choice, choose_mask, choose_points
from tiler.train.net import NetConfig, UNet, receptive_field, shift_period

WARMUP = 0.05


@dataclass(frozen=True)
class Recipe:
    """The training settings (``tiler train``'s options)."""

    kind: str = "points"
    sigma_px: float = 3.0
    epochs: int = 100
    patience: int = 20
    batch: int = 16
    patch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int | None = None
    within_m: float = 6.0
    min_distance_m: float = 2.4
    net: NetConfig = field(default_factory=NetConfig)


@dataclass
class Fitted:
    """A trained net (best epoch's weights) and how it got there."""

    net: UNet
    mean: list[float]
    std: list[float]
    choice: Choice
    best_epoch: int
    epochs_run: int
    seconds: float
    epoch_seconds: list[float]
    history: list[dict[str, float]]


def min_distance_px(recipe: Recipe, pixel_m: float) -> int:
    """The peaks' radius in px: the min distance in metres at this pixel size, rounded."""
    return max(0, math.floor(recipe.min_distance_m / pixel_m + 0.5))


def heatmap(points: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Clamped sum of peak-1 Gaussians of ``sigma`` px at the (rounded) points."""
    delta = np.zeros(shape, np.float32)
    if len(points):
        rc = np.clip(np.rint(points).astype(np.int64), 0, np.array(shape) - 1)
        np.add.at(delta, (rc[:, 0], rc[:, 1]), 1.0)
    r = int(math.ceil(3 * sigma))
    g = np.exp(-(np.arange(-r, r + 1, dtype=np.float32) ** 2) / (2 * sigma**2))
    heat = ndi.convolve1d(delta, g, axis=0, mode="constant")
    return np.minimum(ndi.convolve1d(heat, g, axis=1, mode="constant"), 1.0)


def target(sample: Sample, recipe: Recipe) -> np.ndarray:
    if recipe.kind == "mask":
        assert sample.mask is not None
        return sample.mask.astype(np.float32)
    return heatmap(sample.points, sample.image.shape[1:], recipe.sigma_px)


def _starts(n: int, size: int) -> list[int]:
    return sorted({*range(0, max(1, n - size + 1), size), max(0, n - size)})


def patches(
    samples: Sequence[Sample], recipe: Recipe, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every sample cut into ``patch``-sided squares (the last flush with the edge; a smaller
    image padded by reflection, its target by 0): float32 (n, C, p, p), (n, p, p)."""
    xs, ys = [], []
    p = recipe.patch
    for s in samples:
        x = s.image.astype(np.float32) * scale
        y = target(s, recipe)
        ph, pw = max(0, p - x.shape[1]), max(0, p - x.shape[2])
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
            y = np.pad(y, ((0, ph), (0, pw)))
        for r in _starts(x.shape[1], p):
            for c in _starts(x.shape[2], p):
                xs.append(x[:, r : r + p, c : c + p])
                ys.append(y[r : r + p, c : c + p])
    return np.stack(xs), np.stack(ys)


def dihedral(t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Transform k[i] in 0..7 (k % 4 quarter turns, then a flip if k >= 4) of sample i."""
    out = torch.empty_like(t)
    for code in range(8):
        idx = (k == code).nonzero().flatten()
        if idx.numel():
            v = torch.rot90(t[idx], code % 4, dims=(-2, -1))
            out[idx] = torch.flip(v, dims=(-1,)) if code >= 4 else v
    return out


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
    n = x.shape[0]
    k = torch.randint(0, 8, (n,), generator=gen)
    x, y = dihedral(x, k), dihedral(y, k)
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    bright = 0.6 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * contrast + mean + bright, y


def loss_fn(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "mask":
        return F.binary_cross_entropy_with_logits(logits, y)
    return ((torch.sigmoid(logits) - y) ** 2 * (1 + 10 * y)).mean()


def lr_at(progress: float, peak: float) -> float:
    if progress < WARMUP:
        return peak * progress / WARMUP
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP) / (1 - WARMUP))))


def predict(net: UNet, image: np.ndarray, halo: int, period: int) -> np.ndarray:
    """(H, W) confidence of one normalised (C, H, W) image as `tiler run` computes it
    (:mod:`tiler.cnn.blocks`): the image padded by symmetric reflection by the model's halo
    on every side (and to a multiple of the shift period), run, cropped back. Validation so
    scores, and chooses the threshold for, what the model file will produce (the net on
    the bare 256-px NAIP val tiles counted +5.8 % where `tiler run` counted +9.2 %)."""
    h, w = image.shape[1:]
    ph, pw = -(h + 2 * halo) % period, -(w + 2 * halo) % period
    x = np.pad(image, ((0, 0), (halo, halo + ph), (halo, halo + pw)), mode="symmetric")
    with torch.no_grad():
        out = torch.sigmoid(net(torch.from_numpy(np.ascontiguousarray(x))[None]))[0]
    return out[halo : halo + h, halo : halo + w].numpy()


def validate(net: UNet, val: Sequence[Sample], norm, recipe: Recipe, pixel_m: float) -> Choice:
    scale, mean, std = norm
    net.eval()
    period = shift_period(recipe.net)
    halo = halo_px(receptive_field(recipe.net), period)
    confs = [predict(net, (s.image * scale - mean) / std, halo, period) for s in val]
    net.train()
    if recipe.kind == "mask":
        return choose_mask(confs, [s.mask for s in val if s.mask is not None])
    return choose_points(
        confs,
        [s.points for s in val],
        pixel_m=pixel_m,
        within_m=recipe.within_m,
        radius_px=min_distance_px(recipe, pixel_m),
    )


def fit(train: Dataset, val: Sequence[Sample], recipe: Recipe, quiet: bool = False) -> Fitted:
    """Train on ``train``'s samples, choose epoch and threshold on ``val``.

    Torch's global settings (deterministic algorithms, threads) are restored afterwards.
    """
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    try:
        return _fit(train, val, recipe, quiet)
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def _fit(train: Dataset, val: Sequence[Sample], recipe: Recipe, quiet: bool) -> Fitted:
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(recipe.seed)
    x, y = patches(train.samples, recipe, train.scale)
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = np.maximum(x.std(axis=(0, 2, 3), dtype=np.float64), 1e-6)
    xt = torch.from_numpy((x - mean[:, None, None]) / std[:, None, None]).float()
    yt = torch.from_numpy(y)
    norm = (
        np.float32(train.scale),
        mean[:, None, None].astype(np.float32),
        std[:, None, None].astype(np.float32),
    )
    net = UNet(recipe.net)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    n, bs = xt.shape[0], min(recipe.batch, xt.shape[0])
    steps = max(1, n // bs)
    best: tuple[Choice, int, dict] | None = None
    history, epoch_seconds, t0 = [], [], time.perf_counter()
    bar = tqdm(range(recipe.epochs), desc="train", unit="epoch", disable=quiet, file=sys.stderr)
    for epoch in bar:
        start = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at((epoch * steps + s) / (recipe.epochs * steps), recipe.lr)
            idx = perm[s * bs : (s + 1) * bs]
            xb, yb = augment(xt[idx], yt[idx], gen)
            loss = loss_fn(recipe.kind, net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        trained = time.perf_counter()
        choice = validate(net, val, norm, recipe, train.pixel_size_m)
        epoch_seconds.append(time.perf_counter() - start)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": total / steps,
                "val_f1": choice.f1,
                "train_s": trained - start,
                "val_s": time.perf_counter() - trained,
            }
        )
        bar.set_postfix(loss=f"{total / steps:.4f}", val_f1=f"{choice.f1:.3f}")
        if best is None or choice.f1 > best[0].f1:
            best = (choice, epoch + 1, copy.deepcopy(net.state_dict()))
        elif epoch + 1 - best[1] >= recipe.patience:
            break
    bar.close()
    assert best is not None
    net.load_state_dict(best[2])
    net.eval()
    return Fitted(
        net=net,
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        choice=best[0],
        best_epoch=best[1],
        epochs_run=len(history),
        seconds=time.perf_counter() - t0,
        epoch_seconds=epoch_seconds,
        history=history,
    )
