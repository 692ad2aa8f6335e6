"""Exact stitching of tile labels into whole-image objects (DESIGN.md section 2).

Pure NumPy/SciPy: seam pairs from tile edges, connected components over the
labels that touch a seam, merged partial statistics, and the final numbering
(rank of each object's first pixel in raster order + 1), which reproduces
``skimage.measure.label`` on the whole image.

Provisional ids are ``tile_index * stride + local_id`` (uint64), with
``stride`` larger than the pixels of any tile, so tiles never collide and no
tile needs to know how many labels the others found.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tiler.kernels.label import FLAGS, STAT_FIELDS, Edges, TileStats, compact

_EMPTY_PAIRS = np.zeros((0, 2), dtype=np.uint64)


def _provisional(local: np.ndarray, tile_index: int, stride: int) -> np.ndarray:
    ids = local.astype(np.uint64)
    ids[local != 0] += np.uint64(tile_index * stride)
    return ids


def _facing_pairs(a: np.ndarray, b: np.ndarray, connectivity: int) -> np.ndarray:
    """Pairs of foreground ids that touch across a seam between the lines ``a`` and ``b``.

    ``a`` and ``b`` are the facing lines of two neighbouring tiles, aligned
    pixel for pixel; with 8-connectivity the diagonal neighbours count too.
    """
    pairs = [np.stack([a, b], axis=1)]
    if connectivity == 2 and len(a) > 1:
        pairs.append(np.stack([a[:-1], b[1:]], axis=1))
        pairs.append(np.stack([a[1:], b[:-1]], axis=1))
    out = np.concatenate(pairs)
    return out[(out[:, 0] != 0) & (out[:, 1] != 0)]


def seam_pairs(
    tile: tuple[int, Edges],
    right: tuple[int, Edges] | None,
    below: tuple[int, Edges] | None,
    below_right: tuple[int, Edges] | None,
    *,
    stride: int,
    connectivity: int,
) -> np.ndarray:
    """Equivalent provisional ids across the seams to the right of and below one tile.

    Each argument is ``(tile_index, edges)``; missing neighbours are ``None``.
    The corner pairs (this tile with ``below_right``, and ``right`` with
    ``below``) exist only under 8-connectivity. Every seam of the image is
    covered by exactly one tile's call.

    Returns
    -------
    (K, 2) ndarray of uint64, unique rows.
    """
    index, edges = tile
    found = []
    if right is not None:
        j, e = right
        found.append(
            _facing_pairs(
                _provisional(edges.right, index, stride),
                _provisional(e.left, j, stride),
                connectivity,
            )
        )
    if below is not None:
        j, e = below
        found.append(
            _facing_pairs(
                _provisional(edges.bottom, index, stride),
                _provisional(e.top, j, stride),
                connectivity,
            )
        )
    if connectivity == 2 and below_right is not None:
        j, e = below_right
        a, b = int(edges.bottom[-1]), int(e.top[0])
        if a and b:
            found.append(np.array([[index * stride + a, j * stride + b]], dtype=np.uint64))
    if connectivity == 2 and right is not None and below is not None:
        (ri, re), (bi, be) = right, below
        a, b = int(re.bottom[0]), int(be.top[-1])
        if a and b:
            found.append(np.array([[ri * stride + a, bi * stride + b]], dtype=np.uint64))
    if not found:
        return _EMPTY_PAIRS
    return np.unique(np.concatenate(found), axis=0)


@dataclass(frozen=True)
class Stitched:
    """Whole-image objects built from tile labels.

    Attributes
    ----------
    offsets : (T + 1,) ndarray of int64
        Labels of tile ``t`` are rows ``offsets[t]:offsets[t + 1]`` of the
        concatenated tile labels (local id ``k`` is row ``offsets[t] + k - 1``).
    object_of : (L,) ndarray of int32 (int64 beyond 2**31 labels)
        For each tile label, the index of its object (0..K-1), objects sorted
        by first pixel in raster order, so object ``i`` is label ``i + 1`` of
        ``skimage.measure.label`` on the whole image.
    stats : dict of str to (K,) ndarray of int8, int32 or int64
        Merged statistics per object (fields of ``TileStats``), each in the
        smallest of those types that holds its values (:func:`compact`).
    """

    offsets: np.ndarray
    object_of: np.ndarray
    stats: dict[str, np.ndarray]

    @property
    def n_objects(self) -> int:
        return len(self.stats["count"])

    def tile_lut(self, tile_index: int, values: np.ndarray, background=0) -> np.ndarray:
        """Look-up table from tile-local ids (0..n) to per-object ``values``."""
        objects = self.object_of[self.offsets[tile_index] : self.offsets[tile_index + 1]]
        lut = np.empty(len(objects) + 1, dtype=values.dtype)
        lut[0] = background
        lut[1:] = values[objects]
        return lut


def stitch(
    tiles: Sequence[TileStats], pairs: Sequence[np.ndarray], stride: int, *, release: bool = False
) -> Stitched:
    """Merge tile labels joined across seams into objects and combine their statistics.

    Parameters
    ----------
    tiles : sequence of TileStats
        Partial statistics of each tile, in tile-index order.
    pairs : sequence of (K, 2) ndarray of uint64
        Provisional ids that are the same object (from :func:`seam_pairs`).
    stride : int
        The stride of provisional ids.
    release : bool
        ``tiles`` is a list to empty as it goes: each tile's entry becomes
        ``None`` once its statistics are in the objects' columns, so the
        driver does not hold both whole.

    Memory: no column of every tile label is ever concatenated or sorted.
    Every object has a *head*, its tile label of smallest row (interior
    labels are their own heads), and heads keep their order; the heads'
    statistics go tile by tile straight into their object's row, and the
    objects that labels join across seams (few: they touch seams) are merged
    apart, in int64. Beyond the tiles' own statistics the driver holds one
    index per label and, per object, its merged statistics in the smallest
    integer type that holds them (:func:`tiler.kernels.label.compact`).
    """
    counts = np.fromiter((t.n for t in tiles), dtype=np.int64, count=len(tiles))
    offsets = np.zeros(len(tiles) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n_labels = int(offsets[-1])
    index = index_dtype(n_labels)

    # Connected components over the labels that touch a seam only: interior
    # labels are objects on their own, so the graph grows with the seams.
    tails, heads = _seam_tails(pairs, offsets, stride)
    is_head = np.ones(n_labels, dtype=bool)
    is_head[tails] = False
    joined = _Joined(tiles, tails, heads, offsets)
    # Objects numbered by their head's row first (heads in order), then by first pixel.
    head_number = np.cumsum(is_head, dtype=index)
    head_number -= 1
    n_objects = n_labels - len(tails)
    first = np.empty(n_objects, dtype=np.int64)
    for t, target, head in _heads(tiles, is_head, head_number, offsets):
        first[target] = tiles[t].first[head]
    first[head_number[joined.heads]] = joined.merged["first"]
    rank = np.argsort(first)  # firsts are distinct pixels: any sort gives the same order
    del first
    position = np.empty(n_objects, dtype=index)
    position[rank] = np.arange(n_objects, dtype=index)
    del rank
    head_number[tails] = head_number[heads]
    object_of = position[head_number]
    del head_number, position

    columns = {name: np.empty(n_objects, joined.dtype(name)) for name in STAT_FIELDS}
    for t, target, head in _heads(tiles, is_head, object_of, offsets):
        for name, column in columns.items():
            column[target] = getattr(tiles[t], name)[head]
        if release:
            tiles[t] = None  # type: ignore[index]
            if t % TRIM_EVERY == TRIM_EVERY - 1:
                _give_back_freed()
    if release:
        _give_back_freed()
    stats = {}
    for name, column in columns.items():
        column[object_of[joined.heads]] = joined.merged[name]
        stats[name] = compact(column, name in FLAGS)
    return Stitched(offsets=offsets, object_of=object_of, stats=stats)


#: released tiles between two calls of glibc's ``malloc_trim``
TRIM_EVERY = 16
_MALLOC_TRIM = (
    getattr(ctypes.CDLL(None), "malloc_trim", None) if sys.platform.startswith("linux") else None
)


def _give_back_freed() -> None:
    """Return the freed heap pages to the system, where glibc's ``malloc_trim`` exists.

    The tiles' statistics arrive as many arrays of some hundred kilobytes,
    which glibc places in its heap; freed, their pages stay the process's
    until trimmed, so without this the driver's resident memory would hold
    the released tiles and the objects' columns both. A trim walks the heap
    (milliseconds), hence every ``TRIM_EVERY`` tiles, not every tile.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def index_dtype(n: int) -> np.dtype:
    """int32 for indices below 2**31, else int64."""
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


