"""The model card of a calibrated yield model (``card.md``, issue 20): what the model
predicts, from what, how well (blocked and random cross-validation), and where it may be
used. Built from ``model.json`` alone, so that the card never says what the file does not.
"""

from __future__ import annotations

from typing import Any

NAMES = {"ridge": "ridge regression (standardised, imputed)", "gbm": "gradient boosting"}


def _crs_name(crs_wkt: str) -> str:
    if not crs_wkt:
        return "none (map units taken as metres)"
    from pyproj import CRS

    crs = CRS.from_wkt(crs_wkt)
    code = crs.to_epsg()
    return f"{crs.name} (EPSG:{code})" if code else crs.name


def card(meta: dict[str, Any]) -> str:
    """The Markdown model card of a model's ``model.json`` (``meta``)."""
    unit, cv, truth = meta["unit"], meta["cv"], meta["truth"]
    flagged = ", ".join(f"{n} {r}" for r, n in truth["flagged"].items() if n) or "none"
    what = "cells" if truth["kind"] == "points" else "plots"
    x0, x1, y0, y1 = truth["extent"]
    lines = [
        f"# Yield model: {meta['value']} ({unit})",
        "",
        f"Predicts `{meta['value']}` in {unit} on cells of {meta['cell_m']:g} m from the crop "
        "features of a tiler run. Chosen model: "
        f"**{meta['chosen']}** ({NAMES.get(meta['chosen'], meta['chosen'])}).",
        "",
        "## Training data",
        "",
        f"- file: `{truth['path']}` ({truth['kind']})",
        f"- records: {truth['records']}, kept {truth['kept']}; left out: {flagged}",
        f"- training {what}: {cv['n_cells']}; extent x {x0:.10g}..{x1:.10g}, "
        f"y {y0:.10g}..{y1:.10g}",
        f"- CRS: {_crs_name(meta['crs_wkt'])}",
        "",
        "## Features (range in the training data)",
        "",
    ]
    for name in meta["features"]:
        lo, hi = meta["ranges"][name]
        outside = meta["outside_pct"][name]
        lines.append(f"- `{name}`: {lo:.4g} .. {hi:.4g} ({outside:.1f} % of all cells outside)")
    lines += [
        "",
        f"## Cross-validation ({cv['folds']} folds; blocks of {cv['block_m']:g} m dealt whole)",
        "",
        f"| model | blocked R² | RMSE ({unit}) | bias ({unit}) | random-CV R² |",
        "|---|---|---|---|---|",
    ]
    for name, s in meta["candidates"].items():
        mark = " (chosen)" if name == meta["chosen"] else ""
        lines.append(
            f"| {name}{mark} | {s['r2']:.3f} | {s['rmse']:.3f} | {s['bias']:+.3f} | "
            f"{s['random_r2']:.3f} |"
        )
    res = meta["residuals"]
    lines += [
        "",
        "Random CV deals single cells to the folds, so a test cell's neighbours are in "
        "training and their shared error flatters the score; the blocked R² is the one to "
        "expect on ground the model has not seen.",
        "",
        f"Residuals (blocked CV): SD {res['sd']:.3f} {unit}, 95 % of |residual| under "
        f"{res['q95_abs']:.3f}; exponential covariance: nugget {res['nugget']:.4g}, partial "
        f"sill {res['partial_sill']:.4g} ({unit})², range {res['range_m']:.3g} m.",
        "",
        "## Intended use and limits",
        "",
        f"- The field and season of `{truth['path']}` only: a model of one field's stand and "
        "yield does not carry to another field, season or variety without new truth.",
        "- Only for cells whose features lie inside the training ranges above; elsewhere "
        "the prediction is an extrapolation.",
        "- Prediction intervals come from the cross-validated residuals; they assume the "
        "truth's errors are like those of the cells being predicted.",
        "",
        f"Made {meta['date']} with tiler {meta['tiler']}, scikit-learn {meta['sklearn']}.",
        "",
    ]
    return "\n".join(lines)
