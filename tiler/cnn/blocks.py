"""A CNN's confidence by fixed blocks: the same bits whatever the tiling.

The image plane is cut into output blocks of ``B x B`` px anchored at
``(0, 0)`` (``B = model.block``, a multiple of the model's shift period).
Block ``(i, j)`` is computed from its input window, the block grown by ``h``
px on every side (``h`` = the receptive radius rounded up to a multiple of
the shift period: :attr:`tiler.cnn.metadata.ModelInfo.halo`), always of
shape ``(B + 2h) x (B + 2h)``, even where the block runs past the image.
Pixels of a window outside the image are the image reflected about its edges,
edge pixels repeated (NumPy's ``mode="symmetric"``: index -1 reads 0, -2
reads 1, ``H`` reads ``H - 1``, and so on periodically for windows larger
than the image); invalid (nodata) pixels enter as read. The windows are
normalised (:meth:`~tiler.cnn.metadata.ModelInfo.normalise`) and run in
batches of exactly ``model.batch`` windows (the last padded with zero
windows), so every ONNX Runtime call sees one tensor shape; the centre
``B x B`` of each output is the block's confidence.

What is guaranteed:

* Bit-identical at any tiling, for a given model file, ONNX Runtime
  version, execution provider and thread count: a pixel's confidence comes
  from its block, whose input is the same window whichever tile asks for it
  (tested, with the batch position varied).
* Equal to one forward pass of the network over the whole reflect-padded
  image, up to float rounding (tested within 1e-5 away from the image's
  edges): a block's window starts on the shift period and sees the whole
  receptive field of its centre, so only the summation order differs.

:func:`confidence` computes any window from the blocks it touches. A tile
aligned to the blocks (its origin and size multiples of ``B``) computes
exactly its own blocks; an unaligned one also computes the parts of the
blocks it shares with its neighbours, and those are computed once per tile
that touches them (the tile grid of an onnx run is made a multiple of ``B``
unless the chunk size is given: see :func:`aligned_chunks`, and
:func:`block_work` for the cost of other tilings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiler.cnn.session import session
from tiler.errors import ModelError
from tiler.io import stores
from tiler.source import RasterSource
from tiler.steps.onnx_model import OnnxModel
from tiler.tiling import Window


def symmetric_index(index: np.ndarray, size: int) -> np.ndarray:
    """Where ``index`` (any integers) reads in ``[0, size)`` under ``mode="symmetric"``."""
    folded = np.mod(index, 2 * size)
    mirrored: np.ndarray = np.where(folded < size, folded, 2 * size - 1 - folded)
    return mirrored


def block_span(start: int, stop: int, block: int) -> tuple[int, int]:
    """The first block and one past the last that ``[start, stop)`` touches."""
    return start // block, -(-stop // block)


def confidence(
    source: RasterSource, bands: tuple[int, ...], model: OnnxModel, window: Window
) -> np.ndarray:
    """The model's confidence on ``window``, float32 ``(rows, cols)``, from its blocks."""
    return confidence_and_valid(source, bands, model, window)[0]


