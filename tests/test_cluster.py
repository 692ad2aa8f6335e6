"""tiler on real clusters: `dask scheduler` and `dask worker` processes on 127.0.0.1.

Every run here is a real `tiler run` process (the command line) against real
scheduler and worker processes; the outputs are compared byte for byte with
the single-process (`--scheduler sync`) run of the same input.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_geotiff as write_array
from distributed import Client

from tiler.io.output import MANIFEST
from tiler.synthetic import SyntheticField, write_geotiff

TESTS = Path(__file__).parent
DASK = str(Path(sys.executable).with_name("dask"))


def environment(**extra: str) -> dict[str, str]:
    """This environment, with the tests' models importable and no ambient scheduler."""
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def tiler_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "tiler.cli", "run", *map(str, args)]


def tiler(*args: object, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        tiler_command(*args), env=environment(**extra), capture_output=True, text=True, timeout=300
    )


class DaskProcesses:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, stopped on exit."""

    def __init__(
        self,
        tmp: Path,
        workers: int = 2,
        *,
        nanny: bool = False,
        tls: dict | None = None,
        env=None,
        own_directories: bool = False,
    ):
        """``own_directories``: each process works in a folder of its own (its working and
        local directory), sharing none with the others or with the client."""
        self.tmp, self.tls, self.own = tmp, tls or {}, own_directories
        self.env = environment(**(env or {}))
        self.logs: list = []
        tls_args = [f"--{k}={v}" for k, v in self.tls.items()] + (["--protocol=tls"] if tls else [])
        info = tmp / "scheduler.json"
        self.scheduler = self._start(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", str(info), *tls_args],
        )
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, self.log_text()
            assert self.scheduler.poll() is None, self.log_text()
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        self.workers = [
            self._start(
                f"worker{i}",
                [DASK, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1"]
                + ["--no-dashboard", "--nanny" if nanny else "--no-nanny", "--name", f"w{i}"]
                + tls_args
                + (["--local-directory", str(tmp / f"worker{i}")] if own_directories else []),
            )
            for i in range(workers)
        ]
        with self.client() as client:
            client.wait_for_workers(workers, timeout=90)

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("w")
        self.logs.append(log)
        cwd = TESTS
        if self.own:
            cwd = self.tmp / name
            cwd.mkdir(exist_ok=True)
        return subprocess.Popen(
            command, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def client(self) -> Client:
        from distributed import Security

        security = None
        if self.tls:
            security = Security(
                tls_ca_file=self.tls["tls-ca-file"],
                tls_client_cert=self.tls["tls-cert"],
                tls_client_key=self.tls["tls-key"],
                require_encryption=True,
            )
        return Client(self.address, timeout="30s", security=security)

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp.glob("*.log")))

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def output_bytes(dst: Path) -> dict[str, bytes]:
    """Every file of the outputs but the manifest (whose timings and scheduler differ)."""
    return {
        str(p.relative_to(dst)): p.read_bytes()
        for p in sorted(dst.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def manifest(dst: Path) -> dict:
    return json.loads((dst / MANIFEST).read_text())


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    """A 900 x 800 synthetic row-crop field (RGBA, a nodata border)."""
    path = tmp_path_factory.mktemp("field") / "field.tif"
    return write_geotiff(SyntheticField(height=900, width=800, seed=11), path, blocksize=64)


@pytest.fixture(scope="module")
def reference(field, tmp_path_factory) -> Path:
    """The single-process run everything is compared with."""
    dst = tmp_path_factory.mktemp("reference") / "out"
    proc = tiler(field, dst, "--scheduler", "sync", "--chunk-size", 96, "-q")
    assert proc.returncode == 0, proc.stderr
    return dst


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with DaskProcesses(tmp_path_factory.mktemp("cluster")) as processes:
        yield processes


def test_a_run_on_scheduler_and_worker_processes_is_byte_identical(
    cluster, field, reference, tmp_path
):
    dst = tmp_path / "out"
    proc = tiler(field, dst, "--scheduler", cluster.address, "--chunk-size", 96)
    assert proc.returncode == 0, proc.stderr
    assert output_bytes(dst) == output_bytes(reference)
    assert f"connected to {cluster.address} (2 worker(s))" in proc.stderr
    assert manifest(dst)["complete"] is True
    assert manifest(dst)["resume"]["tiles_reused"] == 0


def test_the_scheduler_address_can_come_from_the_environment(cluster, field, reference, tmp_path):
    dst = tmp_path / "out"
    proc = subprocess.run(
        tiler_command(field, dst, "--chunk-size", 96),
        env=environment(DASK_SCHEDULER_ADDRESS=cluster.address),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert cluster.address in proc.stderr
    assert output_bytes(dst) == output_bytes(reference)


def test_workers_read_with_gdal_settings_for_dask(cluster, field, tmp_path):
    """However the workers were started, the threads that ran tiles read with one GDAL
    thread and a 256 MB block cache (tasks set them: see tiler.io.raster)."""
    assert tiler(field, tmp_path / "out", "--scheduler", cluster.address, "-q").returncode == 0

    def gdal_settings():
        from rasterio.env import get_gdal_config

        return get_gdal_config("GDAL_NUM_THREADS"), get_gdal_config("GDAL_CACHEMAX")

    with cluster.client() as client:
        settings = {
            address: client.submit(gdal_settings, pure=False, workers=[address]).result()
            for address in client.scheduler_info()["workers"]
        }
    assert len(settings) == 2
    assert set(settings.values()) == {(1, 256)}, settings


def test_a_killed_worker_changes_nothing(field, reference, tmp_path):
    """SIGKILL a worker while it runs a tile: the run finishes on the other, byte-identical."""
    (tmp_path / "cluster").mkdir()
    with DaskProcesses(tmp_path / "cluster") as c:
        dst = tmp_path / "out"
        run = subprocess.Popen(
            tiler_command(field, dst, "--scheduler", c.address, "--chunk-size", 96, "-q"),
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        victim = c.workers[0]
        with c.client() as client:
            address = next(
                a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "w0"
            )
            deadline = time.monotonic() + 120
            while not any("tiler-" in str(k) for k in client.processing([address])[address]):
                assert run.poll() is None, "the run finished before a worker could be killed"
                assert time.monotonic() < deadline
                time.sleep(0.005)
            victim.send_signal(signal.SIGKILL)
            assert victim.wait(timeout=30) == -signal.SIGKILL
            stdout, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, stderr
            assert len(client.scheduler_info()["workers"]) == 1
    assert output_bytes(dst) == output_bytes(reference)


def marked_field(path: Path, marker: tuple[int, int]) -> Path:
    """Soil and plants (values below 200) with one pixel of 251 in band 1 at ``marker``."""
    rng = np.random.default_rng(3)
    image = rng.integers(40, 200, size=(3, 120, 100), dtype=np.uint8)
    image[0][marker] = 251
    return write_array(path, image, blocksize=16)


def test_a_tile_that_kills_every_worker_fails_the_run_naming_its_window(tmp_path):
    """The model kills its worker on one tile; after the allowed retries, the error names it."""
    src = marked_field(tmp_path / "marked.tif", marker=(70, 45))
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"model": {"callable": "example_models:dies_on_marker"}}))
    (tmp_path / "cluster").mkdir()
    settings = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    with DaskProcesses(tmp_path / "cluster", nanny=True, env=settings) as c:
        dst = tmp_path / "out"
        proc = tiler(src, dst, "--config", pipeline, "--scheduler", c.address, "--chunk-size", 32)
    assert proc.returncode == 5, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("tiler: error:")]
    assert len(error) == 1, proc.stderr
    # dask blames every task the dying worker held, so the tile named is the marked one
    # (tile 9: rows 64:96, cols 32:64) or one that ran beside it; its window is right.
    named = re.search(r"tile (\d+) \(rows (\d+):(\d+), cols (\d+):(\d+)\)", error[0])
    assert named, error[0]
    t, r0, r1, c0, c1 = map(int, named.groups())
    assert (r0, r1, c0, c1) == (32 * (t // 4), 32 * (t // 4) + 32, 32 * (t % 4), 32 * (t % 4) + 32)
    assert "the workers running it died 2 times" in error[0], error[0]
    assert "KilledWorker" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (dst / MANIFEST).exists()


def test_progress_in_a_log_and_the_summary(field, tmp_path):
    """Not on a terminal (a batch job's log), each pass says how it went in plain lines."""
    proc = tiler(field, tmp_path / "out", "--scheduler", "sync", "--chunk-size", 300)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    for name in ("preprocess", "histogram", "labels", "write"):
        assert re.search(rf"^  {name}: 9 tiles in [\d.]+ s$", proc.stderr, re.M), proc.stderr
    assert re.search(r"^time:\s+[\d.]+ s \([\d.]+ MP/s\)$", proc.stdout, re.M), proc.stdout
    quiet = tiler(field, tmp_path / "quiet", "--scheduler", "sync", "--chunk-size", 300, "-q")
    assert quiet.returncode == 0
    # Quiet: nothing on stderr but warnings (the default pipeline's merged-objects hint here).
    assert all(line.startswith("tiler: warning: ") for line in quiet.stderr.splitlines())
    assert quiet.stdout.splitlines()[0].startswith("pipeline:")


def test_progress_lines_in_a_log_show_tiles_throughput_and_eta():
    import io

    from tiler.progress import Progress

    log = io.StringIO()
    with Progress(file=log, interval=0.01).bar("labels", total=30, done=10, megapixels=60.0) as bar:
        for _ in range(20):
            time.sleep(0.004)
            bar.update()
    lines = log.getvalue().splitlines()
    lines = [line for line in lines if "running for" not in line]  # a beat before the 1st tile
    assert 3 <= len(lines) < 20, lines
    for line in lines:
        assert re.fullmatch(r"  labels: (\d+)/30 tiles, [\d.]+ MP/s, ETA \d:\d\d:\d\d", line), line
    done = [int(re.search(r"(\d+)/30", line).group(1)) for line in lines]
    assert done == sorted(done) and 10 < done[0] and done[-1] < 30


def test_a_progress_bar_on_a_terminal_shows_throughput():
    import io

    from tiler.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with Progress(file=screen).bar("labels", total=50, done=10, megapixels=200.0) as bar:
        for _ in range(40):
            time.sleep(0.006)
            bar.update()
    last = screen.getvalue().split("\r")[-1]
    assert "labels" in last and "50/50 tiles" in last, last
    assert re.search(r", [\d.]+ MP/s\]", last), last


def test_performance_report_is_written_for_distributed_runs_only(field, cluster, tmp_path):
    report = tmp_path / "report.html"
    args = ("--chunk-size", 300, "-q", "--performance-report", report)
    proc = tiler(field, tmp_path / "out", "--scheduler", cluster.address, *args)
    assert proc.returncode == 0, proc.stderr
    assert "Dask Performance Report" in report.read_text()
    proc = tiler(field, tmp_path / "sync", "--scheduler", "sync", *args)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "tiler: error: --performance-report needs a distributed scheduler, not 'sync'\n"
    )
    assert not (tmp_path / "sync").exists()


