"""The whole-image reference (DESIGN.md section 3): the specification, run in memory.

Written directly with scikit-image and SciPy, independently of the tiled
kernels, so that the property tests compare the engine with an oracle and not
with itself. It holds the whole image: use it on small images and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.morphology import disk

from tiler.config import FillHoles, Index, Morphology, Otsu, Pipeline


@dataclass(frozen=True)
class Reference:
    """Whole-image results: index image, threshold, mask and labels."""

    values: np.ndarray
    threshold: float
    mask: np.ndarray
    labels: np.ndarray


def reference_index(image: np.ndarray, index: Index, bands: tuple[int, ...]) -> np.ndarray:
    """The index of section 3 on ``image``, the selected bands as float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if index.name == "exg":
            R, G, B = image[0], image[1], image[2]
            s = (R + G) + B
            r = np.where(s == 0, 0.0, R / s)
            g = np.where(s == 0, 0.0, G / s)
            b = np.where(s == 0, 0.0, B / s)
            return (2 * g - r) - b
        if index.name == "ndvi":
            red, nir = image[bands.index(index.red)], image[bands.index(index.nir)]
            total = nir + red
            return np.where(total == 0, 0.0, (nir - red) / total)
    if index.name == "gray":
        # rgb2gray's coefficients, element-wise: rgb2gray's own matmul is not
        # reproducible across memory layouts (see tiler.kernels.indices.gray).
        R, G, B = image[0], image[1], image[2]
        return (0.2125 * R + 0.7154 * G) + 0.0721 * B
    return image[index.band - 1]


def reference_refine(mask: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """The refine steps of section 3, one after the other, on the whole mask."""
    conn = pipeline.connectivity
    for step in pipeline.refine:
        if isinstance(step, Morphology):
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
        The selected bands (``read(bands)``), any dtype.
    valid : (M, N) ndarray of bool
        ``dataset_mask() > 0``.
    pipeline : Pipeline
        With ``bands`` resolved.
    """
    x = image.astype(np.float64)
    values = reference_index(x, pipeline.index, pipeline.bands)
    for step in pipeline.filters:
        values = ndi.gaussian_filter(values, step.sigma, mode="nearest", truncate=4.0)
    if isinstance(pipeline.threshold, Otsu):
        t = threshold_otsu(values[valid])
    else:
        t = pipeline.threshold.value
    fg = values > t
    if pipeline.polarity == "below":
        fg = ~fg
    fg &= valid
    mask = reference_refine(fg, pipeline)
    return Reference(values, t, mask, label(mask, connectivity=pipeline.connectivity))


def reference_objects(labels: np.ndarray, transform: tuple[float, ...]) -> dict[str, np.ndarray]:
    """The object table of section 4 computed with ``regionprops_table``."""
    props = regionprops_table(labels, properties=("label", "area", "centroid", "bbox"))
    a, b, c, d, e, f = transform
    rows, cols = props["centroid-0"], props["centroid-1"]
    return {
        "label": props["label"],
        "area_px": props["area"].astype(np.int64),
        "area_m2": props["area"] * abs(a * e - b * d),
        "centroid_row": rows,
        "centroid_col": cols,
        "x": a * (cols + 0.5) + b * (rows + 0.5) + c,
        "y": d * (cols + 0.5) + e * (rows + 0.5) + f,
        "bbox_min_row": props["bbox-0"],
        "bbox_min_col": props["bbox-1"],
        "bbox_max_row": props["bbox-2"],
        "bbox_max_col": props["bbox-3"],
    }
