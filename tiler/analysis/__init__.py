"""Analyses of a finished run's outputs: the stand along the rows (:mod:`tiler.analysis.rows`)."""

from tiler.analysis.rows import StandReport, analyse, lines

__all__ = ["StandReport", "analyse", "lines"]