def _heads(
    tiles: Sequence[TileStats], is_head: np.ndarray, target: np.ndarray, offsets: np.ndarray
):
    """For each tile: its index, ``target`` of its head labels, and which labels are heads."""
    for t in range(len(tiles)):
        a, b = offsets[t], offsets[t + 1]
        head = is_head[a:b]
        if head.all():
            yield t, target[a:b], slice(None)
        else:
            yield t, target[a:b][head], head


class _Joined:
    """The objects that labels join across seams: their head rows and merged statistics.

    Few (their labels touch seams), so merged in int64 from the heads' and
    the joined labels' own statistics before the tiles are gathered.
    """

    def __init__(
        self, tiles: Sequence[TileStats], tails: np.ndarray, heads: np.ndarray, offsets: np.ndarray
    ):
        self.heads = np.unique(heads)
        into = np.searchsorted(self.heads, heads)
        self.merged = {}
        for name in STAT_FIELDS:
            merged = _rows_of(tiles, name, self.heads, offsets)
            _fold(merged, name, into, _rows_of(tiles, name, tails, offsets))
            self.merged[name] = merged
        self.types = {
            name: np.result_type(*(getattr(t, name).dtype for t in tiles), np.int8)
            for name in STAT_FIELDS
        }

    def dtype(self, name: str) -> np.dtype:
        """The type of the objects' column ``name``: the tiles' own, unless a merge overflows it."""
        dtype, merged = self.types[name], self.merged[name]
        info = np.iinfo(dtype)
        if len(merged) and not (info.min <= merged.min() and merged.max() <= info.max):
            return np.dtype(np.int64)
        return dtype


