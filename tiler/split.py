"""Tiled watershed splitting: halo windows, ownership by centroid, merge (DESIGN.md 1).

Pure NumPy/SciPy, no dask. The ``split: watershed`` step reaches as far as an
object is large (the distance transform and the flooding see the whole
object), so tiled it is approximate:

1. :func:`split_tile` runs :func:`tiler.kernels.split.watershed_split` on each
   tile's window (its core grown by a halo ``H``, clipped at the image border)
   and measures each window instance: area, centroid and *anchor*, the
   centroid's floor ``(sum_row // area, sum_col // area)`` in image
   coordinates. An instance is *owned* by the tile whose core holds its
   anchor: cores partition the pixels, so exactly one tile owns it, even with
   a centroid on a core boundary, and the integer arithmetic gives every
   window the same answer for the same instance.
2. :func:`assign_core` gives each pixel ``p`` of a tile B's core the instance
   covering ``p`` in the window of the tile T that owns B's instance at ``p``
   (B itself when it owns it). If T's instance at ``p`` is not owned by T
   (the two windows disagree), or ``p`` is outside T's window, the pixel takes
   T's owned instance of the largest IoU with B's instance in the overlap of
   the two windows; if none overlaps, or T is not among the tiles given, B's
   own instance id. Both fallbacks are counted.
3. :func:`renumber_split` makes one object per provisional id and numbers the
   objects by their first pixel in raster order, with :func:`tiler.stitch.stitch`,
   so numbers do not depend on the tiling.

Provisional ids are ``tile_index * stride + window_id`` (uint64) of the owning
tile, with ``stride`` (:func:`split_stride`) above the pixels of any window.

With ``H`` at least the bounding-box side of the largest connected component
of the mask, every window that decides an object holds that object's whole
component and a background margin, and the result equals the whole-image
reference. Touching objects form components of any size, but the split is
local at the scale of the objects themselves (the reference floods tied
markers in raster order for that reason, see :mod:`tiler.kernels.split`): a
halo of about the largest object's diameter reproduces 99-100 % of the
reference objects (``tests/test_split.py``, ``benchmarks/split_agreement.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from tiler.kernels.label import TileStats, relabel, tile_stats
from tiler.kernels.split import watershed_split
from tiler.stitch import Stitched, stitch
from tiler.tiling import TileGrid, Window


def split_stride(chunks: tuple[int, int], halo: int) -> int:
    """Provisional-id stride: more than the pixels of any window (core + halo)."""
    return (chunks[0] + 2 * halo) * (chunks[1] + 2 * halo) + 1


def _inside(points: np.ndarray, window: Window) -> np.ndarray:
    rows, cols = points[:, 0], points[:, 1]
    w = window
    return (rows >= w.row_start) & (rows < w.row_stop) & (cols >= w.col_start) & (cols < w.col_stop)


@dataclass(frozen=True)
class SplitTile:
    """The watershed instances of one tile's window, measured in image coordinates.

    Attributes
    ----------
    index : int
        Tile index (row-major).
    core : Window
        The tile's core in image coordinates.
    origin : (row, col)
        Image position of ``labels[0, 0]``.
    labels : (M, N) ndarray of int32
        Instance ids 1..n over (part of) the window, 0 for background.
    area, anchor, centroid : ndarray
        Per instance ``k`` at row ``k - 1``: pixel count in the whole window
        (int64), floor of the centroid (``(n, 2)`` int64) and centroid
        (``(n, 2)`` float64), as ``(row, col)``.
    """

    index: int
    core: Window
    origin: tuple[int, int]
    labels: np.ndarray
    area: np.ndarray
    anchor: np.ndarray
    centroid: np.ndarray

    @property
    def extent(self) -> Window:
        """The part of the image that ``labels`` covers."""
        (r, c), (h, w) = self.origin, self.labels.shape
        return Window(r, r + h, c, c + w)

    @property
    def owned(self) -> np.ndarray:
        """``(n + 1,)`` bool: whether instance ``k`` has its anchor in the core (0 is not)."""
        return np.r_[False, _inside(self.anchor, self.core)]

    def crop(self, window: Window) -> SplitTile:
        """The same instances with ``labels`` cut to ``window`` (to send neighbours less)."""
        kept = self.extent.intersection(window)
        return replace(self, origin=kept.origin, labels=self.labels[_local(self, kept)])


def _local(tile: SplitTile, window: Window) -> tuple[slice, slice]:
    return window.relative_to(tile.origin).slices


def split_tile(
    window_mask: np.ndarray,
    outer: Window,
    core: Window,
    index: int,
    image_shape: tuple[int, int],
    *,
    min_distance: int,
    footprint: int | None,
    connectivity: int,
) -> SplitTile:
    """Split the objects of one tile's window and measure its instances.

    Parameters
    ----------
    window_mask : (M, N) ndarray of bool
        The final mask over ``outer``.
    outer : Window
        The window: the core grown by the halo, clipped at the image border
        (:meth:`tiler.tiling.Window.grow`).
    core : Window
        The tile itself, inside ``outer``.
    index : int
        Tile index.
    image_shape : (height, width)
        Shape of the whole image.
    min_distance, footprint, connectivity
        As :func:`tiler.kernels.split.watershed_split`.
    """
    labels, n = watershed_split(window_mask, min_distance, footprint, connectivity)
    return measure_window(labels, n, outer, core, index, image_shape)


def measure_window(
    labels: np.ndarray,
    n: int,
    outer: Window,
    core: Window,
    index: int,
    image_shape: tuple[int, int],
) -> SplitTile:
    """A window's instances (labels 1..n over ``outer``) measured for :func:`assign_core`."""
    stats = tile_stats(labels, n, outer.origin, image_shape)
    sums = np.stack([stats.sum_row, stats.sum_col], axis=1)
    return SplitTile(
        index=index,
        core=core,
        origin=outer.origin,
        labels=labels,
        area=stats.count,
        anchor=sums // stats.count[:, None],
        centroid=sums / stats.count[:, None],
    )


