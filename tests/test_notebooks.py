"""The notebooks in notebooks/: committed without outputs, and each runs from top to bottom.

Each notebook is executed with nbclient in a fresh ``python3`` kernel (ipykernel, this
interpreter) with ``notebooks/`` as its working directory; then the numbers its walk-through
prints are checked (counts that must agree, equality checks that must say ``True``) and its
plots counted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from traitlets.config import Config

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = (
    "01_quickstart.ipynb",
    "02_plant_count_report.ipynb",
    "03_cluster.ipynb",
    "04_stand_along_rows.ipynb",
    "05_yield.ipynb",
)
CELL_TIMEOUT = 300  # seconds; each notebook runs in well under a minute on 2 cores


def execute(name: str) -> nbformat.NotebookNode:
    """Run notebook ``name`` top to bottom; any cell's error fails with that cell's traceback."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
        # CurveZMQ on the kernel's 127.0.0.1 sockets (ipykernel's spec declares support);
        # without it ipykernel logs that it talks plain-text TCP.
        config=Config({"KernelManager": {"transport_encryption": "auto"}}),
    )
    client.execute()
    return notebook


def streams(notebook: nbformat.NotebookNode, name: str = "stdout") -> str:
    """Everything the code cells wrote to ``stdout`` (or ``stderr``), in order."""
    return "".join(
        output.text
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == name
    )


def cell_stdout(notebook: nbformat.NotebookNode, snippet: str) -> str:
    """What the one code cell whose source contains ``snippet`` printed."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, f"expected one cell containing {snippet!r}, found {len(cells)}"
    return "".join(o.text for o in cells[0].outputs if o.output_type == "stream")


def printed(text: str, label: str) -> str:
    """The rest of the line printed as ``label: value`` (exactly one such line)."""
    found = re.findall(rf"^{re.escape(label)}:\s*(.*)$", text, flags=re.MULTILINE)
    assert len(found) == 1, f"expected one line {label!r}, found {found} in:\n{text}"
    return found[0].strip()


def number(text: str, label: str) -> int:
    return int(re.match(r"[\d,]+", printed(text, label)).group().replace(",", ""))


def figures(notebook: nbformat.NotebookNode) -> int:
    """The number of figures shown inline (a module calling ``matplotlib.use`` hides them)."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def assert_clean(notebook: nbformat.NotebookNode) -> None:
    """No Python warning reached a notebook's output (the suite treats warnings as errors)."""
    stderr = streams(notebook, "stderr")
    assert "Warning" not in stderr, stderr


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], f"{name}: outputs left in cell {cell.source[:60]!r}"
        assert cell.execution_count is None, f"{name}: execution count left in a cell"
    assert all("execution" not in cell.metadata for cell in notebook.cells)


def test_quickstart():
    notebook = execute("01_quickstart.ipynb")
    out = streams(notebook)
    assert_clean(notebook)
    n_objects = number(out, "objects")
    assert n_objects > 0
    assert number(out, "rows in the object table") == n_objects
    assert number(out, "run.json object_count") == n_objects
    assert printed(out, "object count agrees with the table") == "True"
    assert printed(out, "complete") == "True"
    # the row-crop section: the preset's count is close to the synthetic ground truth
    truth = number(out, "plants in the ground truth")
    preset = number(out, "objects, row-crop-plants")
    assert truth > 500
    assert abs(preset / truth - 1) < 0.10, (preset, truth)
    assert figures(notebook) == 5


def test_plant_count_report():
    notebook = execute("02_plant_count_report.ipynb")
    out = streams(notebook)
    assert_clean(notebook)
    n_objects = number(out, "objects")
    assert printed(out, "whole image").startswith(f"{n_objects} objects, ")
    comparison = cell_stdout(notebook, "comparison = ")
    for plot in "ABCD":
        assert re.search(rf"^{plot}\s+\d+\s+\d+\s+[+-]\d", comparison, flags=re.MULTILINE), plot
    largest_error = float(printed(out, "largest count error").rstrip("%"))
    assert largest_error < 10.0, comparison
    assert figures(notebook) == 4


