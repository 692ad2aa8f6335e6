"""The layers import in one direction only (STYLE.md): kernels and stitching stay pure."""

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
    PACKAGE / "reference.py",
    PACKAGE / "accuracy.py",
    PACKAGE / "georef.py",
]


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_import_no_io_or_dask(path):
    roots = imported_roots(path)
    assert not roots & ORCHESTRATION, f"{path.name} imports {sorted(roots & ORCHESTRATION)}"
    assert not any(
        r.startswith(("tiler.io", "tiler.plan", "tiler.engine", "tiler.api")) for r in roots
    )


def test_only_plan_builds_dask_graphs():
    builders = [
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if {"dask"} & imported_roots(p) and p.name != "plan.py"
    ]
    assert builders == []
