"""Yield from a finished run: per-cell crop features, models calibrated on measured yield,
yield maps and per-field estimates with prediction intervals (issue 20).

``tiler yield features`` summarises the crop on a grid of cells in ground units
(:mod:`tiler.yield_.cells`); ``tiler yield calibrate`` relates the cells to yield measured
on the ground (yield-monitor points or harvested plots: :mod:`tiler.yield_.truth`) with
models chosen by spatially blocked cross-validation (:mod:`tiler.yield_.model`);
``tiler yield predict`` maps the model over every cell and sums it per field with prediction
intervals (:mod:`tiler.yield_.predict`); ``tiler yield potential`` is the stand-based
estimate when no yield was measured.
"""
