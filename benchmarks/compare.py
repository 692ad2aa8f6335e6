"""Compare label images stored as Zarr arrays, one block at a time.

``identical``: the same numbers in every pixel (tiler against the reference).
``same_partition``: equal up to renumbering (a peer against the reference):
the pairs (reference label, peer label) seen over all pixels form a bijection,
background included. Both also report how many mask pixels agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr


def open_labels(path: str | Path) -> zarr.Array:
    """A Zarr array, or the ``labels`` array of a Zarr group (tiler's ``labels.zarr``)."""
    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        node = node["labels"]
    return node


def _blocks(shape: tuple[int, ...], step: int) -> Iterator[tuple[slice, slice]]:
    for r in range(0, shape[0], step):
        for c in range(0, shape[1], step):
            yield slice(r, min(r + step, shape[0])), slice(c, min(c + step, shape[1]))


def _step(a: zarr.Array, rows: int = 4096) -> int:
    return max(a.chunks[0], (rows // a.chunks[0]) * a.chunks[0])


def identical(a_path: str | Path, b_path: str | Path) -> dict[str, Any]:
    """Whether two label arrays hold the same value in every pixel, block by block."""
    a, b = open_labels(a_path), open_labels(b_path)
    if a.shape != b.shape:
        return {"identical": False, "reason": f"shapes {a.shape} != {b.shape}"}
    differing = mask_differing = 0
    for sl in _blocks(a.shape, _step(a)):
        x, y = a[sl], b[sl]
        differing += int(np.count_nonzero(x.astype(np.int64) != y.astype(np.int64)))
        mask_differing += int(np.count_nonzero((x > 0) != (y > 0)))
    n = a.shape[0] * a.shape[1]
    return {
        "identical": differing == 0,
        "differing_pixels": differing,
        "mask_agreement": 1.0 - mask_differing / n,
    }


def same_partition(ref_path: str | Path, peer_path: str | Path) -> dict[str, Any]:
    """Whether two labelings are equal up to renumbering (a bijection of labels)."""
    a, b = open_labels(ref_path), open_labels(peer_path)
    if a.shape != b.shape:
        return {"same_partition": False, "reason": f"shapes {a.shape} != {b.shape}"}
    pairs = []
    mask_differing = 0
    for sl in _blocks(a.shape, _step(a)):
        x = a[sl].astype(np.uint64)
        y = b[sl].astype(np.int64)
        if (y < 0).any() or (y >= 2**32).any():
            return {"same_partition": False, "reason": "peer labels outside [0, 2**32)"}
        mask_differing += int(np.count_nonzero((x > 0) != (y > 0)))
        pairs.append(np.unique((x << np.uint64(32)) | y.astype(np.uint64)))
    merged = np.unique(np.concatenate(pairs))
    ref_ids, peer_ids = merged >> np.uint64(32), merged & np.uint64(0xFFFFFFFF)
    n_ref, n_peer = np.unique(ref_ids).size, np.unique(peer_ids).size
    n = a.shape[0] * a.shape[1]
    return {
        "same_partition": bool(n_ref == merged.size == n_peer),
        "pairs": int(merged.size),
        "ref_labels": int(n_ref),
        "peer_labels": int(n_peer),
        "mask_agreement": 1.0 - mask_differing / n,
    }


def areas_match(ref_areas: str | Path, other_areas: str | Path, *, ordered: bool) -> bool:
    """Whether the per-object areas agree: label by label, or as sorted multisets."""
    x, y = np.load(ref_areas), np.load(other_areas)
    if not ordered:
        x, y = np.sort(x), np.sort(y)
    return bool(x.shape == y.shape and np.array_equal(x, y))
