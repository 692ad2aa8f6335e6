"""CPU timings on this (2-core) machine for the sweep's CPU columns -> cpu_calib.json.

For the config with the fewest FLOPs: one full training epoch (383 tiles, batch 32, real step:
augmentation, forward, loss, backward, AdamW) with 2 torch threads. For every config: a few
training steps of batch ``STEP_BATCH`` scaled to an epoch (recorded, not used: small batches
and two steps are dominated by overhead and load, e.g. 243 s vs 71 s for a full epoch), and
ONNX Runtime MP/s (2 threads) of the untrained net on ``ORT_SIDE`` x ``ORT_SIDE`` (speed does
not depend on the weights).
The load average is recorded: other processes share the CPU, so times are upper bounds.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch

from .export import export_onnx, ort_mps
from .nets import UNet, count_flops
from .train import augment, loss_fn, targets

N_TRAIN = 383
STEP_BATCH = 4
STEPS = 2
ORT_SIDE = 512


def time_steps(cfg: dict, n_tiles: int, batch: int, steps: int | None = None) -> float:
    """Seconds per epoch of n_tiles, from ``steps`` timed steps (after one warm-up step)."""
    gen = torch.Generator().manual_seed(0)
    net = UNet(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, cfg["bands"], 256, 256, generator=gen)
    pts = [torch.randint(0, 256, (50, 2), generator=gen).float().numpy() for _ in range(batch)]
    y = targets(pts, 256, cfg["sigma"], torch.device("cpu"))
    n_steps = steps if steps is not None else n_tiles // batch
    t0 = 0.0
    for s in range(n_steps + 1):
        if s == 1:
            t0 = time.perf_counter()
        xb, yb = augment(x, y, gen)
        loss = loss_fn(cfg["loss"], net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_step = (time.perf_counter() - t0) / n_steps
    return per_step * n_tiles / batch


def calibrate(configs: list[dict], path: Path) -> int:
    torch.set_num_threads(2)
    flops = {c["name"]: count_flops(UNet(c), c["bands"]) / 1e9 for c in configs}
    ref_cfg = min(configs, key=lambda c: flops[c["name"]])
    load0 = os.getloadavg()
    print(f"reference {ref_cfg['name']} ({flops[ref_cfg['name']]:.1f} GFLOP/MP): full epoch...")
    epoch_s = time_steps(ref_cfg, N_TRAIN, 32, steps=N_TRAIN // 32)
    print(f"  {epoch_s:.1f} s/epoch (load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f})")
    out = {
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}, 2 threads",
        "reference": {
            "name": ref_cfg["name"],
            "epoch_s": epoch_s,
            "gflop_per_mp": flops[ref_cfg["name"]],
            "load_before": load0[0],
            "load_after": os.getloadavg()[0],
        },
        "configs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in configs:
            per_epoch = time_steps(cfg, N_TRAIN, STEP_BATCH, STEPS)
            onnx = Path(tmp) / f"{cfg['name']}.onnx"
            export_onnx(
                UNet(cfg).eval(), [[0.0] * cfg["bands"], [1.0] * cfg["bands"]], cfg["bands"], onnx
            )
            mps = ort_mps(onnx, cfg["bands"], side=ORT_SIDE)
            out["configs"][cfg["name"]] = {
                "gflop_per_mp": flops[cfg["name"]],
                "train_s_per_epoch": per_epoch,
                "ort_mps": mps,
                "load": os.getloadavg()[0],
            }
            print(
                f"{cfg['name']}: {flops[cfg['name']]:.1f} GFLOP/MP, "
                f"{per_epoch:.0f} s/epoch, ORT {mps:.2f} MP/s, load {os.getloadavg()[0]:.1f}"
            )
            path.write_text(json.dumps(out, indent=1))
    return 0
