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
    if x.size == 0:
        return dict.fromkeys(KS_COLUMNS, float("nan"))
    multiples = float(np.mean(x <= 0.5 * x_ref)) * 100
    miss = float(np.mean(x > 1.5 * x_ref)) * 100
    good = x[(x > 0.5 * x_ref) & (x <= 1.5 * x_ref)]
    precision = float(np.std(good, ddof=1)) / x_ref * 100 if good.size > 1 else float("nan")
    return dict(zip(KS_COLUMNS, (multiples, miss, 100 - multiples - miss, precision), strict=True))


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
        n = np.bincount(group[ok], minlength=n_groups).astype(np.float64)
        mean = np.bincount(group[ok], x[ok], n_groups) / n
        deviation = x[ok] - mean[group[ok]]
        variance = np.bincount(group[ok], deviation * deviation, n_groups) / (n - 1)
        precision = np.where(n > 1, np.sqrt(variance) / x_ref * 100, np.nan)
    return dict(zip(KS_COLUMNS, (multiples, miss, 100 - multiples - miss, precision), strict=True))


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


def spread(spacings: np.ndarray) -> tuple[float, float, float]:
    """Mean, standard deviation (n - 1) and coefficient of variation of spacings."""
    x = np.asarray(spacings, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    sd = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return mean, sd, sd / mean if mean > 0 else float("nan")
