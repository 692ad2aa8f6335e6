"""Binary morphology with disk footprints, borders as scikit-image's binary_* functions.

Erosion treats pixels outside the image as foreground (``border_value=1``) and
dilation as background (``border_value=0``), so a tile whose edge lies on the
image border sees the same border as the whole image, and a tile edge inside
the image is covered by a halo of ``reach`` pixels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk


@lru_cache(maxsize=32)
def _disk(radius: int) -> np.ndarray:
    return disk(radius).astype(bool)


def erosion(mask: np.ndarray, radius: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, disk(radius), border_value=1)``."""
    return ndi.binary_erosion(mask, _disk(radius), border_value=1)


def dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, disk(radius), border_value=0)``."""
    return ndi.binary_dilation(mask, _disk(radius), border_value=0)


def opening(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of the erosion."""
    return dilation(erosion(mask, radius), radius)


def closing(mask: np.ndarray, radius: int) -> np.ndarray:
    """Erosion of the dilation."""
    return erosion(dilation(mask, radius), radius)


OPERATIONS = {"erosion": erosion, "dilation": dilation, "opening": opening, "closing": closing}


def morphology(mask: np.ndarray, op: str, radius: int) -> np.ndarray:
    """Apply the named binary operation with ``disk(radius)``."""
    return OPERATIONS[op](mask, radius)
