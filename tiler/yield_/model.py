"""Yield models calibrated on measured yield, chosen by spatially blocked CV (issue 20).

:func:`calibrate` fits two candidates to the training rows of a :class:`Truth`:

* ``ridge``: median imputation with missing-value indicators, standardisation and a
  ridge regression whose penalty is chosen among 13 values from 1e-3 to 1e3 (leave-one-out
  inside the training folds: ``RidgeCV``);
* ``gbm``: a modest histogram gradient boosting (150 trees of 15 leaves, learning rate
  0.05, at least 20 rows a leaf, fixed seed), which takes missing features as they are.

Each is scored by spatially blocked cross-validation (:mod:`tiler.yield_.blocked_cv`:
blocks of ``block_m`` m dealt whole to ``folds`` folds) and, for the model card, by
random cross-validation (cells dealt at random), whose higher R² is the optimism that
blocking removes. The best blocked R² wins and is refitted on every row; the spatial
covariance of its blocked residuals is kept for prediction intervals.

:func:`save` writes the model folder of the contract (``model.joblib``, ``model.json``,
``card.md``, ``cv.parquet``) atomically; :func:`load` reads it back, refusing a folder
that is not a tiler yield model or was saved by another scikit-learn major.minor.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from tiler.errors import InputError, OutputError
from tiler.io.atomic import publish_folder
from tiler.yield_ import blocked_cv
from tiler.yield_.card import card
from tiler.yield_.truth import Truth, require_enough

FORMAT = "tiler-yield-model/1"
ALPHAS = np.logspace(-3, 3, 13)


def candidates(seed: int = 0) -> dict[str, Callable[[], Pipeline]]:
    """The candidate models, each a maker of a fresh unfitted Pipeline."""
    return {
        "ridge": lambda: make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True),
            StandardScaler(),
            RidgeCV(alphas=ALPHAS),
        ),
        "gbm": lambda: make_pipeline(
            HistGradientBoostingRegressor(
                max_iter=150,
                learning_rate=0.05,
                max_leaf_nodes=15,
                min_samples_leaf=20,
                l2_regularization=1.0,
                random_state=seed,
            )  # fmt: skip
        ),
    }


@dataclass(frozen=True, eq=False)
class Calibration:
    """A fitted yield model: the estimator, its ``model.json`` (``meta``), the per-row
    cross-validation (``cv``: the contract's ``cv.parquet``) and the card's text."""

    estimator: Pipeline
    meta: dict[str, Any]
    cv: pd.DataFrame
    card: str


def _tiler_version() -> str:
    """tiler's version as installed (``tiler.__version__`` is above this layer)."""
    try:
        return importlib.metadata.version("tiler")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def usable_features(rows: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """Features with at least two distinct values among the training rows (all-NaN and
    constant columns carry nothing)."""
    return [f for f in features if rows[f].dropna().nunique() > 1]


def _ranges(
    features_gdf: pd.DataFrame, rows: pd.DataFrame, names: list[str]
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each feature's ``[min, max]`` over the training rows (the model is meant for cells
    inside it), and the percentage of all cells outside it."""
    ranges, outside = {}, {}
    for f in names:
        train = rows[f].to_numpy(np.float64)
        lo, hi = float(np.nanmin(train)), float(np.nanmax(train))
        every = features_gdf[f].to_numpy(np.float64) if f in features_gdf else train
        ranges[f] = [lo, hi]
        outside[f] = float(100.0 * np.mean((every < lo) | (every > hi)))
    return ranges, outside


def calibrate(
    features_gdf: pd.DataFrame,
    truth: Truth,
    *,
    block_m: float = 50.0,
    folds: int = 5,
    seed: int = 0,
    models: Sequence[str] = ("ridge", "gbm"),
) -> Calibration:
    """Fit the candidates to ``truth``'s rows and keep the best by spatially blocked CV.

    Parameters
    ----------
    features_gdf : DataFrame or GeoDataFrame
        The features table the truth was matched to (for the features' ranges).
    truth : Truth
        From :func:`tiler.yield_.truth.read_truth`.
    block_m : float
        Side of the CV blocks in metres (rounded to whole cells).
    folds : int
        Number of CV folds (blocks dealt whole to them).
    seed : int
        Seed of the fold assignment, the random CV and the boosting.
    models : sequence of str
        The candidates to try (names of :func:`candidates`).

    Returns
    -------
    Calibration
        The chosen model refitted on every row, with ``meta`` as ``model.json``.
    """
    require_enough(truth, block_m)
    rows = truth.rows.reset_index(drop=True)
    names = usable_features(rows, truth.features)
    if not names:
        raise InputError(f"{truth.path}: no feature varies over the truth cells: nothing to fit")
    x = rows[names].astype(np.float64)  # a DataFrame: the estimator keeps the feature names
    y = rows["measured"].to_numpy(np.float64)
    block = blocked_cv.blocks(rows["cell_row"], rows["cell_col"], truth.cell_m, block_m)
    fold = blocked_cv.assign_folds(block, folds, seed)
    shuffled = blocked_cv.random_folds(len(y), folds, seed)
    makers = candidates(seed)
    scored: dict[str, dict[str, float]] = {}
    predicted: dict[str, np.ndarray] = {}
    # One OpenMP thread: a thousand rows gain nothing from more, and spinning threads on a
    # busy machine made each boosting fit ten times slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for name in models:
            predicted[name] = blocked_cv.out_of_fold(makers[name], x, y, fold)
            random_pred = blocked_cv.out_of_fold(makers[name], x, y, shuffled)
            scored[name] = blocked_cv.scores(y, predicted[name])
            scored[name]["random_r2"] = blocked_cv.scores(y, random_pred)["r2"]
        chosen = max(models, key=lambda m: scored[m]["r2"])
        estimator = makers[chosen]()
        estimator.fit(x, y)
    residual = y - predicted[chosen]
    xy_m = rows[["x", "y"]].to_numpy(np.float64) * truth.metres_per_unit
    key = ["cell_row", "cell_col"] if truth.kind == "points" else ["plot", "cell_row", "cell_col"]
    cv = rows[key + ["x", "y", "measured"]].assign(
        predicted_cv=predicted[chosen], fold=fold.astype(np.int32), block=block
    )
    records = truth.records
    ranges, outside_pct = _ranges(features_gdf, rows, names)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "value": truth.value,
        "unit": truth.unit,
        "features": names,
        "chosen": chosen,
        "candidates": scored,
        "cv": {
            **{k: scored[chosen][k] for k in ("r2", "rmse", "bias")},
            "folds": folds,
            "block_m": block_m,
            "n_cells": int(len(rows)),
            "n_records": int(len(records)),
            "random_r2": scored[chosen]["random_r2"],
        },  # fmt: skip
        "residuals": {
            **blocked_cv.fit_covariance(xy_m, residual, truth.cell_m),
            "q95_abs": float(np.quantile(np.abs(residual), 0.95)),
        },
        "cell_m": truth.cell_m,
        "crs_wkt": truth.crs_wkt,
        "truth": {
            "path": truth.path,
            "kind": truth.kind,
            "records": int(len(records)),
            "flagged": truth.flagged,
            "kept": int((records["reason"] == "").sum()),
            "extent": [float(v) for v in rows[["x", "y"]].agg(["min", "max"]).to_numpy().T.ravel()],
        },  # fmt: skip
        "ranges": ranges,
        "outside_pct": outside_pct,
        "date": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "sklearn": sklearn.__version__,
        "tiler": _tiler_version(),
    }
    return Calibration(estimator, meta, cv, card(meta))


def save(calibration: Calibration, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write the model folder (``model.joblib``, ``model.json``, ``card.md``,
    ``cv.parquet``) under a temporary name beside ``folder``, then rename it in place.

    Raises OutputError when ``folder`` exists and ``overwrite`` is false, or when it is a
    non-empty folder without ``model.json`` (overwrite replaces models only).
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputError(f"{folder}: already exists: give another model folder, or overwrite")
    if folder.exists() and not (folder / "model.json").is_file() and any(folder.iterdir()):
        # overwrite replaces a model, never a folder of something else
        raise OutputError(f"{folder}: not a tiler yield model folder: refusing to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.parent / f".{folder.name}.partial"  # a yield folder's leftover name
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted save's
    partial.mkdir()
    try:
        joblib.dump(calibration.estimator, partial / "model.joblib")
        (partial / "model.json").write_text(json.dumps(calibration.meta, indent=2) + "\n")
        (partial / "card.md").write_text(calibration.card)
        calibration.cv.to_parquet(partial / "cv.parquet", index=False)
        return publish_folder(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def load(folder: str | os.PathLike) -> tuple[Pipeline, dict[str, Any]]:
    """The estimator and ``model.json`` of a model folder written by :func:`save`.

    Raises InputError (one line naming the folder) for a folder that is not a tiler yield
    model, or one saved with another scikit-learn major.minor than this one.
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{folder}: not a tiler yield model (no readable model.json)") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{folder}: not a tiler yield model (model.json is not {FORMAT})")
    saved, here = str(meta.get("sklearn", "?")), sklearn.__version__
    if _major_minor(saved) != _major_minor(here):
        raise InputError(
            f"{folder}: saved with scikit-learn {saved}, this is {here}: calibrate it again"
        )
    if not (folder / "model.joblib").is_file():
        raise InputError(f"{folder}: not a tiler yield model (no model.joblib)")
    try:
        return joblib.load(folder / "model.joblib"), meta
    except Exception as exc:  # a pickle's faults are many; the user needs the file named
        raise InputError(f"{folder / 'model.joblib'}: not a loadable model ({exc})") from None