@dataclass(frozen=True)
class CoreSplit:
    """One tile's core after the merge, ready for :func:`renumber_split`.

    Attributes
    ----------
    labels : (M, N) ndarray of int32
        Local labels 1..k of the core, 0 for background; label ``k`` is the
        object with provisional id ``ids[k - 1]``.
    ids : (k,) ndarray of uint64
        Provisional ids (``owner_tile * stride + owner_window_id``), sorted.
    stats : TileStats
        Partial statistics of the local labels, in image coordinates.
    fallback_iou, fallback_own : int
        Instances of this tile's window with core pixels that the owner's
        window did not confirm, resolved by the best IoU / left with this
        tile's own id.
    """

    labels: np.ndarray
    ids: np.ndarray
    stats: TileStats
    fallback_iou: int
    fallback_own: int

    @property
    def provisional(self) -> np.ndarray:
        """The core's provisional ids, ``(M, N)`` uint64 (0 for background)."""
        return np.r_[np.uint64(0), self.ids][self.labels]


def _best_overlap(tile: SplitTile, instance: int, owner: SplitTile) -> int:
    """The owner's owned instance of the largest IoU with ``instance`` of ``tile``, or 0.

    IoU is measured where both windows' labels are known; ties go to the lowest id.
    """
    overlap = tile.extent.intersection(owner.extent)
    mine = tile.labels[_local(tile, overlap)] == instance
    theirs = owner.labels[_local(owner, overlap)]
    n = len(owner.area) + 1
    shared = np.bincount(theirs[mine], minlength=n)
    union = np.bincount(theirs.ravel(), minlength=n) + mine.sum() - shared
    iou = np.where(owner.owned & (shared > 0), shared / np.maximum(union, 1), 0.0)
    return int(np.argmax(iou)) if iou.max() > 0 else 0


def assign_core(
    tile: SplitTile,
    others: Sequence[SplitTile],
    *,
    stride: int,
    image_shape: tuple[int, int],
) -> CoreSplit:
    """Decide the object of every pixel of a tile's core (the merge rule in the module docstring).

    Parameters
    ----------
    tile : SplitTile
        The tile B (its labels must cover its core).
    others : sequence of SplitTile
        Tiles whose cores meet B's window (:meth:`TileGrid.neighbours`); their labels
        may be cropped to B's window (:meth:`SplitTile.crop`).
    stride : int
        :func:`split_stride`, the same for every tile.
    image_shape : (height, width)
        Shape of the whole image.
    """
    mine = tile.labels[_local(tile, tile.core)].ravel()
    rows, cols = np.divmod(np.arange(mine.size), tile.core.width)
    points = np.stack([rows + tile.core.row_start, cols + tile.core.col_start], axis=1)
    owners = [tile, *others]
    owner_of = np.full(len(tile.area) + 1, -1)  # position in owners of each instance's owner
    for position, owner in enumerate(owners):
        owner_of[1:][_inside(tile.anchor, owner.core)] = position

    ids = np.zeros(mine.shape, np.uint64)
    unresolved = (owner_of[mine] == -1) & (mine > 0)
    for position, owner in enumerate(owners):
        here = np.flatnonzero((owner_of[mine] == position) & (mine > 0))
        found = _lookup(owner, points[here])
        ids[here] = owner.index * stride + found.astype(np.uint64)
        unresolved[here[found == 0]] = True

    fallback_iou = fallback_own = 0
    for instance in np.unique(mine[unresolved]):
        position = owner_of[instance]
        best = _best_overlap(tile, instance, owners[position]) if position > 0 else 0
        if best:
            fallback_iou += 1
            ids[unresolved & (mine == instance)] = owners[position].index * stride + best
        else:
            fallback_own += 1
            ids[unresolved & (mine == instance)] = tile.index * stride + instance
    core = tile.core
    return _compact(ids.reshape(core.shape), core, image_shape, fallback_iou, fallback_own)


