"""Habits that keep tiler readable (issue 14): no repeated blocks, no module over 400 lines.

The layering is held by tests/test_layers.py, lint and types by ``make check``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tiler"
MAX_LINES = 400

# Modules over MAX_LINES, with their line counts as ceilings: one may shrink, never grow past
# its ceiling; once under MAX_LINES its line goes (the test says so). Empty since issue 14: every
# module fits, and a new entry needs a reason in review.
CEILINGS: dict[str, int] = {}


def line_counts() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text().splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_grows_past_its_ceiling():
    over = {
        name: f"{n} lines > {CEILINGS.get(name, MAX_LINES)}"
        for name, n in line_counts().items()
        if n > CEILINGS.get(name, MAX_LINES)
    }
    assert over == {}, "split these modules by concept (one new module per concept)"


def test_every_ceiling_is_still_needed():
    counts = line_counts()
    stale = {name for name in CEILINGS if counts.get(name, 0) <= MAX_LINES}
    assert stale == set(), "under the limit now (or gone): delete their lines from CEILINGS"


def test_no_block_of_six_lines_is_repeated():
    """pylint's duplicate-code check, configured in pyproject.toml ([tool.pylint])."""
    result = subprocess.run(
        [sys.executable, "-m", "pylint", "tiler"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