def test_cluster():
    notebook = execute("03_cluster.ipynb")
    out = streams(notebook)
    assert_clean(notebook)
    assert number(out, "workers") == 2
    assert printed(out, "dashboard").startswith("http://127.0.0.1:")
    assert number(out, "workers that ran tasks") == 2
    assert printed(out, "chunks byte-identical") == "True"
    assert printed(out, "label arrays equal") == "True"
    assert printed(out, "object tables equal") == "True"
    resume = json.loads(cell_stdout(notebook, 'manifest["resume"]'))
    assert resume["attempt"] == 1
    assert resume["tiles_reused"] == 0
    assert resume["tiles_computed"] == resume["tiles"] > 0
    assert "already complete; nothing to resume" in out
    assert printed(out, "same object count") == "True"
    assert out.rstrip().endswith("closed")
    assert figures(notebook) == 1


def measured(text: str, label: str) -> float:
    """The number that starts the value of ``label`` (``0.8997 m``, ``+0.03%``, ``7.06 %``)."""
    return float(re.match(r"[+-]?[\d.]+", printed(text, label)).group())


def test_stand_along_rows():
    notebook = execute("04_stand_along_rows.ipynb")
    out = streams(notebook)
    assert_clean(notebook)
    assert "not analysed: {}" in out  # every plot has its rows
    # the whole field against its planted truth (computed from the layout, not the image)
    assert number(out, "rows found") == number(out, "rows planted") > 30
    spacing = measured(out, "row spacing found")
    assert spacing == pytest.approx(measured(out, "row spacing planted"), rel=0.01)
    assert abs(measured(out, "row spacing error")) < 1.0
    assert (measured(out, "row azimuth found") - measured(out, "row azimuth planted") + 90) % (
        180
    ) - 90 == pytest.approx(0, abs=1.0)
    for index in ("miss", "multiples"):
        found, planted = measured(out, f"{index} found"), measured(out, f"{index} planted")
        assert found == pytest.approx(planted, abs=1.5), index
    assert measured(out, "miss planted") > 3  # the field has skips and doubles to find
    assert measured(out, "multiples planted") > 2
    # per plot: the plants on rows against the planted plants inside the plot
    comparison = cell_stdout(notebook, "comparison = ")
    for plot in ("A1", "A2", "A3", "B1", "B2", "B3"):
        assert re.search(rf"^{plot}\s+\d+\s+\d+\s+[+-]\d", comparison, flags=re.MULTILINE), plot
    assert measured(out, "largest plot count error") < 8.0, comparison
    assert figures(notebook) == 3


def test_yield():
    notebook = execute("05_yield.ipynb")
    out = streams(notebook)
    assert_clean(notebook)
    # every record is either kept or left out for one reason
    records = number(out, "records")
    assert records == number(out, "monitor records") == 1500
    reasons = re.findall(r"^left out, [a-z ]+: (\d+)$", out, flags=re.MULTILINE)
    assert len(reasons) == 6
    assert sum(map(int, reasons)) == number(out, "left out in all")
    assert number(out, "kept") + number(out, "left out in all") == records
    # the combine logged headland records and lags: some are found
    assert number(out, "left out, outside") + number(out, "left out, no crop") > 0
    assert number(out, "left out, local outlier") > 0
    # blocked-CV skill is real and below what the stand can explain
    best = measured(out, "best possible R²")
    assert 0.3 < measured(out, "blocked-CV R²") < best
    assert abs(measured(out, "blocked-CV bias")) < 0.2
    assert 0 < measured(out, "blocked-CV RMSE") < 2.0
    assert measured(out, "blocked-CV R²") < measured(out, "random-CV R²") < 1  # as it says
    # against the known yield, per plot and over the map (truth not from the image)
    comparison = cell_stdout(notebook, "comparison = ")
    for plot in ("A1", "A2", "A3", "B1", "B2", "B3"):
        assert re.search(rf"^{plot}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[+-]\d", comparison,
                         flags=re.MULTILINE), plot  # fmt: skip
    assert measured(out, "largest plot error") < 10.0, comparison
    assert int(printed(out, "plots inside their 95 % interval").split()[0]) >= 5
    assert measured(out, "map R² against the signal") > 0.6
    assert measured(out, "map R² against the yield") > 0  # in sample: no skill measure
    assert printed(out, "basis").startswith("estimate from assumptions")
    assert figures(notebook) == 4
