"""Training of one config on the GPU: data on the device, augmentation with torch ops.

Targets: a Gaussian of peak 1 (sigma = cfg["sigma"] px) around every tree point, summed and
clamped to 1, plus the point mask (for the focal loss). Augmentation per sample: one of the 8
flips/90-degree rotations (image and targets together), and brightness/contrast jitter.
Losses: "mse" (sigmoid output vs heatmap), "wmse" (MSE weighted 1 + 10 x target), "focal"
(CenterNet's penalty-reduced focal loss, normalised by the number of points). AdamW with a
linear warm-up then cosine decay whose progress is max(step fraction, time fraction), so a
config with a time cap still completes its schedule.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import MIN_DISTS, evaluate


def to_device(images: np.ndarray, bands: int, device: torch.device, stats=None):
    """uint8 (n,4,h,w) -> standardised float (n,bands,h,w) on device, and the (mean, std)."""
    x = torch.from_numpy(images[:, :bands]).to(device).float() / 255.0
    if stats is None:
        stats = (x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True))
    return (x - stats[0]) / stats[1], stats


def targets(points: list[np.ndarray], side: int, sigma: float, device: torch.device):
    """(n, 2, side, side) float: clamped sum of Gaussians, and the point mask."""
    pm = torch.zeros(len(points), 1, side, side, device=device)
    for i, pts in enumerate(points):
        if len(pts):
            xy = torch.from_numpy(pts).long().clamp(0, side - 1).to(device)
            pm[i, 0, xy[:, 1], xy[:, 0]] = 1.0
    r = int(math.ceil(3 * sigma))
    g = torch.exp(-(torch.arange(-r, r + 1, device=device).float() ** 2) / (2 * sigma**2))
    heat = F.conv2d(pm, g.view(1, 1, 1, -1), padding=(0, r))
    heat = F.conv2d(heat, g.view(1, 1, -1, 1), padding=(r, 0))
    return torch.cat([heat.clamp(max=1.0), pm], dim=1)


# tiler.train.loop.dihedral is this function: the harness keeps its own copy because it runs
# on the GPU machine, where only torch and numpy are installed (tiler's imports are not).
def dihedral(t: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply transform k[i] in 0..7 (rot90 k % 4, then flip if k >= 4) to sample i."""
    out = torch.empty_like(t)
    for code in range(8):
        idx = (k == code).nonzero().flatten()
        if idx.numel():
            v = torch.rot90(t[idx], code % 4, dims=(-2, -1))
            out[idx] = torch.flip(v, dims=(-1,)) if code >= 4 else v
    return out


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
    n = x.shape[0]
    k = torch.randint(0, 8, (n,), device=x.device, generator=gen)
    x, y = dihedral(x, k), dihedral(y, k)
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, device=x.device, generator=gen)
    bright = 0.6 * (torch.rand(n, 1, 1, 1, device=x.device, generator=gen) - 0.5)
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * contrast + mean + bright, y


def loss_fn(kind: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    heat, pts = y[:, 0], y[:, 1]
    logits = logits.float()
    if kind == "focal":
        p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        pos = pts * (1 - p) ** 2 * torch.log(p)
        neg = (1 - pts) * (1 - heat) ** 4 * p**2 * torch.log(1 - p)
        return -(pos.sum() + neg.sum()) / pts.sum().clamp(min=1.0)
    err = (torch.sigmoid(logits) - heat) ** 2
    if kind == "wmse":
        err = err * (1 + 10 * heat)
    return err.mean()


def predict(model, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad(), autocast(x.device):
        for i in range(0, x.shape[0], batch):
            out.append(torch.sigmoid(model(x[i : i + batch]).float()))
    model.train()
    return torch.cat(out)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def lr_at(progress: float, peak: float, warmup: float = 0.05) -> float:
    if progress < warmup:
        return peak * progress / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


def fit(model, cfg: dict, data: dict, device: torch.device, cap_s: float, log=print) -> dict:
    """Train; evaluate on val every cfg['eval_every'] epochs; keep the best state by val F1."""
    gen = torch.Generator(device=device).manual_seed(cfg.get("seed", 0))
    torch.manual_seed(cfg.get("seed", 0))
    bands, bs, epochs = cfg.get("bands", 4), cfg.get("batch", 32), cfg["epochs"]
    xt, stats = to_device(data["train"]["images"], bands, device)
    xv, _ = to_device(data["val"]["images"], bands, device, stats)
    yt = targets(data["train"]["points"], xt.shape[-1], cfg["sigma"], device)
    mem = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device, memory_format=mem)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg.get("wd", 1e-4))
    n, steps_per_epoch = xt.shape[0], max(1, xt.shape[0] // bs)
    best = {"F1": -1.0}
    best_state = None
    t0, step, epoch = time.perf_counter(), 0, 0
    progress = 0.0
    while progress < 1.0:
        perm = torch.randperm(n, device=device, generator=gen)
        for s in range(steps_per_epoch):
            progress = max(step / (epochs * steps_per_epoch), (time.perf_counter() - t0) / cap_s)
            for group in opt.param_groups:
                group["lr"] = lr_at(progress, cfg["lr"])
            idx = perm[s * bs : (s + 1) * bs]
            xb, yb = augment(xt[idx], yt[idx], gen)
            with autocast(device):
                loss = loss_fn(cfg["loss"], model(xb.contiguous(memory_format=mem)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
        progress = max(step / (epochs * steps_per_epoch), (time.perf_counter() - t0) / cap_s)
        if epoch % cfg.get("eval_every", 10) == 0 or progress >= 1.0:
            res = evaluate(predict(model, xv), data["val"]["points"])
            log(
                f"  epoch {epoch:4d} loss {loss.item():.4f} val F1 {res['F1']:.3f} "
                f"(t {res['t']}) {time.perf_counter() - t0:.1f}s"
            )
            if res["F1"] > best["F1"]:
                best = {**res, "epoch": epoch}
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    model.load_state_dict(best_state)
    conf = predict(model, xv)
    final = evaluate(conf, data["val"]["points"], min_dists=MIN_DISTS)
    return {
        "val": final,
        "best_epoch": best["epoch"],
        "epochs_run": epoch,
        "steps": step,
        "train_s": train_s,
        "stats": [s.flatten().tolist() for s in stats],
    }
