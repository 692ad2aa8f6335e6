"""The whole-image reference (DESIGN.md section 3): the specification, run in memory.

Each step declares its meaning in its ``reference`` method (:mod:`tiler.steps`),
written directly with scikit-image and SciPy, independently of the tiled
kernels, so that the property tests compare the engine with an oracle and not
with itself; this module runs them in order. It holds the whole image: use it
on small images and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from skimage.measure import label, regionprops_table

from tiler.cnn.session import session
from tiler.config import Index, OnnxModel, Pipeline, load_callable
from tiler.georef import pixel_area_m2
from tiler.kernels.split import raster_order
from tiler.points import PointSettings, reference_points
from tiler.resolution import in_pixels
from tiler.units import PixelSize


@dataclass(frozen=True)
class Reference:
    """Whole-image results: index image, threshold(s), mask and labels.

    ``threshold`` is a float, a tuple (multi-Otsu) or ``None`` (local threshold).
    """

    values: np.ndarray
    threshold: float | tuple[float, ...] | None
    mask: np.ndarray
    labels: np.ndarray


def dtype_maximum(dtype: np.dtype) -> float:
    """The value that means "full scale": the integer maximum, or 1.0 for floats."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


def reference_index(
    image: np.ndarray, index: Index, bands: tuple[int, ...], full_scale: float = 1.0
) -> np.ndarray:
    """The index of section 3 on ``image``, the selected bands as float64.

    ``full_scale`` is the maximum of the file's data type (HSV only).
    """
    return index.reference(image, bands, full_scale)