def test_a_jobqueue_cluster_needs_its_batch_system(field, tmp_path):
    """--cluster slurm builds a dask-jobqueue SLURMCluster; without sbatch it says so."""
    dst = tmp_path / "out"
    proc = tiler(field, dst, "--cluster", "slurm", "--workers", 4, "-q")
    assert proc.returncode == 2
    assert proc.stderr == (
        "tiler: error: --cluster slurm: sbatch not found on PATH; run tiler on a SLURM login "
        "node or inside a job\n"
    )
    assert not dst.exists()


def certificates(folder: Path) -> dict[str, str]:
    """A certificate authority, and a certificate for 127.0.0.1 that it signed (openssl)."""
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "rsa:2048", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=tiler test CA")  # fmt: skip
    openssl("req", *key, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "node.pem", "-days", "2", "-extfile", "san.cnf")  # fmt: skip
    return {
        "tls-ca-file": str(folder / "ca.pem"),
        "tls-cert": str(folder / "node.pem"),
        "tls-key": str(folder / "node.key"),
    }


def test_a_tls_cluster_needs_and_takes_certificates(field, reference, tmp_path):
    """Scheduler and worker speak TLS only; tiler connects with --tls-*, and not without."""
    tls = certificates(tmp_path / "certs")
    (tmp_path / "cluster").mkdir()
    with DaskProcesses(tmp_path / "cluster", workers=1, tls=tls) as c:
        assert c.address.startswith("tls://127.0.0.1:")
        flags = [f"--{k}={v}" for k, v in tls.items()]
        dst = tmp_path / "out"
        proc = tiler(field, dst, "--scheduler", c.address, "--chunk-size", 96, "-q", *flags)
        assert proc.returncode == 0, proc.stderr
        assert output_bytes(dst) == output_bytes(reference)

        refused = tiler(field, tmp_path / "plain", "--scheduler", c.address, "-q")
        assert refused.returncode == 2
        assert refused.stderr.startswith(f"tiler: error: scheduler {c.address}: cannot connect")
        assert refused.stderr.rstrip().endswith(
            "a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key"
        ), refused.stderr
        assert not (tmp_path / "plain").exists()
