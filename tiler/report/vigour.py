"""Per-object statistics of a vegetation index (a vigour proxy), out of core.

The report's pass over the image (window by window) computes the index on
each window with the pipeline's index step (:class:`tiler.steps.indices.Index`: the run's
own kernels, DESIGN.md section 3), and sums it per object over the object's
valid pixels (labels > 0 and the input's mask): :func:`window_partial` gives
each window's ``(labels, pixels, mean, M2)`` with ``np.bincount``, and
:class:`Accumulator` merges them by label in window order (Chan et al.'s
pairwise update of mean and sum of squared deviations), so memory is bounded
by the object count, not the image, and the result does not depend on the
run's chunking. ``sd`` is the population standard deviation of the object's
pixel values (``ddof=0``, as ``scipy.ndimage.standard_deviation``).

Which index: ``exg`` by default; ``ndvi`` when the run's pipeline is NDVI
(its ``red``/``nir`` bands), or asked for with ``ndvi:RED,NIR`` (file band
numbers); ``exgr`` and ``gray`` too; ``none`` for no index columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from tiler.errors import ConfigError
from tiler.steps.indices import Index

NAMES = ("exg", "exgr", "ndvi", "gray")
TITLES = {"exg": "ExG", "exgr": "ExGR", "ndvi": "NDVI", "gray": "gray"}
COLUMNS = tuple(f"{name}_{stat}" for name in NAMES for stat in ("mean", "sd"))
USAGE = "exg, exgr, gray, ndvi, ndvi:RED,NIR (file band numbers) or none"


@dataclass(frozen=True)
class Vigour:
    """An index to average per object: its name and the file bands it reads, in order."""

    name: str
    bands: tuple[int, ...]
    red: int | None = None
    nir: int | None = None

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def mean_column(self) -> str:
        return f"{self.name}_mean"

    @property
    def sd_column(self) -> str:
        return f"{self.name}_sd"

    def values(self, image: np.ndarray) -> np.ndarray:
        """The index of ``image``, the planes of ``self.bands`` as read (float64)."""
        return Index(self.name, red=self.red, nir=self.nir).values(image, self.bands)


def choose(asked: str | None, config: dict, count: int, source: str) -> Vigour | None:
    """The index to report for a run with resolved pipeline ``config`` on a ``count``-band file.

    ``asked``: ``None`` (the run's NDVI if its pipeline is NDVI, else ExG when
    three bands are selected, else none) or one of :data:`USAGE`.
    """
    selected = tuple(config.get("bands") or range(1, count + 1))
    steps = config.get("preprocess") or [{}]
    first = steps[0] if isinstance(steps[0], dict) else {}
    run_ndvi = (first.get("red"), first.get("nir")) if first.get("index") == "ndvi" else None
    if asked is None:
        if run_ndvi:
            return Vigour("ndvi", run_ndvi, *run_ndvi)
        return Vigour("exg", selected[:3]) if len(selected) >= 3 else None
    name, _, roles = asked.strip().lower().partition(":")
    if name == "none" and not roles:
        return None
    if name in ("exg", "exgr", "gray") and not roles:
        if len(selected) < 3:
            raise ConfigError(
                f"{source}: --index {name} needs three bands (red, green, blue); "
                f"the run selected {list(selected)}"
            )
        return Vigour(name, selected[:3])
    if name == "ndvi":
        pair = _roles(roles, asked) if roles else run_ndvi
        if pair is None:
            raise ConfigError(
                f"{source}: --index ndvi: the run's pipeline names no red/nir bands; "
                "give them as --index ndvi:RED,NIR (file band numbers)"
            )
        if max(pair) > count:
            raise ConfigError(f"{source}: --index {asked}: the file has {count} band(s)")
        return Vigour("ndvi", pair, *pair)
    raise ConfigError(f"--index {asked}: expected {USAGE}")


def _roles(text: str, asked: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(f"--index {asked}: expected ndvi:RED,NIR, two file band numbers")
    red, nir = int(parts[0]), int(parts[1])
    if red == nir:
        raise ConfigError(f"--index {asked}: red and nir must be different bands")
    return red, nir


def window_partial(
    vigour: Vigour, image: np.ndarray, valid: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One window's ``(labels, pixels, mean, M2)`` of the objects in it (valid pixels only).

    ``M2`` is each object's sum of squared deviations from its window mean.
    """
    inside = (labels > 0) & valid
    values = vigour.values(image)[inside]
    ids, inverse = np.unique(labels[inside], return_inverse=True)
    pixels = np.bincount(inverse, minlength=len(ids))
    mean = np.bincount(inverse, weights=values, minlength=len(ids)) / np.maximum(pixels, 1)
    m2 = np.bincount(inverse, weights=(values - mean[inverse]) ** 2, minlength=len(ids))
    return ids, pixels, mean, m2