def reference_refine(mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """The refine steps of section 3, one after the other, on the whole mask.

    A final ``split`` leaves the mask as it is: its meaning is the labels (:func:`_labels`).
    """
    for step in pipeline.refine:
        mask = step.reference(mask, pipeline.connectivity)
    return mask


def run_reference(
    image: np.ndarray, valid: np.ndarray, pipeline: Pipeline, pixel_size: PixelSize | None = None
) -> Reference:
    """Run a resolved pipeline on a whole image.

    Sizes written in ground units become pixels for ``pixel_size`` exactly
    as a run makes them (:func:`tiler.resolution.in_pixels`); without a
    pixel size they are refused, as on a ``--pixel-only`` input.

    Parameters
    ----------
    image : (B, M, N) ndarray
        The selected bands (``read(bands)``), any dtype, with non-finite
        values at invalid pixels read as 0 (as every tiler reader does:
        :func:`tiler.io.raster.zero_invalid_non_finite`).
    valid : (M, N) ndarray of bool
        ``dataset_mask() > 0``, or the ``--mask`` the run used.
    pipeline : Pipeline
        With ``bands`` resolved.
    pixel_size : PixelSize, optional
        The input's (:func:`tiler.resolution.pixel_size`), for ground units.
    """
    pipeline = in_pixels(pipeline, pixel_size, "reference")
    if isinstance(pipeline.model, OnnxModel):
        conf = onnx_confidence(image, pipeline.model)
        if pipeline.model.output == "points":  # 0 where invalid, as stored: never a peak
            return _points(np.where(valid, conf, np.float32(0)), pipeline)
        fg = (conf >= np.float32(pipeline.model.threshold)) & valid
        mask = reference_refine(fg, pipeline)
        return Reference(conf, pipeline.model.threshold, mask, _labels(mask, pipeline))
    if pipeline.model is not None:
        out = np.asarray(load_callable(pipeline.model.function)(image))
        if pipeline.model.output == "points":  # NaN where invalid: never a peak, never grown
            return _points(np.where(valid, out.astype(np.float32), np.float32(np.nan)), pipeline)
        if pipeline.model.output == "labels":
            labels, _ = raster_order(np.where(valid, out, 0))
            return Reference(np.zeros(image.shape[1:]), None, labels > 0, labels)
        fg = out.astype(bool) & valid
        mask = reference_refine(fg, pipeline)
        return Reference(np.zeros(image.shape[1:]), None, mask, _labels(mask, pipeline))
    x = image.astype(np.float64)
    values = reference_index(x, pipeline.index, pipeline.bands, dtype_maximum(image.dtype))
    for step in pipeline.filters:
        values = step.reference(values, valid)
    threshold = pipeline.threshold
    t, fg = threshold.reference(values, valid)
    if threshold.implied_refine:
        pipeline = replace(pipeline, refine=(*threshold.implied_refine, *pipeline.refine))
    if pipeline.polarity == "below":
        fg = ~fg
    fg &= valid
    mask = reference_refine(fg, pipeline)
    return Reference(values, t, mask, _labels(mask, pipeline))


def onnx_confidence(image: np.ndarray, model: OnnxModel) -> np.ndarray:
    """An ONNX model's confidence on the whole image, by blocks (tiler.cnn.blocks' meaning).

    The image is padded by reflection (``numpy.pad(mode="symmetric")``) by
    the model's halo, and on the bottom and right up to whole blocks; every
    ``(B + 2h)``-square window at block steps is normalised and run, in
    batches of ``model.batch`` in raster order (the last filled with zero
    windows), and the centres are put together.
    """
    b, h = model.block, model.info.halo
    rows, cols = image.shape[1:]
    nr, nc = -(-rows // b), -(-cols // b)
    pad = ((0, 0), (h, nr * b - rows + h), (h, nc * b - cols + h))
    x = model.info.normalise(np.pad(image, pad, mode="symmetric"))
    windows = [x[:, i * b : i * b + b + 2 * h, j * b : j * b + b + 2 * h]
               for i in range(nr) for j in range(nc)]  # fmt: skip
    sess = session(model.path, model.provider, model.threads)
    name = sess.get_inputs()[0].name
    out = np.empty((nr * b, nc * b), np.float32)
    for start in range(0, len(windows), model.batch):
        batch = np.zeros((model.batch, *windows[0].shape), np.float32)
        group = windows[start : start + model.batch]
        batch[: len(group)] = group
        result = sess.run(None, {name: batch})[0].reshape(model.batch, *windows[0].shape[1:])
        for k in range(len(group)):
            i, j = divmod(start + k, nc)
            out[i * b : (i + 1) * b, j * b : (j + 1) * b] = result[k, h : h + b, h : h + b]
    return out[:rows, :cols]


def _points(conf: np.ndarray, pipeline: Pipeline) -> Reference:
    """A points model's objects on its whole confidence map (:func:`reference_points`)."""
    settings = PointSettings(**pipeline.model.points)
    labels, _ = reference_points(conf, settings)
    return Reference(conf, settings.threshold, labels > 0, labels)


def _labels(mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """Connected components, or the watershed split of a final ``split`` step."""
    step = pipeline.split
    if step is None:
        return label(mask, connectivity=pipeline.connectivity)
    return step.labels(mask, pipeline.connectivity)


def reference_objects(
    labels: np.ndarray, transform: tuple[float, ...], crs_wkt: str = ""
) -> dict[str, np.ndarray]:
    """The object table of section 4 computed with ``regionprops_table``.

    ``area_m2`` is the area in pixels times one pixel's ground area at the
    centroid (:func:`tiler.georef.pixel_area_m2`; constant unless the CRS
    is geographic).
    """
    props = regionprops_table(labels, properties=("label", "area", "centroid", "bbox"))
    a, b, c, d, e, f = transform
    rows, cols = props["centroid-0"], props["centroid-1"]
    y = d * (cols + 0.5) + e * (rows + 0.5) + f
    return {
        "label": props["label"],
        "area_px": props["area"].astype(np.int64),
        "area_m2": props["area"] * pixel_area_m2(crs_wkt, transform, y),
        "centroid_row": rows,
        "centroid_col": cols,
        "x": a * (cols + 0.5) + b * (rows + 0.5) + c,
        "y": y,
        "bbox_min_row": props["bbox-0"],
        "bbox_min_col": props["bbox-1"],
        "bbox_max_row": props["bbox-2"],
        "bbox_max_col": props["bbox-3"],
    }
