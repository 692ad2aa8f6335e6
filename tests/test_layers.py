"""Imports point down the layers (DESIGN.md section 6): kernels and stitching stay pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tiler"
ORCHESTRATION = {"dask", "distributed", "rasterio", "zarr", "xarray", "rioxarray", "geopandas"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("tiler."):
                roots.add(node.module)
    return roots


PURE = sorted((PACKAGE / "kernels").glob("*.py")) + [
    PACKAGE / "stitch.py",
    PACKAGE / "split.py",
    PACKAGE / "points.py",
    PACKAGE / "reference.py",
    PACKAGE / "accuracy.py",
    PACKAGE / "georef.py",
    *sorted((PACKAGE / "stand").glob("*.py")),
]


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_import_no_io_or_dask(path):
    roots = imported_roots(path)
    assert not roots & ORCHESTRATION, f"{path.name} imports {sorted(roots & ORCHESTRATION)}"
    assert not any(
        r.startswith(("tiler.io", "tiler.plan", "tiler.passes", "tiler.api")) for r in roots
    )


def test_only_plan_builds_dask_graphs():
    """plan.py builds the graphs; executor.py hands them to dask's schedulers."""
    builders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if {"dask"} & imported_roots(p) and p.name not in ("plan.py", "executor.py")
    ]
    assert builders == []


# DESIGN.md section 6, bottom first. A module belongs to the layer of the longest prefix of
# its name listed here; it may import its own layer and those below, never one above.
# Names not written yet (models, analysis) are placed already.
LAYERS = [
    # tiler.io.stores imports nothing of tiler but its errors, tiler.io.atomic only stores: every
    # layer that writes files, or opens Zarr stores by path or URL, uses them. tiler.defaults
    # imports nothing: the command line's help reads its defaults there.
    ("errors", ["tiler.errors", "tiler.defaults", "tiler.io.atomic", "tiler.io.stores"]),
    # Pure geometry (windows, the grid) under the kernels: a kernel that works on a window of
    # an image (CLAHE's) takes the one Window type rather than defining its own.
    ("tiling", ["tiler.tiling"]),
    ("kernels", ["tiler.kernels"]),
    (
        "steps",
        [
            "tiler.units",
            "tiler.resolution",
            "tiler.steps",
            "tiler.models",
            "tiler.cnn.metadata",  # the step reads a model's metadata while parsing
            "tiler.cnn.session",  # and resolves its device; the reference runs it
            "tiler.stitch",
            "tiler.split",
            "tiler.points",
            "tiler.georef",
            "tiler.reference",
            "tiler.accuracy",
            "tiler.synthetic",
            "tiler.stand",  # the stand along rows from plant positions: pure NumPy
            "tiler.synthetic_rows",
            "tiler.synthetic_yield",  # known yield and yield-monitor points: pure NumPy
            "tiler.synthetic_stamps",
            "tiler.config",
            "tiler.presets",
            "tiler.reach",
            "tiler.diagnostics",
        ],
    ),
    (
        "graph and tasks",
        [
            "tiler.passes",
            "tiler.plan",
            "tiler.taskgraph",
            "tiler.executor",
            "tiler.source",
            "tiler.values",
            "tiler.masks",
            "tiler.inference",
            "tiler.cnn",  # blocks: reads the source, writes the confidence store
            "tiler.tasks",
            "tiler.cluster",
            "tiler.journal",
            "tiler.cache",
            "tiler.progress",
        ],
    ),
    ("io", ["tiler.io"]),
    (
        "analysis",
        ["tiler.analysis", "tiler.report", "tiler.yield_"],
    ),  # read outputs; export uses report.fields
    # tiler.train (optional extra: torch) reads files through tiler.io, as the API does.
    ("api", ["tiler.api", "tiler.export", "tiler.resumption", "tiler.evaluate", "tiler.train"]),
    # tiler: the package facade. tiler.cli is a package: the group (__init__), one module per
    # command family (runs, results, prepare) and what they share (options, output).
    ("cli", ["tiler", "tiler.cli", "tiler.demo", "tiler.examples"]),
]

# Imports up the layers that tiler has today, each with what removes it. The test fails on any
# other, and on one listed here that is gone (then delete its line): the list only shrinks.
EXCEPTIONS = {
    ("tiler.passes.runner", "tiler.io.label_store"): "the runner creates the work Zarr stores "
    "the passes write; the api should create them and hand them to the passes",
    ("tiler.passes.seeded", "tiler.io.seeds"): "growing reads the seeds file; the api should",
    ("tiler.api.record", "tiler"): "__version__ lives in tiler/__init__.py: move it to "
    "tiler/_version.py",
    ("tiler.report", "tiler"): "same: __version__",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module``'s layer (longest listed prefix), or None."""
    best = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = index, len(prefix)
    return best[0]


def tiler_imports(module: str) -> set[str]:
    """The tiler modules that ``module`` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "tiler"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "tiler":
                continue
            for alias in node.names:  # `from tiler import api` imports the module tiler.api
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    found.discard(module)
    return found


def upward_imports() -> set[tuple[str, str]]:
    return {
        (module, imported)
        for module in MODULES
        for imported in tiler_imports(module)
        if layer_of(imported) > layer_of(module)
    }


def test_every_module_has_a_layer():
    assert [m for m in sorted(MODULES) if layer_of(m) is None] == []


def test_imports_point_down_the_layers():
    found = upward_imports() - EXCEPTIONS.keys()
    described = [
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {i} ({LAYERS[layer_of(i)][0]})"
        for m, i in sorted(found)
    ]
    assert described == []


def test_every_listed_exception_still_exists():
    assert sorted(EXCEPTIONS.keys() - upward_imports()) == []


def test_io_never_drives_a_run():
    """io/ reads and writes files; it never imports the API, the graph builder or the passes."""
    drivers = ("tiler.api", "tiler.plan", "tiler.passes")
    found = sorted(
        (module, imported)
        for module in MODULES
        if module.startswith("tiler.io.")
        for imported in tiler_imports(module)
        if imported.startswith(drivers)
    )
    assert found == []