def _seam_tails(
    pairs: Sequence[np.ndarray], offsets: np.ndarray, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """The label rows joined to a smaller row across seams, and that smallest row of each.

    Returns ``(tails, heads)``: sorted rows that are not the first (smallest)
    row of their seam component, and for each the component's first row.
    """
    edges = np.concatenate(list(pairs) or [_EMPTY_PAIRS]).astype(np.uint64)
    if not len(edges):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tile_of = (edges // np.uint64(stride)).astype(np.int64)
    local = (edges % np.uint64(stride)).astype(np.int64)
    rows = offsets[tile_of] + local - 1
    nodes, inverse = np.unique(rows.ravel(), return_inverse=True)
    inverse = inverse.reshape(rows.shape)
    graph = coo_matrix(
        (np.ones(len(inverse), dtype=np.int8), (inverse[:, 0], inverse[:, 1])),
        shape=(len(nodes), len(nodes)),
    )
    _, component = connected_components(graph, directed=False)
    smallest = np.full(int(component.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, component, nodes)  # nodes are sorted: the first row of each
    heads = smallest[component]
    tail = heads != nodes
    return nodes[tail], heads[tail]


def _rows_of(
    tiles: Sequence[TileStats], name: str, rows: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Field ``name`` of the label ``rows`` (sorted) of the concatenated tiles, as int64."""
    out = np.empty(len(rows), dtype=np.int64)
    bounds = np.searchsorted(rows, offsets)
    for t in np.flatnonzero(np.diff(bounds)):
        a, b = bounds[t], bounds[t + 1]
        out[a:b] = getattr(tiles[t], name)[rows[a:b] - offsets[t]]
    return out


def _fold(column: np.ndarray, name: str, into: np.ndarray, values: np.ndarray) -> None:
    """Merge ``values`` into ``column[into]`` as field ``name`` merges (sum, min or max)."""
    if name.startswith("min") or name == "first":
        np.minimum.at(column, into, values)
    elif name.startswith("max") or name in FLAGS:
        np.maximum.at(column, into, values)
    else:
        np.add.at(column, into, values)


def renumber(keep: np.ndarray, dtype: np.dtype | type = np.int64) -> np.ndarray:
    """Final ids (1..) for kept objects in order, 0 for dropped ones, as ``dtype``."""
    ids = np.zeros(len(keep), dtype=dtype)
    ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=dtype)
    return ids
