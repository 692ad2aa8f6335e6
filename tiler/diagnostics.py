"""Post-run checks: warnings about a result that is likely not what the user wanted.

Pure: they read the object areas and the run record (``run.json``'s
content) and return sentences; :func:`tiler.api.run` passes each to its
``warn`` callback (the CLI prints ``tiler: warning: ...``) and keeps them in
``run.json`` ``warnings``. Two checks:

* **no object**: the run found nothing; the likely cause is named: no valid
  pixel, an index that is constant, a threshold at the edge of the index's
  value range, candidates all smaller than ``min_area``, or an empty mask;
* **merged-looking objects**: without a ``split`` step, when at least
  ``MERGED_SHARE`` of the objects (of ``MERGED_MIN_OBJECTS`` or more) are
  over twice the median area, touching objects are probably counted as one;
  the presets that split them are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# On tiler's synthetic row-crop field (2000 x 2000 px) the default pipeline,
# which merges touching plants and counts 4.6 % fewer than planted, has 13.9 %
# of its objects over twice the median area; `row-crop-plants`, which splits
# them, 6.9 %.
MERGED_SHARE = 0.10
MERGED_MIN_OBJECTS = 20


def check(
    areas: np.ndarray,
    record: dict[str, Any],
    *,
    candidate_areas: np.ndarray | None = None,
    split_presets: Sequence[str] = (),
) -> list[str]:
    """The warnings about a finished run.

    Parameters
    ----------
    areas : ndarray
        ``area_px`` of the objects the run kept.
    record : dict
        The run record: ``config`` (the resolved pipeline) and ``threshold``
        (``value``, and ``range``/``valid_pixels`` where a global pass ran).
    candidate_areas : ndarray, optional
        The areas of the objects before the final ``remove_small_objects``.
    split_presets : sequence of str
        The presets that split touching objects, to suggest.
    """
    if len(areas) == 0:
        return [_no_objects(record, candidate_areas)]
    merged = _merged(areas, record, split_presets)
    return [merged] if merged else []


def _no_objects(record: dict[str, Any], candidate_areas: np.ndarray | None) -> str:
    config = record.get("config", {})
    threshold = record.get("threshold", {})
    value = threshold.get("value")
    polarity = config.get("polarity", "above")
    head = "0 objects found"
    if threshold.get("valid_pixels") == 0:
        return f"{head}: no pixel of the input is valid (all nodata or masked; see --mask)"
    if threshold.get("range") is not None:
        vmin, vmax = threshold["range"]
        if vmin == vmax:
            return (
                f"{head}: the index is constant ({vmin:.6g}) over the valid pixels, so no "
                "threshold separates anything; check the bands and the index"
            )
        if isinstance(value, (int, float)):
            if polarity == "above" and value >= vmax:
                return (
                    f"{head}: the threshold {value:.6g} is at or above the index's largest "
                    f"value {vmax:.6g}, so no pixel is above it; lower it or use otsu"
                )
            if polarity == "below" and value < vmin:
                return (
                    f"{head}: the threshold {value:.6g} is below the index's smallest value "
                    f"{vmin:.6g}, so no pixel is at or below it; raise it or use otsu"
                )
    if candidate_areas is not None and len(candidate_areas) > 0:
        min_area = _final_min_area(config)
        return (
            f"{head}: all {len(candidate_areas)} objects of the mask are smaller than "
            f"remove_small_objects' min_area {min_area} px (the largest: "
            f"{int(np.max(candidate_areas))} px); lower min_area (sizes are in pixels: "
            "is the imagery's pixel size the one the pipeline was written for?)"
        )
    shown = "otsu's" if value is None else f"{value:.6g}" if isinstance(value, float) else value
    return (
        f"{head}: the mask is empty (threshold {shown}, polarity {polarity}, then the refine "
        "steps); check the index, the threshold and the polarity (`tiler pipeline`)"
    )


def _final_min_area(config: dict[str, Any]) -> Any:
    steps = [
        s["remove_small_objects"]
        for s in config.get("refine", [])
        if isinstance(s, dict) and "remove_small_objects" in s
    ]
    return steps[-1]["min_area"] if steps else "?"


def _merged(areas: np.ndarray, record: dict[str, Any], split_presets: Sequence[str]) -> str:
    refine = record.get("config", {}).get("refine", [])
    if any(isinstance(s, dict) and "split" in s for s in refine) or len(areas) < MERGED_MIN_OBJECTS:
        return ""
    median = float(np.median(areas))
    large = int(np.count_nonzero(areas > 2 * median))
    if large < MERGED_SHARE * len(areas):
        return ""
    suggestion = (
        f"preset {' or '.join(split_presets)} (`tiler presets`)"
        if split_presets
        else "a watershed `split` step"
    )
    return (
        f"{large} of {len(areas)} objects ({large / len(areas):.0%}) are over twice the median "
        f"area ({median:.0f} px), as touching objects merged into one look; if each object "
        f"should be one plant or crown, {suggestion} splits touching objects"
    )
