"""The whole-image reference (DESIGN.md section 3): the specification, run in memory.

Written directly with scikit-image and SciPy, independently of the tiled
kernels, so that the property tests compare the engine with an oracle and not
with itself. It holds the whole image: use it on small images and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.color import rgb2hsv
from skimage.exposure import equalize_adapthist, equalize_hist, rescale_intensity
from skimage.feature import canny
from skimage.filters import threshold_local, threshold_multiotsu, threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.morphology import disk
from skimage.segmentation import flood

from tiler.config import (
    CannyEdges,
    Clahe,
    Equalize,
    FillHoles,
    FixedThreshold,
    Gaussian,
    Grow,
    Index,
    LocalThreshold,
    Median,
    Morphology,
    MultiOtsu,
    Otsu,
    Percentile,
    Pipeline,
    Smooth,
    Split,
    load_callable,
)
from tiler.georef import pixel_area_m2
from tiler.kernels.split import raster_order, reference_split


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
    with np.errstate(divide="ignore", invalid="ignore"):
        if index.name in ("exg", "exgr"):
            R, G, B = image[0], image[1], image[2]
            s = (R + G) + B
            r = np.where(s == 0, 0.0, R / s)
            g = np.where(s == 0, 0.0, G / s)
            b = np.where(s == 0, 0.0, B / s)
            exg = (2 * g - r) - b
            return exg if index.name == "exg" else exg - (1.4 * r - g)
        if index.name == "ndvi":
            red, nir = image[bands.index(index.red)], image[bands.index(index.nir)]
            total = nir + red
            return np.where(total == 0, 0.0, (nir - red) / total)
    if index.name == "gray":
        # rgb2gray's coefficients, element-wise: rgb2gray's own matmul is not
        # reproducible across memory layouts (see tiler.kernels.indices.gray).
        R, G, B = image[0], image[1], image[2]
        return (0.2125 * R + 0.7154 * G) + 0.0721 * B
    if index.name == "hsv":
        hsv = rgb2hsv(np.moveaxis(image[:3], 0, -1) / full_scale)
        return np.ascontiguousarray(hsv[..., "hsv".index(index.channel)])
    return image[index.band - 1]


def reference_refine(mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """The refine steps of section 3, one after the other, on the whole mask."""
    conn = pipeline.connectivity
    for step in pipeline.refine:
        if isinstance(step, Split):
            continue  # not a mask step: see run_reference
        if isinstance(step, Smooth):
            smooth = ndi.gaussian_filter(mask.astype(np.float64), step.sigma, mode="nearest")
            mask = smooth > 0.5
        elif isinstance(step, Morphology):
            fp = disk(step.radius)
            if step.op in ("erosion", "opening"):
                mask = ndi.binary_erosion(mask, fp, border_value=1)
            if step.op in ("dilation", "opening", "closing"):
                mask = ndi.binary_dilation(mask, fp, border_value=0)
            if step.op == "closing":
                mask = ndi.binary_erosion(mask, fp, border_value=1)
        elif isinstance(step, FillHoles):
            filled = ndi.binary_fill_holes(mask)
            if step.max_area is not None:
                holes = label(filled & ~mask, connectivity=1)
                sizes = np.bincount(holes.ravel())
                small = sizes <= step.max_area
                small[0] = False
                filled = mask | small[holes]
            mask = filled
        else:
            objects = label(mask, connectivity=conn)
            sizes = np.bincount(objects.ravel())
            keep = sizes >= step.min_area
            keep[0] = False
            mask = keep[objects]
    return mask


def run_reference(image: np.ndarray, valid: np.ndarray, pipeline: Pipeline) -> Reference:
    """Run a resolved pipeline on a whole image.

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
    """
    if pipeline.model is not None:
        out = np.asarray(load_callable(pipeline.model.function)(image))
        if pipeline.model.output == "labels":
            labels, _ = raster_order(np.where(valid, out, 0))
            return Reference(np.zeros(image.shape[1:]), None, labels > 0, labels)
        fg = out.astype(bool) & valid
        mask = reference_refine(fg, pipeline)
        return Reference(np.zeros(image.shape[1:]), None, mask, _labels(mask, pipeline))
    x = image.astype(np.float64)
    values = reference_index(x, pipeline.index, pipeline.bands, dtype_maximum(image.dtype))
    for step in pipeline.filters:
        if isinstance(step, Gaussian):
            values = ndi.gaussian_filter(values, step.sigma, mode="nearest", truncate=4.0)
        elif isinstance(step, Equalize):
            values = equalize_hist(values, nbins=256, mask=valid)
        elif isinstance(step, Clahe):
            unit = rescale_intensity(
                values, in_range=(values.min(), values.max()), out_range=(0.0, 1.0)
            )
            values = equalize_adapthist(
                unit, kernel_size=step.kernel_size, clip_limit=step.clip_limit, nbins=256
            )
        else:
            assert isinstance(step, Median)
            values = ndi.median_filter(values, footprint=disk(step.radius), mode="reflect")
    threshold = pipeline.threshold
    t: float | tuple[float, ...] | None
    if isinstance(threshold, Otsu):
        t = threshold_otsu(values[valid])
        fg = values > t
    elif isinstance(threshold, CannyEdges):
        t = None
        fg = canny(
            values, threshold.sigma, threshold.low, threshold.high, mask=valid, mode="constant"
        )
        pipeline = replace(pipeline, refine=(FillHoles(), *pipeline.refine))  # fill contours
    elif isinstance(threshold, Grow):
        t = None
        masked = np.where(valid, values, np.nan)
        fg = np.zeros(values.shape, dtype=bool)
        for seed in threshold.pixels:
            fg |= flood(
                masked, seed, tolerance=threshold.tolerance, connectivity=threshold.connectivity
            )
    elif isinstance(threshold, Percentile):
        t = float(np.percentile(values[valid], threshold.q))
        fg = values > t
    elif isinstance(threshold, FixedThreshold):
        t = threshold.value
        fg = values > t
    elif isinstance(threshold, MultiOtsu):
        t = tuple(threshold_multiotsu(values[valid], classes=threshold.classes).tolist())
        fg = np.isin(np.digitize(values, t), threshold.keep)
    else:
        assert isinstance(threshold, LocalThreshold)
        t = None
        b = threshold.block_size
        if threshold.method == "mean":
            # A sum per window (see tiler.kernels.threshold.local_mean for why
            # not scikit-image's running-sum uniform_filter).
            sums = ndi.correlate1d(values, np.ones(b), axis=1, mode="reflect")
            sums = ndi.correlate1d(sums, np.ones(b), axis=0, mode="reflect")
            local = sums / float(b * b) - threshold.offset
        else:
            local = threshold_local(values, b, threshold.method, threshold.offset, mode="reflect")
        fg = values > local
    if pipeline.polarity == "below":
        fg = ~fg
    fg &= valid
    mask = reference_refine(fg, pipeline)
    return Reference(values, t, mask, _labels(mask, pipeline))


def _labels(mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """Connected components, or the watershed split of a final ``split`` step."""
    step = pipeline.split
    if step is None:
        return label(mask, connectivity=pipeline.connectivity)
    labels, _ = reference_split(mask, step.min_distance, step.footprint, pipeline.connectivity)
    return labels


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
