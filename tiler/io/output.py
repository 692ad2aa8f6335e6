"""The output directory (DESIGN.md section 4): what is where in DST, and whose it is.

Nothing under a final name looks complete before it is: the label store is
written as ``.labels.zarr.partial`` and renamed, the table and the manifest
are written to temporary names and renamed, and ``run.json`` comes last. The
parts, one concept each: :mod:`tiler.io.destination` (taking DST, cleaning
up), :mod:`tiler.io.label_store`, :mod:`tiler.io.objects_table`,
:mod:`tiler.io.run_record` and :mod:`tiler.io.finished` (is a run complete).
"""

from __future__ import annotations

from tiler.io import targets

LABELS = "labels.zarr"
OBJECTS = "objects.parquet"
MANIFEST = "run.json"
WORKDIR = ".tiler-work"
PARTIAL_LABELS = ".labels.zarr.partial"
LOCK = ".tiler-lock"


# What an interrupted run of tiler leaves behind: tiler's own, so removed without asking.
LEFTOVERS = (WORKDIR, PARTIAL_LABELS, f".{OBJECTS}.partial", f".{MANIFEST}.partial")
# An unfinished run's journal (see tiler.journal): what --resume continues.
JOURNAL_IDENTITY = f"{WORKDIR}/journal/attempt.json"

# The stand analysis `tiler rows` writes (into DST/stand unless told), and the folder
# its per-field parts are written to before they are merged.
STAND = "stand"
STAND_FILES = ("rows.parquet", "gaps.parquet", "stand.csv")
STAND_PARTS = ".stand-parts.partial"
STAND_OUTPUTS = targets.Outputs(
    "--out folder",
    frozenset(STAND_FILES),
    STAND_FILES,
    frozenset({STAND_PARTS, *(f".{name}.partial" for name in STAND_FILES)}),
)
# The report `tiler report` writes (into DST/report unless told): its files and their
# temporary names.
REPORT = "report"
REPORT_FILES = (
    "fields.csv",
    "fields.parquet",
    "objects.csv",
    "objects.parquet",
    "report.html",
    "pyramid.zarr",
    "yield.tif",  # `tiler report --yield-model`: the yield map
)
REPORT_OUTPUTS = targets.Outputs(
    "--out folder",
    frozenset(REPORT_FILES),
    REPORT_FILES,
    frozenset(f".{name}.partial" for name in REPORT_FILES),
    {STAND: STAND_OUTPUTS},  # `tiler report --rows`: the stand in the report's folder
)
# A yield model folder (`tiler yield calibrate`): written whole as .NAME.partial, then renamed.
MODEL_FILES = ("model.joblib", "model.json", "card.md", "cv.parquet")
MODEL_OUTPUTS = targets.Outputs("--model folder", frozenset(MODEL_FILES), ("model.json",))
# What the `tiler yield` commands write (into DST/yield unless told): the cell features,
# the yield map and per-field yield, the potential, a model folder and the potential's stand.
YIELD = "yield"
MODEL = "model"
YIELD_FILES = ("cells.parquet", "features.tif", "yield.tif", "fields.csv", "fields.parquet",
               "yield.html", "potential.csv", "potential.html")  # fmt: skip
YIELD_OUTPUTS = targets.Outputs(
    "--out folder",
    frozenset(YIELD_FILES),
    YIELD_FILES,
    frozenset({f".{MODEL}.partial", *(f".{name}.partial" for name in YIELD_FILES)}),
    {MODEL: MODEL_OUTPUTS, STAND: STAND_OUTPUTS},
)
# A run's DST: its outputs are tiler's when it has run.json or a journal; its default
# report, stand and yield folders are tiler's when they hold only those.
RUN_OUTPUTS = targets.Outputs(
    "DST",
    frozenset({LABELS, OBJECTS, MANIFEST}),
    (MANIFEST, JOURNAL_IDENTITY),
    frozenset(LEFTOVERS),
    {REPORT: REPORT_OUTPUTS, STAND: STAND_OUTPUTS, YIELD: YIELD_OUTPUTS},
)
