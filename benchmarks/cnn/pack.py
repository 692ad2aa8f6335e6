"""Pack the urban-tree train+val tiles into two lossless parts for the GPU machine, and load them.

The GPU machine receives at most ~55 MiB per call, so the 426 tiles (111.7 MB raw) travel as two
files of < 40 MiB: ``.devdata/cnn_part_a.npz`` (the first half of the tiles in train.txt order)
and ``.devdata/cnn_part_b.npz`` (the rest of train, then val). Each holds an lzma stream of the
pixels after a lossless, cumsum-invertible prediction: the 2-D gradient residual
``a - W - N + NW`` (mod 256) of every band, then R, B and NIR minus the G residual (mod 256).

Packing (here, needs rasterio):  python -m benchmarks.cnn.pack [--data DIR] [--out .devdata]
Loading (anywhere, numpy only):  ``load_dataset()`` looks in ``.devdata/`` and ``/tmp/devdata/``.
"""

from __future__ import annotations

import argparse
import lzma
import sys
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data/urban_trees_naip_socal")
PART_NAMES = ("cnn_part_a.npz", "cnn_part_b.npz")
SEARCH = (Path(".devdata"), Path("/tmp/devdata"))
TILE = 256
BANDS = 4


def encode(images: np.ndarray) -> bytes:
    """(n, 4, h, w) uint8 -> lzma bytes of the predicted residuals."""
    a = images.astype(np.int16)
    res = a.copy()
    res[..., 1:] -= a[..., :-1]
    res[..., 1:, :] -= a[..., :-1, :]
    res[..., 1:, 1:] += a[..., :-1, :-1]
    for band in (0, 2, 3):
        res[:, band] -= res[:, 1]
    return lzma.compress((res & 255).astype(np.uint8).tobytes(), preset=9)


def decode(blob: bytes, n: int) -> np.ndarray:
    """Inverse of ``encode`` for n tiles of 4 x 256 x 256."""
    res = np.frombuffer(lzma.decompress(blob), np.uint8).reshape(n, BANDS, TILE, TILE)
    res = res.astype(np.int64)
    for band in (0, 2, 3):
        res[:, band] += res[:, 1]
    out = np.cumsum(np.cumsum(res, axis=3), axis=2)
    return (out & 255).astype(np.uint8)


def read_split(data: Path, split: str) -> list[str]:
    return [s.strip() for s in (data / f"{split}.txt").read_text().splitlines() if s.strip()]


def read_points(data: Path, name: str) -> np.ndarray:
    """(k, 2) float32 x, y pixel coordinates; no csv means no trees."""
    path = data / "csv" / f"{name}.csv"
    if not path.exists():
        return np.zeros((0, 2), np.float32)
    pts = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float32)
    if pts.shape[1] != 2:
        raise ValueError(f"{path}: expected two columns x,y, got {pts.shape[1]}")
    return pts


def read_image(data: Path, name: str) -> np.ndarray:
    import rasterio  # only the packing side needs it

    path = data / "images" / f"{name}.tif"
    with rasterio.open(path) as src:
        img = src.read()
    if img.shape != (BANDS, TILE, TILE) or img.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 4x256x256, got {img.dtype} {img.shape}")
    return img


def write_part(path: Path, names: list[str], splits: list[str], data: Path) -> None:
    images = np.stack([read_image(data, n) for n in names])
    pts = [read_points(data, n) for n in names]
    np.savez(
        path,
        names=np.array(names),
        splits=np.array(splits),
        pixels=np.frombuffer(encode(images), np.uint8),
        points=np.concatenate(pts).astype(np.float32),
        counts=np.array([len(p) for p in pts], np.int32),
    )


def find_part(name: str, search: tuple[Path, ...] = SEARCH) -> Path:
    for folder in search:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name}: not in any of {', '.join(map(str, search))}")


def load_part(path: Path) -> tuple[list[str], list[str], np.ndarray, list[np.ndarray]]:
    with np.load(path) as z:
        names = [str(s) for s in z["names"]]
        splits = [str(s) for s in z["splits"]]
        images = decode(z["pixels"].tobytes(), len(names))
        bounds = np.cumsum(np.concatenate([[0], z["counts"]]))
        pts = [z["points"][bounds[i] : bounds[i + 1]] for i in range(len(names))]
    return names, splits, images, pts


def load_dataset(search: tuple[Path, ...] = SEARCH, partial_ok: bool = False) -> dict[str, dict]:
    """{'train': {...}, 'val': {...}}, each with names, images (n,4,256,256) uint8, points.

    With ``partial_ok`` a missing part is reported and skipped (part B alone still has val).
    """
    out: dict[str, dict] = {s: {"names": [], "images": [], "points": []} for s in ("train", "val")}
    for part in PART_NAMES:
        try:
            path = find_part(part, search)
        except FileNotFoundError as err:
            if not partial_ok:
                raise
            print(f"WARNING: {err}; going on without it")
            continue
        names, splits, images, pts = load_part(path)
        for i, split in enumerate(splits):
            out[split]["names"].append(names[i])
            out[split]["images"].append(images[i])
            out[split]["points"].append(pts[i])
    for split in out.values():
        split["images"] = np.stack(split["images"])
    return out


def pack(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train, val = read_split(data, "train"), read_split(data, "val")
    half = (len(train) + len(val)) // 2
    groups = [
        (train[:half], ["train"] * half),
        (train[half:] + val, ["train"] * (len(train) - half) + ["val"] * len(val)),
    ]
    for part, (names, splits) in zip(PART_NAMES, groups, strict=True):
        write_part(out / part, names, splits, data)
        print(f"{out / part}: {len(names)} tiles, {(out / part).stat().st_size / 2**20:.2f} MiB")
    check(data, out)


def check(data: Path, out: Path) -> None:
    """Reload the parts and compare every pixel and point with the GeoTIFFs and CSVs."""
    ds = load_dataset((out,))
    for split, d in ds.items():
        if d["names"] != read_split(data, split):
            raise ValueError(f"{out}: {split} tile order differs from {split}.txt")
        for i, name in enumerate(d["names"]):
            if not np.array_equal(d["images"][i], read_image(data, name)):
                raise ValueError(f"{out}: pixels of {name} do not round-trip")
            if not np.array_equal(d["points"][i], read_points(data, name)):
                raise ValueError(f"{out}: points of {name} do not round-trip")
    print(f"round trip exact: {len(ds['train']['names'])} train, {len(ds['val']['names'])} val")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=Path(".devdata"))
    ap.add_argument("--check-only", action="store_true", help="verify existing parts")
    args = ap.parse_args(argv)
    if args.check_only:
        check(args.data, args.out)
    else:
        pack(args.data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