class Accumulator:
    """Per-object pixel count, mean and M2 of the objects ``labels``, merged window by window."""

    def __init__(self, labels: np.ndarray):
        self.labels = np.asarray(labels)
        self.order = np.argsort(self.labels, kind="stable")
        self.pixels = np.zeros(len(self.labels), dtype=np.int64)
        self.mean = np.zeros(len(self.labels), dtype=np.float64)
        self.m2 = np.zeros(len(self.labels), dtype=np.float64)

    def add(self, partial) -> None:
        ids, pixels, mean, m2 = partial
        if len(ids) == 0:
            return
        at = self.order[np.searchsorted(self.labels, ids, sorter=self.order)]
        before = self.pixels[at]
        total = before + pixels
        delta = mean - self.mean[at]
        self.mean[at] += delta * (pixels / total)
        self.m2[at] += m2 + delta**2 * (before * pixels / total)
        self.pixels[at] = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, sd)`` per object, in the order of ``labels`` (NaN for an object
        with no valid pixel)."""
        none = self.pixels == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(self.m2 / self.pixels)
        return np.where(none, np.nan, self.mean), np.where(none, np.nan, sd)


def per_object(source, vigour: Vigour, labels, objects: np.ndarray, windows) -> tuple:
    """``(mean, sd)`` of the index for each label in ``objects``, over ``windows`` of the
    input ``source`` and the label array ``labels`` (any array that slices)."""
    total = Accumulator(objects)
    for window in windows:
        image, valid = source.read(vigour.bands, window)
        total.add(window_partial(vigour, image, valid, np.asarray(labels[window.slices])))
    return total.result()


def field_means(members: list[np.ndarray], mean: np.ndarray) -> np.ndarray:
    """Per field, the mean of its objects' means (NaN for a field without objects)."""
    out = np.full(len(members), np.nan)
    for index, m in enumerate(members):
        values = mean[m][~np.isnan(mean[m])]
        if len(values):
            out[index] = values.mean()
    return out


def object_table(objects, tags: np.ndarray, id_name: str, vigour: Vigour | None, stats):
    """The per-object table: ``label``, the fields holding the centroid (``tags`` from
    :func:`tiler.report.fields.object_fields`: ids joined by ``;`` where fields overlap,
    as ``tiler export --fields`` tags them; empty when none), size and place, the
    index's ``NAME_mean`` and ``NAME_sd``, and the point geometry of the run's table."""
    column = id_name if id_name not in objects.columns else f"{id_name}_field"
    out = pd.DataFrame({"label": objects["label"].to_numpy()})
    out[column] = np.where(tags == "", None, tags)
    for name in ("area_px", "area_m2", "x", "y"):
        out[name] = objects[name].to_numpy()
    if vigour is not None:
        out[vigour.mean_column], out[vigour.sd_column] = stats
    return gpd.GeoDataFrame(out, geometry=objects.geometry.values, crs=objects.crs)


def rounded(table: gpd.GeoDataFrame) -> pd.DataFrame:
    """The object table as objects.csv shows it: no geometry, areas to 0.01 cm², index
    statistics to 6 decimals."""
    out = pd.DataFrame(table.drop(columns=table.geometry.name))
    out["area_m2"] = out["area_m2"].round(6)
    for name in set(COLUMNS) & set(out.columns):
        out[name] = out[name].round(6)
    return out
