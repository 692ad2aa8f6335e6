"""DST in object storage: `tiler run SRC s3://bucket/out/` on a real S3 API server.

The server is moto's, in server mode on 127.0.0.1, with credentials enforced
(tests/s3_server.py). The input is read from the bucket and the outputs
written there by `dask worker` processes that share no directory with each
other or with the run; the bucket then holds the very bytes a local run of
the same file writes. A run killed part-way resumes from the bucket's
journal to the same bytes. Wrong credentials, a missing bucket, a user who
may only read, an endpoint that does not answer, and a server stopped
mid-run each give one line, a non-zero exit, and no ``run.json``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("moto.server")  # the test extra: moto[server]

from s3_server import MotoServer, free_port, point_at, tiler  # noqa: E402
from test_cluster import DaskProcesses, output_bytes  # noqa: E402

from tiler import api  # noqa: E402
from tiler.errors import OutputError  # noqa: E402
from tiler.io.output import MANIFEST, WORKDIR  # noqa: E402
from tiler.synthetic import SyntheticField, write_geotiff  # noqa: E402

BUCKET = "tiler-out"
SRC = f"s3://{BUCKET}/survey/ortho.tif"
CHUNK = 128
TILER = [sys.executable, "-m", "tiler.cli"]


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    """A 700 x 900 synthetic field, tiled in 64-px blocks, as a file and in the bucket."""
    path = tmp_path_factory.mktemp("field") / "ortho.tif"
    return write_geotiff(SyntheticField(height=700, width=900, seed=3), path, blocksize=64)


@pytest.fixture(scope="module")
def server(tmp_path_factory, field):
    moto = MotoServer(tmp_path_factory.mktemp("moto"))
    moto.s3.create_bucket(Bucket=BUCKET)
    moto.s3.upload_file(str(field), BUCKET, "survey/ortho.tif")
    yield moto
    moto.stop()


@pytest.fixture(scope="module")
def local_run(field, tmp_path_factory) -> Path:
    """The run of the file on disk, in this process: what every run into the bucket must equal."""
    dst = tmp_path_factory.mktemp("local") / "out"
    api.run(field, dst, chunk_size=CHUNK, scheduler="threads", warn=lambda m: None)
    return dst


def bucket_bytes(server: MotoServer, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix`` but the manifest, by its name below the prefix."""
    found = {}
    for page in server.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for entry in page.get("Contents", []):
            name = entry["Key"][len(prefix) :]
            if name != MANIFEST:
                found[name] = server.s3.get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read()
    return found


def manifest(server: MotoServer, prefix: str) -> dict:
    return json.loads(server.s3.get_object(Bucket=BUCKET, Key=prefix + MANIFEST)["Body"].read())