def _lookup(owner: SplitTile, points: np.ndarray) -> np.ndarray:
    """The owner's instance at each point if the owner owns it, else 0."""
    found = np.zeros(len(points), np.int64)
    inside = _inside(points, owner.extent)
    local = points[inside] - np.asarray(owner.origin)
    at = owner.labels[local[:, 0], local[:, 1]]
    found[inside] = np.where(owner.owned[at], at, 0)
    return found


def _compact(
    ids: np.ndarray,
    core: Window,
    image_shape: tuple[int, int],
    fallback_iou: int,
    fallback_own: int,
) -> CoreSplit:
    unique, local = np.unique(ids, return_inverse=True)
    if len(unique) and unique[0] == 0:
        unique = unique[1:]
    else:
        local += 1
    labels = local.reshape(ids.shape).astype(np.int32)
    stats = tile_stats(labels, len(unique), core.origin, image_shape)
    return CoreSplit(labels, unique, stats, fallback_iou, fallback_own)


def renumber_split(ids: Sequence[np.ndarray], stats: Sequence[TileStats]) -> Stitched:
    """One object per provisional id, numbered by first pixel in raster order.

    Parameters
    ----------
    ids, stats : sequences of (k,) ndarray of uint64 and TileStats
        ``CoreSplit.ids`` and ``CoreSplit.stats`` of every tile, in
        tile-index order (the labels stay with the tiles).

    Returns
    -------
    Stitched
        ``tile_lut(t, values)`` maps tile ``t``'s local labels to per-object
        values (``numpy.arange(1, n_objects + 1)`` for the final ids);
        ``stats`` holds each object's merged statistics.
    """
    # Tile labels with the same provisional id are one object: pair them up
    # (as stitching pairs labels across seams) and let stitch() merge and number.
    stride = max((len(i) for i in ids), default=0) + 1
    empty = [np.zeros(0, np.uint64)]
    rows = np.concatenate(
        [t * stride + np.arange(1, len(i) + 1, dtype=np.uint64) for t, i in enumerate(ids)] or empty
    )
    everything = np.concatenate(list(ids) or empty)
    order = np.argsort(everything, kind="stable")
    same = everything[order][1:] == everything[order][:-1]
    pairs = np.stack([rows[order][:-1][same], rows[order][1:][same]], axis=1)
    return stitch(stats, [pairs], stride)


@dataclass(frozen=True)
class SplitResult:
    """The tiled split of a whole mask, in memory (:func:`split_in_memory`)."""

    labels: np.ndarray
    n: int
    fallback_iou: int
    fallback_own: int


def split_in_memory(
    mask: np.ndarray,
    chunks: tuple[int, int],
    halo: int,
    *,
    min_distance: int,
    footprint: int | None,
    connectivity: int,
) -> SplitResult:
    """Run the tiled split on an in-memory mask, tile by tile, without dask.

    The three steps in the order an engine runs them (every window, then every
    core with its neighbours, then one renumbering); used by the tests and by
    ``benchmarks/split_agreement.py``.
    """
    shape = mask.shape
    grid = TileGrid(shape, chunks)
    options = dict(min_distance=min_distance, footprint=footprint, connectivity=connectivity)
    tiles = {}
    for t, i, j, core in grid:
        outer = core.grow(halo, shape)
        tiles[i, j] = split_tile(mask[outer.slices], outer, core, t, shape, **options)

    stride = split_stride(chunks, halo)
    cores = [
        assign_core(
            tile,
            [tiles[n].crop(tile.extent) for n in grid.neighbours(i, j, halo)],
            stride=stride,
            image_shape=shape,
        )
        for (i, j), tile in tiles.items()
    ]

    stitched = renumber_split([c.ids for c in cores], [c.stats for c in cores])
    final = np.arange(1, stitched.n_objects + 1, dtype=np.int64)
    labels = np.zeros(shape, np.int64)
    for tile, core in zip(tiles.values(), cores, strict=True):
        labels[tile.core.slices] = relabel(core.labels, stitched.tile_lut(tile.index, final))
    return SplitResult(
        labels=labels,
        n=stitched.n_objects,
        fallback_iou=sum(c.fallback_iou for c in cores),
        fallback_own=sum(c.fallback_own for c in cores),
    )


def identical_objects(reference: np.ndarray, labels: np.ndarray) -> int:
    """How many objects of ``reference`` are exactly one object of ``labels`` (same pixels)."""
    ref, lab = reference.ravel().astype(np.int64), labels.ravel().astype(np.int64)
    base = int(lab.max(initial=0)) + 1
    keys, shared = np.unique(ref * base + lab, return_counts=True)
    ref_id, lab_id = np.divmod(keys, base)
    same = (
        (ref_id > 0)
        & (lab_id > 0)
        & (shared == np.bincount(ref)[ref_id])
        & (shared == np.bincount(lab)[lab_id])
    )
    return int(same.sum())
