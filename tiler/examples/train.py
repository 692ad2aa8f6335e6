"""Train the example pixel classifier (:mod:`tiler.examples.pixel_classifier`).

    python -m tiler.examples.train            # needs scikit-learn (pip install '.[examples]')

Labels come from the NAIP urban-trees points (``tests/data/urban_trees_naip``):
pixels within ``POSITIVE_PX`` of a tree point are "tree", pixels farther than
``NEGATIVE_PX`` from every tree point are "not tree" (lawns, roofs, roads,
shade). Four tiles train; the other four are held out for ``make accuracy``.
Writes ``tiler/data/models/naip-trees.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage as ndi

from tiler.examples.pixel_classifier import FEATURES, features

ROOT = Path(__file__).resolve().parents[2]
NAIP = ROOT / "tests" / "data" / "urban_trees_naip"
TRAIN = ("bishop_2020_3", "claremont_2020_36", "riverside_2020_10", "long_beach_2020_98")
POSITIVE_PX, NEGATIVE_PX = 2.0, 8.0
SAMPLES_PER_CLASS = 20_000
OUT = Path(__file__).resolve().parents[1] / "data" / "models" / "naip-trees.json"


def tile_samples(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of the labelled pixels of one tile."""
    with rasterio.open(NAIP / f"{name}.tif") as ds:
        tile = ds.read()
        inverse = ~ds.transform
    points = json.loads((NAIP / "json" / f"{name}.json").read_text())["features"]
    seeds = np.zeros(tile.shape[1:], dtype=bool)
    for feature in points:
        col, row = inverse * tuple(feature["geometry"]["coordinates"][:2])
        r, c = int(np.floor(row)), int(np.floor(col))
        if 0 <= r < seeds.shape[0] and 0 <= c < seeds.shape[1]:
            seeds[r, c] = True
    distance = ndi.distance_transform_edt(~seeds)
    labelled = (distance <= POSITIVE_PX) | (distance > NEGATIVE_PX)
    x = np.stack([f[labelled] for f in features(tile)], axis=1)
    return x, (distance <= POSITIVE_PX)[labelled]


def train() -> dict:
    """The trained model, as written to JSON."""
    from sklearn.linear_model import LogisticRegression

    parts = [tile_samples(name) for name in TRAIN]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    rng = np.random.default_rng(0)
    n = min(SAMPLES_PER_CLASS, int(y.sum()), int((~y).sum()))  # balanced classes
    chosen = np.concatenate([rng.choice(np.flatnonzero(y == k), n, replace=False) for k in (0, 1)])
    x, y = x[chosen], y[chosen]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    classifier = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    model = {
        "features": list(FEATURES),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": classifier.coef_[0].tolist(),
        "intercept": float(classifier.intercept_[0]),
        "trained_on": list(TRAIN),
        "labels": f"tree: within {POSITIVE_PX} px of a tree point; not: beyond {NEGATIVE_PX} px",
        "training_accuracy": float(classifier.score((x - mean) / scale, y)),
    }
    return model


def main() -> None:
    model = train()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(model, indent=2) + "\n")
    print(f"written {OUT} (training accuracy {model['training_accuracy']:.3f})")


if __name__ == "__main__":
    main()
