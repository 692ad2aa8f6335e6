"""Architecture sweep of the tree-confidence CNN (issue 15), made for one ~8-minute GPU run.

    PYTHONUNBUFFERED=1 python3 -m benchmarks.cnn.sweep --out "$OUT" --budget-s 420
    python -m benchmarks.cnn.sweep --smoke --out /tmp/cnn-smoke      # CPU, tiny, 2 epochs
    python -m benchmarks.cnn.sweep --calibrate                       # CPU timings here

Trains every config of CONFIGS on train.txt, selects epoch, threshold and peak distance on
val.txt, and writes after each config ``sweep.json`` and ``sweep.md`` to --out; at the end
``best.pt`` (fp16 state_dict + config + input statistics) and ``best.onnx`` of the best val F1
whose fp32 weights fit in 15 MiB, then ONNX Runtime CPU MP/s (2 threads, 1024 x 1024) per config
while time is left. The CPU columns use cpu_calib.json (measured on the 2-core dev machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from .export import check_onnx, export_onnx, ort_mps
from .nets import UNet, count_flops, n_params, receptive_field
from .pack import load_dataset
from .train import fit

# BASE runs at half resolution (stride-2 stem): full-resolution U-Nets cost 80-730 GFLOP/MP,
# far from 3 MP/s on 2 CPU cores; two full-resolution rows measure what halving costs in F1.
BASE = dict(depth=4, width=24, conv="std", stem=2, bands=4, sigma=2.0, loss="wmse")
BASE.update(lr=3e-3, epochs=100, batch=32, eval_every=10, seed=0)
VARIANTS = [  # ordered by how much the answer matters, in case the run is cut short
    ("base", {}),
    ("full-res", dict(stem=1)),
    ("w16", dict(width=16)),
    ("w32", dict(width=32)),
    ("rgb", dict(bands=3)),
    ("d3", dict(depth=3)),
    ("focal", dict(loss="focal")),
    ("mse", dict(loss="mse")),
    ("sigma1.5", dict(sigma=1.5)),
    ("sigma3", dict(sigma=3.0)),
    ("sep32", dict(width=32, conv="sep")),
    ("stem4-w32", dict(width=32, stem=4)),
    ("full-res-w16", dict(width=16, stem=1)),
    ("w48", dict(width=48)),
    ("d3-w16", dict(depth=3, width=16)),
]
# Round 2, after round 1 (results-round1.md): sigma 3 helped most; the small nets (d3, w16,
# d3-w16) reach 3 MP/s on 2 CPU cores. What F1 do they reach in the epochs 30 CPU minutes
# allow (about 20-40), with what learning rate, and RGB-only? A second seed measures the noise.
S3 = dict(sigma=3.0)
ROUND2 = [
    ("d3-w16-s3", dict(depth=3, width=16, **S3)),
    ("d3-w16-s3-e20", dict(depth=3, width=16, epochs=20, eval_every=5, **S3)),
    ("d3-w16-s3-e40", dict(depth=3, width=16, epochs=40, eval_every=5, **S3)),
    ("d3-w16-s3-e20-lr1e-2", dict(depth=3, width=16, epochs=20, eval_every=5, lr=1e-2, **S3)),
    ("d3-w16-s3-seed1", dict(depth=3, width=16, seed=1, **S3)),
    ("d3-w16-s4", dict(depth=3, width=16, sigma=4.0)),
    ("d3-w16-s3-rgb", dict(depth=3, width=16, bands=3, **S3)),
    ("w16-s3", dict(width=16, **S3)),
    ("w16-s3-e20", dict(width=16, epochs=20, eval_every=5, **S3)),
    ("d3-s3", dict(depth=3, **S3)),
    ("d3-s3-e20", dict(depth=3, epochs=20, eval_every=5, **S3)),
    ("stem4-w32-s3", dict(width=32, stem=4, **S3)),
]
# Round 3, the recipe `tiler train` ships (d3-w16, stem 2, 100 epochs): how much do seeds move
# val F1, and do batch 16, sigma 4 or 150 epochs do better? (evaluated every 5 epochs.)
D3W16 = dict(depth=3, width=16, eval_every=5, **S3)
ROUND3 = [
    ("r3-seed0", dict(D3W16)),
    ("r3-seed1", dict(D3W16, seed=1)),
    ("r3-seed2", dict(D3W16, seed=2)),
    ("r3-b16", dict(D3W16, batch=16)),
    ("r3-s4-seed0", dict(D3W16, sigma=4.0)),
    ("r3-s4-seed2", dict(D3W16, sigma=4.0, seed=2)),
    ("r3-e150", dict(D3W16, epochs=150)),
    ("r3-b16-seed1", dict(D3W16, batch=16, seed=1)),
]
CONFIGS = [{**BASE, **v, "name": name} for name, v in VARIANTS]
CONFIGS_ROUND2 = [{**BASE, **v, "name": name} for name, v in ROUND2]
CONFIGS_ROUND3 = [{**BASE, **v, "name": name} for name, v in ROUND3]
SMOKE = [{**BASE, "name": "smoke", "depth": 3, "width": 8, "epochs": 2, "eval_every": 1}]
CALIB = Path(__file__).with_name("cpu_calib.json")
CPU_BUDGET_MIN = 30.0
MAX_WEIGHTS = 15 * 2**20


def describe(cfg: dict, device: torch.device) -> dict:
    net = UNet(cfg).to(device)
    return {
        "params": n_params(net),
        "gflop_per_mp": count_flops(net, cfg["bands"]) / 1e9,
        "rf_px": receptive_field(cfg),
    }


def cpu_columns(row: dict, calib: dict | None) -> dict:
    """CPU (2-core) training minutes for the epochs run and epochs in 30 minutes, scaled by
    forward FLOPs from one timed epoch of the cheapest config (depthwise convs do fewer FLOPs per
    second than dense ones, so this overestimates dense nets), and ORT MP/s measured here."""
    if not calib:
        return {}
    mine = calib["configs"].get(row["name"], {})
    ref = calib["reference"]  # a full epoch timed; the few-step times of calibrate are too noisy
    per_epoch = ref["epoch_s"] * row["gflop_per_mp"] / ref["gflop_per_mp"]
    return {
        "cpu_min_epochs_run": per_epoch * row.get("epochs_run", 0) / 60,
        "cpu_epochs_in_30min": CPU_BUDGET_MIN * 60 / per_epoch,
        "cpu_ort_mps_here": mine.get("ort_mps"),
    }


COLUMNS = [
    ("name", "{}"),
    ("depth", "{}"),
    ("width", "{}"),
    ("conv", "{}"),
    ("stem", "{}"),
    ("bands", "{}"),
    ("sigma", "{}"),
    ("loss", "{}"),
    ("params", "{:,}"),
    ("gflop_per_mp", "{:.1f}"),
    ("rf_px", "{}"),
    ("epochs_run", "{}"),
    ("best_epoch", "{}"),
    ("train_s", "{:.0f}"),
    ("P", "{:.3f}"),
    ("R", "{:.3f}"),
    ("F1", "{:.3f}"),
    ("count_err", "{:+.1%}"),
    ("t", "{}"),
    ("min_dist", "{}"),
    ("ort_mps_device", "{:.2f}"),
    ("cpu_ort_mps_here", "{:.2f}"),
    ("cpu_min_epochs_run", "{:.0f}"),
    ("cpu_epochs_in_30min", "{:.0f}"),
]


def write(out: Path, rows: list[dict], meta: dict) -> None:
    (out / "sweep.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [
        "# CNN sweep (val split: 43 tiles; F1 at 10 px, optimal one-to-one matching)",
        "",
        " ".join(f"{k}={v}" for k, v in meta.items()),
        "",
        "| " + " | ".join(c for c, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        cells = [fmt.format(r[c]) if r.get(c) is not None else "" for c, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")


def pick_best(rows: list[dict]) -> dict | None:
    fits = [r for r in rows if "F1" in r and r["params"] * 4 <= MAX_WEIGHTS]
    return max(fits, key=lambda r: r["F1"]) if fits else None


def net_from(cfg: dict, state: dict) -> UNet:
    net = UNet(cfg)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def finish(out: Path, rows: list[dict], states: dict, meta: dict, deadline: float, log) -> None:
    best = pick_best(rows)
    if best is None:
        return
    cfg = {k: best[k] for k in (*BASE, "name")}
    state = states[best["name"]]
    torch.save(
        {
            "config": cfg,
            "stats": best["stats"],
            "state_dict": {k: v.half() for k, v in state.items()},
        },
        out / "best.pt",
    )
    meta["best"] = best["name"]
    try:
        export_onnx(net_from(cfg, state), best["stats"], cfg["bands"], out / "best.onnx")
        diff = check_onnx(net_from(cfg, state), best["stats"], cfg["bands"], out / "best.onnx")
    except Exception as err:  # the table is written; say why there is no ONNX, then stop
        meta["onnx_error"] = f"{type(err).__name__}: {err}"[:300]
        log(f"ONNX export/check failed: {meta['onnx_error']}")
        write(out, rows, meta)
        return
    meta["best_onnx_max_abs_diff"] = diff
    log(f"best {best['name']} F1 {best['F1']:.3f}; onnx diff {meta['best_onnx_max_abs_diff']:.2e}")
    write(out, rows, meta)
    side = meta["ort_side"]
    for row in sorted(rows, key=lambda r: r["name"] != best["name"]):
        if time.monotonic() > deadline or "F1" not in row:
            continue
        rcfg = {k: row[k] for k in (*BASE, "name")}
        path = Path("/tmp") / f"cnn_{row['name']}.onnx"
        export_onnx(net_from(rcfg, states[row["name"]]), row["stats"], rcfg["bands"], path)
        row["ort_mps_device"] = ort_mps(path, rcfg["bands"], side=side)
        log(f"ort {row['name']}: {row['ort_mps_device']:.2f} MP/s ({side}^2, 2 threads)")
        write(out, rows, meta)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "cnn-sweep")))
    ap.add_argument("--budget-s", type=float, default=420.0, help="wall seconds for everything")
    ap.add_argument("--ort-reserve-s", type=float, default=60.0, help="kept for export + ORT")
    ap.add_argument("--only", default="", help="comma-separated config names")
    ap.add_argument("--partial-ok", action="store_true", help="go on if a data part is missing")
    ap.add_argument("--smoke", action="store_true", help="tiny config, 2 epochs (CPU test)")
    ap.add_argument("--round", type=int, default=1, choices=(1, 2, 3), help="which config list")
    ap.add_argument("--calibrate", action="store_true", help="CPU timings -> cpu_calib.json")
    args = ap.parse_args(argv)
    start = time.monotonic()
    if args.calibrate:
        from .calibrate import calibrate

        return calibrate(CONFIGS, CALIB)
    log = print
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    rounds = {1: CONFIGS, 2: CONFIGS_ROUND2, 3: CONFIGS_ROUND3}
    configs = SMOKE if args.smoke else rounds[args.round]
    if args.only:
        configs = [c for c in configs if c["name"] in args.only.split(",")]
    calib = json.loads(CALIB.read_text()) if CALIB.exists() else None
    data = load_dataset(partial_ok=args.partial_ok)
    log(
        f"data: {len(data['train']['names'])} train, {len(data['val']['names'])} val tiles; "
        f"device {device}; {time.monotonic() - start:.1f}s"
    )
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "budget_s": args.budget_s,
        "ort_side": 256 if args.smoke else 1024,
        "train_tiles": len(data["train"]["names"]),
        "val_tiles": len(data["val"]["names"]),
    }
    end_train = start + args.budget_s - args.ort_reserve_s
    rows: list[dict] = []
    states: dict[str, dict] = {}
    for i, cfg in enumerate(configs):
        cap = (end_train - time.monotonic()) / (len(configs) - i)
        if cap < 5:
            log(f"skip {cfg['name']}: out of time")
            continue
        row = {**cfg, **describe(cfg, device)}
        log(
            f"[{i + 1}/{len(configs)}] {cfg['name']}: {row['params']:,} params, "
            f"{row['gflop_per_mp']:.1f} GFLOP/MP, RF {row['rf_px']} px, cap {cap:.0f}s"
        )
        net = UNet(cfg)
        res = fit(net, cfg, data, device, cap, log)
        row.update(res.pop("val"), **res)
        row.update(cpu_columns(row, calib))
        states[cfg["name"]] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        rows.append(row)
        log(
            f"  -> F1 {row['F1']:.3f} P {row['P']:.3f} R {row['R']:.3f} "
            f"count {row['count_err']:+.1%} in {row['train_s']:.0f}s ({row['epochs_run']} ep)"
        )
        write(args.out, rows, meta)
    finish(args.out, rows, states, meta, start + args.budget_s, log)
    log(f"done in {time.monotonic() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
