"""Models for the ``model:`` step's tests, importable as ``example_models:NAME``."""

from __future__ import annotations

import os
import signal

import numpy as np
from scipy import ndimage as ndi


def bright_mean(tile: np.ndarray) -> np.ndarray:
    """3 x 3 mean of the first band above 120: looks one pixel away (exact with ``halo: 1``).

    Summed in integers, so any window gives the whole image's sums.
    """
    sums = ndi.correlate(tile[0].astype(np.int64), np.ones((3, 3), np.int64), mode="nearest")
    return sums > 9 * 120


def green_pixels(tile: np.ndarray) -> np.ndarray:
    """A per-pixel rule (exact with ``halo: 0``), returned as 0/1 integers."""
    return (tile[1].astype(np.int32) > tile[0]).astype(np.uint8)


def wrong_shape(tile: np.ndarray) -> np.ndarray:
    return np.zeros((1, 1), dtype=bool)


def probabilities(tile: np.ndarray) -> np.ndarray:
    return tile[0] / 255.0


def bright_blobs(tile: np.ndarray) -> np.ndarray:
    """Instances: the 8-connected components of :func:`bright_mean` (int32 labels)."""
    labels, _ = ndi.label(bright_mean(tile), structure=np.ones((3, 3), bool))
    return labels


def negative_labels(tile: np.ndarray) -> np.ndarray:
    return -np.ones(tile.shape[1:], dtype=np.int64)


def dies_on_marker(tile: np.ndarray) -> np.ndarray:
    """Kills its own process, as the OOM killer would, on a tile holding 251 in band 1."""
    if (tile[0] == 251).any():
        os.kill(os.getpid(), signal.SIGKILL)
    return tile[1] > tile[0]


def confidence(tile: np.ndarray) -> np.ndarray:
    """A per-pixel points model: mean brightness in 16 steps (plateaus), in [0, 1]."""
    return np.round(tile.astype(np.float64).mean(axis=0) / 255 * 16) / 16


def bad_confidence(tile: np.ndarray) -> np.ndarray:
    return tile.astype(np.float64).mean(axis=0)  # 0..255: not a confidence
