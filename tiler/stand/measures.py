"""What is measured along rows: in-row spacings, gaps and the Kachman-Smith indices.

Over the in-row spacings ``x`` of a row or a field (the distance between
consecutive plants of a row) and the nominal spacing ``x_ref`` (Kachman and
Smith 1995, "Alternative measures of accuracy in plant spacing for planters
using single seed metering", Trans. ASAE 38(2):379-387), in percent:

* multiples index: the share of spacings ``x <= 0.5 x_ref`` (doubles);
* miss index: the share of spacings ``x > 1.5 x_ref`` (skips);
* quality of feed index: the rest, ``100 - multiples - miss``;
* precision: the standard deviation of the spacings in ``(0.5, 1.5] x_ref``,
  divided by ``x_ref``.

A gap is a spacing longer than ``gap_factor x_ref``, classed by its length.
"""

from __future__ import annotations

import numpy as np

KS_COLUMNS = ("multiples_pct", "miss_pct", "quality_of_feed_pct", "precision_pct")


def kachman_smith(spacings: np.ndarray, x_ref: float) -> dict[str, float]:
    """The four indices (percent) over ``spacings``; NaN where there are none."""
    x = np.asarray(spacings, dtype=np.float64)
    one = kachman_smith_grouped(x, np.zeros(x.size, dtype=np.int64), 1, x_ref)
    return {name: float(values[0]) for name, values in one.items()}


def kachman_smith_grouped(
    spacings: np.ndarray, group: np.ndarray, n_groups: int, x_ref: float
) -> dict[str, np.ndarray]:
    """:func:`kachman_smith` per group (``group[i]`` in ``[0, n_groups)`` for each spacing)."""
    x = np.asarray(spacings, dtype=np.float64)
    count = np.bincount(group, minlength=n_groups).astype(np.float64)

    def share(hit: np.ndarray) -> np.ndarray:
        return np.bincount(group[hit], minlength=n_groups) / count * 100

    with np.errstate(invalid="ignore", divide="ignore"):
        multiples = share(x <= 0.5 * x_ref)
        miss = share(x > 1.5 * x_ref)
    ok = (x > 0.5 * x_ref) & (x <= 1.5 * x_ref)
    precision = spread(x[ok], group[ok], n_groups)[1] / x_ref * 100
    return dict(zip(KS_COLUMNS, (multiples, miss, 100 - multiples - miss, precision), strict=True))


def spread(
    spacings: np.ndarray, group: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation (n - 1) and coefficient of variation of the spacings of
    each group: NaN for a group without spacings (mean) or with one (SD, CV)."""
    x = np.asarray(spacings, dtype=np.float64)
    count = np.bincount(group, minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(group, x, n_groups) / count
        deviation = x - mean[group]
        variance = np.bincount(group, deviation * deviation, n_groups) / (count - 1)
        sd = np.where(count > 1, np.sqrt(variance), np.nan)
        return mean, sd, sd / mean


def class_names(edges: tuple[float, ...]) -> list[str]:
    """Readable names of the gap length classes cut at ``edges`` (m): ``<0.5 m``,
    ``0.5-1 m``, ..., ``>=2 m``."""
    text = [f"{e:g}" for e in edges]
    inner = [f"{a}-{b} m" for a, b in zip(text, text[1:], strict=False)]
    return [f"<{text[0]} m", *inner, f">={text[-1]} m"] if edges else ["all"]


def column_names(edges: tuple[float, ...]) -> list[str]:
    """The per-class count columns of a field: ``gaps_under_0.5m``, ``gaps_0.5_1m``, ...,
    ``gaps_over_2m``."""
    text = [f"{e:g}" for e in edges]
    inner = [f"gaps_{a}_{b}m" for a, b in zip(text, text[1:], strict=False)]
    return [f"gaps_under_{text[0]}m", *inner, f"gaps_over_{text[-1]}m"] if edges else []


def gap_class(length: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """The class index of each gap length: ``i`` for ``edges[i-1] <= length < edges[i]``."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), length, side="right")