def has(server: MotoServer, key: str) -> bool:
    return server.s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_workers_sharing_no_directory_write_the_local_runs_bytes(server, local_run, tmp_path):
    (tmp_path / "cluster").mkdir()
    with DaskProcesses(tmp_path / "cluster", env=server.env(), own_directories=True) as cluster:
        dst = f"s3://{BUCKET}/runs/a/"
        done = tiler("run", SRC, dst, "--scheduler", cluster.address, "--chunk-size", CHUNK,
                     "-q", env=server.env(), timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        with cluster.client() as client:
            executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(count > 0 for count in executed.values())
    assert bucket_bytes(server, "runs/a/") == output_bytes(local_run)  # no work folder left
    recorded = manifest(server, "runs/a/")
    assert recorded["complete"] is True and recorded["input"]["path"] == SRC
    assert f"labels:     {dst}labels.zarr" in done.stdout
    for text in (json.dumps(recorded), done.stdout, done.stderr):
        assert server.secret not in text and server.key_id not in text
    # Nothing was written where the processes ran.
    for name in ("scheduler", "worker0", "worker1"):
        written = [p.name for p in (tmp_path / "cluster" / name).rglob("*") if p.is_file()]
        assert not [n for n in written if n.endswith((".zarr", ".parquet", ".json", ".log"))]


def test_a_run_killed_part_way_resumes_from_the_bucket(server, local_run):
    dst, prefix = f"s3://{BUCKET}/runs/killed/", "runs/killed/"
    command = ["run", SRC, dst, "--scheduler", "threads", "--chunk-size", 96]
    run = subprocess.Popen(
        [*TILER, *map(str, command), "-q"],
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = f"{prefix}{WORKDIR}/journal/003-"  # a segment of the fourth pass's log
    deadline = time.monotonic() + 180
    while not has(server, journal):
        assert run.poll() is None, f"the run ended before it could be killed: {run.stderr}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    assert not has(server, prefix + MANIFEST)

    resumed = tiler(*command, "--resume", env=server.env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming: attempt 2" in resumed.stderr
    again = tiler("run", SRC, f"s3://{BUCKET}/runs/whole/", "--scheduler", "threads",
                  "--chunk-size", 96, "-q", env=server.env(), timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert bucket_bytes(server, prefix) == bucket_bytes(server, "runs/whole/")
    resume = manifest(server, prefix)["resume"]
    assert resume["attempt"] == 2 and 0 < resume["tiles_reused"] < resume["tiles"]


@pytest.mark.parametrize(
    ("dst", "change", "said"),
    [
        (f"s3://{BUCKET}/runs/denied/", {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "denied"),
        ("s3://no-such-bucket/out/", {}, "no such bucket"),
        (f"s3://{BUCKET}/runs/read-only/", "reader", "access denied"),
        (f"s3://{BUCKET}/runs/nobody/", "no-endpoint", "does not answer"),
    ],
)
def test_a_bucket_that_refuses_is_one_line_and_nothing_complete(server, field, dst, change, said):
    if change == "reader":  # may read the input, not write
        key_id, secret = server.user("reader", ["s3:GetObject", "s3:ListBucket"])
        change = {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    elif change == "no-endpoint":
        change = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    env = server.env(**change)
    # The input is a local file: the refusal is the destination's.
    done = tiler("run", field, dst, "--scheduler", "threads", "-q", env=env, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"tiler: error: {dst.rstrip('/')}: cannot write the outputs at ")
    assert said in lines[0]
    prefix = dst.split(BUCKET + "/", 1)[-1]
    if dst.startswith(f"s3://{BUCKET}/"):
        assert not has(server, prefix + MANIFEST)
    for secret in (server.secret, env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]):
        assert secret not in done.stdout + done.stderr


def test_a_server_stopped_mid_run_is_one_line(field, tmp_path):
    moto = MotoServer(tmp_path)
    try:
        moto.s3.create_bucket(Bucket=BUCKET)
        run = subprocess.Popen(
            [*TILER, "run", str(field), f"s3://{BUCKET}/out/", "--scheduler",
             "threads", "--chunk-size", "48", "-q"],
            env=moto.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while not has(moto, f"out/{WORKDIR}/journal/001-"):
            assert run.poll() is None, f"the run ended before the server stopped: {run.stderr}"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        moto.stop()
    _, stderr = run.communicate(timeout=300)
    assert run.returncode not in (0, None)
    lines = [line for line in stderr.strip().splitlines() if line.startswith("tiler: error:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"tiler: error: s3://{BUCKET}/out") and "does not answer" in lines[0]


def test_a_bucket_prefix_is_claimed_as_a_folder_is(server, field, monkeypatch):
    """Another run's outputs are replaced only with --overwrite; what tiler did not write, never."""
    point_at(server, monkeypatch)
    dst = f"s3://{BUCKET}/runs/claimed"
    run = dict(chunk_size=256, scheduler="sync", warn=lambda m: None)
    first = api.run(field, dst, **run)
    with pytest.raises(OutputError, match=r"holds the outputs of a tiler run; pass --overwrite"):
        api.run(field, dst, **run)
    again = api.run(field, dst, overwrite=True, **run)
    assert again.n_objects == first.n_objects > 0
    server.s3.put_object(Bucket=BUCKET, Key="runs/claimed/notes.txt", Body=b"mine")
    with pytest.raises(OutputError, match=r"holds files tiler did not write \(notes\.txt\)"):
        api.run(field, dst, overwrite=True, **run)
    assert has(server, "runs/claimed/run.json") and has(server, "runs/claimed/notes.txt")
