"""What a command costs before any pixel: the modules it imports, its scheduler, its kernels.

``tiler --help`` and ``import tiler`` import none of the stacks a run uses; a
default ``tiler run`` starts no cluster (threads in this process) and imports
none of the report's, the export's or the cluster's stacks; ``--dashboard``
asks for a LocalCluster; compiled kernels are loaded from disk by the next
process. Each in a fresh interpreter, since what matters is what a new process
imports (benchmarks/fixed_costs.py measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

import tiler
from tiler.cluster import default_scheduler

# A run imports these; --help and `import tiler` should not.
RUN_STACKS = ("distributed", "geopandas", "bokeh", "matplotlib", "pyarrow")
RUN_STACKS += ("dask", "rasterio", "zarr", "numba", "pandas", "tornado")
# A default run on threads imports none of the cluster's, the report's or the export's stacks.
NOT_RUN = ("distributed", "bokeh", "tornado", "geopandas", "matplotlib")
TRANSFORM = Affine(0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)


def imported_after(code: str, names: tuple[str, ...], env: dict | None = None) -> list[str]:
    """Which of ``names`` a fresh interpreter has imported after running ``code``."""
    probe = (
        "import io, sys, contextlib\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + f"print(' '.join(n for n in {names!r} if n in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=180,
        env=env if env is not None else os.environ,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "import tiler",
        "import tiler.cli",
        "from tiler.cli import main\nmain(['--help'])",
        "from tiler.cli import main\nmain(['run', '--help'])",
        "from tiler.cli import main\nmain(['demo', '--help'])",
    ],
    ids=["import tiler", "import tiler.cli", "tiler --help", "tiler run --help", "demo --help"],
)
def test_help_and_import_load_none_of_a_runs_stacks(code):
    assert imported_after(code, RUN_STACKS) == []


def test_the_package_names_are_the_apis_once_used():
    from tiler import analysis, api, config

    assert tiler.run is api.run and tiler.open_labels is api.open_labels
    assert tiler.read_objects is api.read_objects and tiler.RunResult is api.RunResult
    assert tiler.rows is analysis.analyse and tiler.StandReport is analysis.StandReport
    assert tiler.Pipeline is config.Pipeline and tiler.load_pipeline is config.load_pipeline
    assert tiler.DEFAULT_PIPELINE_YAML == config.DEFAULT_PIPELINE_YAML
    assert set(tiler.__all__) <= set(dir(tiler))
    with pytest.raises(AttributeError, match="no attribute 'runn'"):
        tiler.runn  # noqa: B018 - the attribute access is the test


def test_default_scheduler_is_threads_unless_a_cluster_is_asked_for():
    assert default_scheduler() == "threads"
    assert default_scheduler(workers=1) == "threads"
    assert default_scheduler(workers=2) == "local"
    assert default_scheduler(memory_limit="2GiB") == "local"
    assert default_scheduler(dashboard=True) == "local"
    assert default_scheduler(performance_report="report.html") == "local"


@pytest.fixture
def small_tif(geotiff) -> Path:
    image = np.full((3, 64, 64), 110, np.uint8)
    image[:, 20:30, 20:30] = np.array([60, 170, 50], np.uint8)[:, None, None]
    return geotiff(image, name="small.tif", transform=TRANSFORM)


def cli_run(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "tiler.cli", "run", *map(str, args)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_default_run_starts_no_cluster_and_imports_only_what_it_uses(tmp_path, small_tif):
    dst = tmp_path / "out"
    args = [str(small_tif), str(dst), "-q"]
    code = f"from tiler.cli import main\nassert main(['run', *{args!r}]) == 0"
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    assert imported_after(code, NOT_RUN, env) == []
    assert json.loads((dst / "run.json").read_text())["scheduler"] == "threads"


def test_dashboard_starts_a_local_cluster_and_says_where(tmp_path, small_tif):
    dst = tmp_path / "out"
    proc = cli_run(tmp_path, small_tif, dst, "--dashboard")
    assert proc.returncode == 0, proc.stderr
    assert "local cluster: " in proc.stderr and "dashboard http://127.0.0.1:" in proc.stderr
    assert json.loads((dst / "run.json").read_text())["scheduler"] == "local"


def test_dashboard_with_another_scheduler_is_a_usage_error(tmp_path, small_tif):
    for other in (("--scheduler", "threads"), ("--scheduler", "sync"), ("--cluster", "slurm")):
        proc = cli_run(tmp_path, small_tif, tmp_path / "out", "--dashboard", *other)
        assert proc.returncode == 2, proc.stderr
        assert "--dashboard" in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "out").exists()


KERNEL = (
    "import numpy as np\n"
    "from tiler.kernels.label import _relabel, relabel\n"
    "out = relabel(np.array([[0, 1], [2, 1]], np.int32), np.array([0, 5, 7], np.int64))\n"
    "assert out.tolist() == [[0, 5], [7, 5]]\n"
    "print(sum(_relabel.stats.cache_hits.values()), sum(_relabel.stats.cache_misses.values()))\n"
)


def kernel_cache_stats(env: dict) -> tuple[int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", KERNEL], capture_output=True, text=True, timeout=180, env=env
    )
    assert proc.returncode == 0, proc.stderr
    hits, misses = proc.stdout.split()
    return int(hits), int(misses)


def test_kernels_compiled_once_are_loaded_from_disk_by_the_next_process(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    assert kernel_cache_stats(env) == (0, 1)  # compiled, and written to the cache
    assert kernel_cache_stats(env) == (1, 0)  # loaded: nothing compiled


def test_kernels_still_run_where_no_cache_folder_is_writable(tmp_path):
    """numba refuses cache=True at import when no folder can hold the cache (a read-only
    install and no writable home): the kernels are compiled in the process instead."""
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = dict(
        os.environ,
        NUMBA_CACHE_DIR=str(blocked / "numba"),  # under a file: cannot be created
        NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator",  # no other folder to fall to
    )
    assert kernel_cache_stats(env) == (0, 1)  # compiled here, and it ran
    assert kernel_cache_stats(env) == (0, 1)  # compiled again: nowhere to keep it
