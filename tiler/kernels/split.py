"""Watershed splitting of touching objects on one window (the ``split: watershed`` step).

The step's whole-image meaning, on the final binary mask ``m`` with the
pipeline's connectivity ``c`` (:func:`reference_split`)::

    distance = scipy.ndimage.distance_transform_edt(m)
    peaks = skimage.feature.peak_local_max(
        distance,
        min_distance=min_distance,
        footprint=np.ones((footprint, footprint), bool) if footprint else None,
        labels=skimage.measure.label(m, connectivity=c),
        exclude_border=False,
    )
    markers = np.zeros(m.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    flood = -distance, with tied markers lowered by a few ulps (below)
    labels = skimage.segmentation.watershed(flood, markers, mask=m, connectivity=c)

then every component of ``m`` that holds no peak becomes one object of its
own, and objects are numbered by their first pixel in raster order.

Choices, checked against scikit-image 0.26:

* ``exclude_border=False``: the default (``True``) drops peaks within
  ``min_distance`` of the array border, which would leave objects near the
  image border (and near every tile border) unsplit.
* ``threshold_abs``/``threshold_rel``, ``num_peaks`` and
  ``num_peaks_per_label`` keep their defaults: a peak must be above the
  array's minimum (0 wherever the array holds background), with no limit on
  the number of peaks.
* ``peak_local_max`` searches each component on its own (``labels``), with
  the other components masked out, so the peaks of an object depend on its own
  pixels only. With ``footprint`` ``None`` the search window is
  ``2 * min_distance + 1`` square; peaks closer than ``min_distance``
  (Chebyshev) are thinned greedily, highest first, ties in raster order.
* Markers of equal distance are flooded in raster order. ``watershed`` puts
  every marker on its queue with age 0, so markers of equal value leave it in
  an order set by the layout of its binary heap, that is by every other marker
  of the array: removing one object far away moves pixels between two
  touching objects, and no window smaller than the image could reproduce the
  result. Lowering each tied marker's value by as many ulps as tied markers
  follow it in raster order fixes the order; the shift (k ulps of a distance
  d is about ``k * d * 2.2e-16``: under ``1e-7`` for a million tied markers at
  distance 1000) is far below the gap between two distinct distances (more
  than ``1 / (2 * d)``), so markers still leave the queue before every other
  pixel of the same value, as before.
* A component can hold no peak: on an array without background (the array
  minimum is then positive and ``peak_local_max`` requires ``distance >
  minimum``; also, SciPy's distance transform then measures from a phantom
  background pixel one row above the top-left pixel) or on a 1 x 1 array.
  ``watershed`` floods only from markers, so it would leave such a component
  0; here it becomes one object, as if its first pixel were a marker.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.measure import label
from skimage.segmentation import watershed


def watershed_split(
    mask: np.ndarray, min_distance: int, footprint: int | None, connectivity: int
) -> tuple[np.ndarray, int]:
    """Split the objects of ``mask`` at the watershed lines of its distance transform.

    Exactly the whole-image meaning in the module docstring, on this array,
    except for the numbering: labels 1..n follow the peaks' order (by
    component, then highest distance first), and the components without a
    peak come last, in raster order of their first pixel.

    Parameters
    ----------
    mask : (M, N) ndarray of bool
        Foreground.
    min_distance : int
        ``peak_local_max``'s minimal distance between two peaks, in pixels.
    footprint : int or None
        Side of the square footprint of the local-maximum search; ``None``
        uses ``2 * min_distance + 1``.
    connectivity : int
        1 (4-connectivity) or 2 (8-connectivity), for components and flooding.

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 for background.
    n : int
        Number of objects.
    """
    mask = np.asarray(mask, dtype=bool)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance,
        min_distance=min_distance,
        footprint=None if footprint is None else np.ones((footprint, footprint), bool),
        labels=label(mask, connectivity=connectivity),
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(_flooding(distance, markers), markers, mask=mask, connectivity=connectivity)
    labels = labels.astype(np.int32, copy=False)
    unmarked, n_unmarked = label(mask & (labels == 0), connectivity=connectivity, return_num=True)
    labels[unmarked > 0] = unmarked[unmarked > 0] + len(peaks)
    return labels, len(peaks) + n_unmarked


def _flooding(distance: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """``-distance``, with markers of equal value lowered so that they flood in raster order."""
    flood = -distance
    at = np.flatnonzero(markers)  # raster order
    order = np.lexsort((-at, flood.ravel()[at]))  # by value, then from the last in raster order
    value = flood.ravel()[at[order]]
    tied_after = np.arange(len(value)) - np.searchsorted(value, value)
    flood.ravel()[at[order]] = value - tied_after * np.spacing(np.abs(value))
    return flood


def raster_order(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber labels 1..n by the first pixel of each label in raster order.

    Returns
    -------
    labels : (M, N) ndarray of int32
    n : int
    """
    values, first = np.unique(labels.ravel(), return_index=True)
    first, values = first[values != 0], values[values != 0]
    lut = np.zeros(int(values.max(initial=0)) + 1, np.int32)
    lut[values[np.argsort(first)]] = np.arange(1, len(values) + 1)
    return lut[labels], len(values)


def reference_split(
    mask: np.ndarray, min_distance: int, footprint: int | None, connectivity: int
) -> tuple[np.ndarray, int]:
    """The ``split: watershed`` step on a whole image (its specification).

    :func:`watershed_split` on the whole mask, then objects numbered 1..n by
    their first pixel in raster order, as tiler numbers every object (the
    order of ``skimage.measure.label``). See the module docstring for the
    exact library calls.

    Returns
    -------
    labels : (M, N) ndarray of int32
    n : int
    """
    return raster_order(watershed_split(mask, min_distance, footprint, connectivity)[0])