def confidence_and_valid(
    source: RasterSource, bands: tuple[int, ...], model: OnnxModel, window: Window
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`confidence` and the window's valid pixels (read with the blocks' input)."""
    b, h = model.block, model.info.halo
    i0, i1 = block_span(window.row_start, window.row_stop, b)
    j0, j1 = block_span(window.col_start, window.col_stop, b)
    rows = symmetric_index(np.arange(i0 * b - h, i1 * b + h), source.height)
    cols = symmetric_index(np.arange(j0 * b - h, j1 * b + h), source.width)
    read = Window(int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    image, valid = source.read(bands, read)
    r, c = rows - read.row_start, cols - read.col_start
    padded = model.info.normalise(image[:, r][:, :, c])
    side = b + 2 * h
    windows = [
        padded[:, (i - i0) * b : (i - i0) * b + side, (j - j0) * b : (j - j0) * b + side]
        for i in range(i0, i1)
        for j in range(j0, j1)
    ]
    outputs = run_blocks(model, windows)
    out = np.empty(((i1 - i0) * b, (j1 - j0) * b), np.float32)
    for k, block in enumerate(outputs):
        i, j = divmod(k, j1 - j0)
        out[i * b : (i + 1) * b, j * b : (j + 1) * b] = block[h : h + b, h : h + b]
    top, left = window.row_start - i0 * b, window.col_start - j0 * b
    inner = (slice(top, top + window.height), slice(left, left + window.width))
    origin = (window.row_start - read.row_start, window.col_start - read.col_start)
    own = (slice(origin[0], origin[0] + window.height), slice(origin[1], origin[1] + window.width))
    return out[inner], valid[own]


def run_blocks(model: OnnxModel, windows: list[np.ndarray]) -> list[np.ndarray]:
    """The network's ``(S, S)`` outputs for normalised ``(C, S, S)`` windows, in batches.

    Every call gets exactly ``model.batch`` windows (zero windows after the
    last), so ONNX Runtime always runs one shape.
    """
    sess = session(model.path, model.provider, model.threads)
    name = sess.get_inputs()[0].name
    outputs: list[np.ndarray] = []
    for start in range(0, len(windows), model.batch):
        group = windows[start : start + model.batch]
        batch = np.zeros((model.batch, *group[0].shape), np.float32)
        for k, w in enumerate(group):
            batch[k] = w
        result = forward(sess, name, batch, model.path)
        outputs.extend(result[: len(group)])
    return outputs


def forward(sess: Any, name: str, batch: np.ndarray, path: str) -> np.ndarray:
    """One ORT call on ``(N, C, H, W)``: its first output as ``(N, H, W)`` float32, checked."""
    out = np.asarray(sess.run(None, {name: batch})[0])
    n, _, height, width = batch.shape
    if out.ndim == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (n, height, width) or out.dtype != np.float32:
        raise ModelError(
            f"{path}: returned {out.dtype} {out.shape} for input {batch.shape}; "
            f"expected float32 (N, 1, H, W) or (N, H, W)"
        )
    return out


def aligned_chunks(chunks: tuple[int, int], block: int) -> tuple[int, int]:
    """``chunks`` rounded up to multiples of ``block``, so each tile computes only its blocks."""
    return (-(-chunks[0] // block) * block, -(-chunks[1] // block) * block)


def block_work(shape: tuple[int, int], chunks: tuple[int, int], block: int, batch: int) -> float:
    """Windows the network runs for a tiling, over the image's blocks (1.0: no waste).

    A block is run by every tile that touches it, and each tile's last batch
    is filled up with zero windows.
    """
    spans = [
        [block_span(a, min(a + chunk, size), block) for a in range(0, size, chunk)]
        for size, chunk in zip(shape, chunks, strict=True)
    ]
    runs = sum(
        -(-((r1 - r0) * (c1 - c0)) // batch) * batch for r0, r1 in spans[0] for c0, c1 in spans[1]
    )
    return runs / (-(-shape[0] // block) * -(-shape[1] // block))


def wasteful(shape: tuple[int, int], chunks: tuple[int, int], block: int, batch: int) -> str | None:
    """A warning when the tiles make the network run much more than the image's blocks."""
    work = block_work(shape, chunks, block, batch)
    if work <= 1.25:
        return None
    return (
        f"tiles of {chunks[0]} x {chunks[1]} px make the network run {work:.2f}x the image's "
        f"{block}-px blocks (a block is run by every tile it touches, and each tile's batches "
        f"of {batch} are filled up); use a chunk size that is a multiple of {block} holding "
        f"a multiple of {batch} blocks"
    )


@dataclass(frozen=True)
class StoredConfidence:
    """A model's confidence written in a work Zarr (``confidence.zarr``), chunked as the tiles.

    Float32, 0 at invalid pixels (a threshold is > 0, so an invalid pixel is
    never foreground nor a peak). ``read`` returns the window clipped to the
    image.
    """

    path: str
    shape: tuple[int, int]

    def read(self, window: Window) -> np.ndarray:
        clipped = window.intersection(Window.whole(self.shape))
        return np.asarray(stores.open_array(self.path, mode="r")[clipped.slices], dtype=np.float32)


def write_confidence(
    source: RasterSource, bands: tuple[int, ...], model: OnnxModel, path: str, window: Window
) -> None:
    """One tile's confidence, 0 at invalid pixels, into its chunk of the store at ``path``."""
    conf, valid = confidence_and_valid(source, bands, model, window)
    stores.open_array(path, mode="r+")[window.slices] = np.where(valid, conf, np.float32(0))
