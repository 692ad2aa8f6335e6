"""SRC as a URL: a real S3 API server (moto in server mode) on 127.0.0.1, read by GDAL's /vsis3/.

The server enforces credentials (its IAM): a key pair made for the tests is
allowed, any other refused. The input is a Cloud-Optimised GeoTIFF uploaded
there; a run reading it through S3 gives the very labels and objects of the
run of the same file on disk, on threads and on two worker processes.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

moto_server = pytest.importorskip("moto.server")  # the test extra: moto[server]
from s3_server import MotoServer, free_port, tiler  # noqa: E402

from tiler import api  # noqa: E402
from tiler.errors import InputError  # noqa: E402
from tiler.io import remote  # noqa: E402
from tiler.io.open_raster import open_geotiff  # noqa: E402
from tiler.synthetic import SyntheticField, write_geotiff  # noqa: E402

BUCKET = "tiler-inputs"
KEY = "survey/ortho.tif"
URL = f"s3://{BUCKET}/{KEY}"
AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture(scope="session")
def cog(tmp_path_factory) -> Path:
    """A small Cloud-Optimised GeoTIFF (RGBA, 256-pixel blocks, deflate, overviews)."""
    import rasterio.shutil

    tmp = tmp_path_factory.mktemp("cog")
    tiled = write_geotiff(SyntheticField(height=1100, width=1300), tmp / "field.tif")
    path = tmp / "ortho.tif"
    rasterio.shutil.copy(tiled, path, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE")
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory, cog):
    """The S3 server, holding ``URL`` (the COG), for the whole session."""
    moto = MotoServer(tmp_path_factory.mktemp("moto"))
    moto.s3.create_bucket(Bucket=BUCKET)
    moto.s3.upload_file(str(cog), BUCKET, KEY)
    yield moto
    moto.stop()


@pytest.fixture
def s3_env(server, monkeypatch):
    """This process (and the workers it starts) pointed at the server."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in server.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return server


@pytest.fixture(scope="session")
def local_run(tmp_path_factory, cog) -> Path:
    """The run of the COG from disk: what every run through S3 must equal."""
    dst = tmp_path_factory.mktemp("local") / "out"
    api.run(cog, dst, chunk_size=512, scheduler="threads", warn=lambda m: None)
    return dst


def assert_same_outputs(dst: Path, expected: Path) -> None:
    labels = zarr.open_array(str(dst / "labels.zarr" / "labels"), mode="r")[:]
    want = zarr.open_array(str(expected / "labels.zarr" / "labels"), mode="r")[:]
    assert labels.max() > 100  # a real segmentation, not two empty arrays
    np.testing.assert_array_equal(labels, want)
    assert (dst / "objects.parquet").read_bytes() == (expected / "objects.parquet").read_bytes()


def test_urls_map_to_gdal_paths_and_lose_secrets_when_written():
    assert remote.gdal_path("s3://b/k/o.tif") == "/vsis3/b/k/o.tif"
    assert remote.gdal_path("gs://b/o.tif") == "/vsigs/b/o.tif"
    assert remote.gdal_path("az://c/o.tif") == "/vsiaz/c/o.tif"
    signed = "https://me:pw@h.example:8443/o.tif?X-Amz-Signature=abc&X-Amz-Credential=K"
    assert remote.gdal_path(signed) == "/vsicurl/" + signed  # read as given
    assert remote.public_url(signed) == "https://h.example:8443/o.tif"
    assert [remote.is_url(p) for p in ("s3://b/k", "/data/o.tif", "C:/o.tif", "ftp://h/o")] == [
        True,
        False,
        False,
        False,
    ]
    options = remote.gdal_options({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000/"})
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert (options["AWS_HTTPS"], options["AWS_VIRTUAL_HOSTING"]) == ("NO", "FALSE")
    assert remote.gdal_options({"AWS_ENDPOINT_URL": "https://s3.x.org"})["AWS_HTTPS"] == "YES"
    assert "AWS_S3_ENDPOINT" not in remote.gdal_options({})
    assert remote.gdal_options({"VSI_CACHE": "FALSE"}).get("VSI_CACHE") is None  # the user's


def test_s3_input_gives_the_local_run(s3_env, cog, local_run, tmp_path):
    dst = tmp_path / "out"
    done = tiler("run", URL, dst, "--chunk-size", "512", "--scheduler", "threads", "-q",
                 env=s3_env.env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_same_outputs(dst, local_run)
    recorded = json.loads((dst / "run.json").read_text())
    on_disk = json.loads((local_run / "run.json").read_text())
    assert recorded["input"]["path"] == URL
    assert recorded["input"]["size_bytes"] == cog.stat().st_size
    # The fingerprint is a file's: the same bytes on disk and in the bucket agree.
    assert recorded["input"]["fingerprint_sha256"] == on_disk["input"]["fingerprint_sha256"]
    for text in ((dst / "run.json").read_text(), done.stdout, done.stderr):
        assert s3_env.secret not in text and s3_env.key_id not in text


def test_two_worker_processes_read_the_bucket(s3_env, local_run, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(tmp_path / "workers"),
        ) as cluster,
        Client(cluster) as client,
    ):
        places = client.run(lambda dask_worker: (os.getpid(), dask_worker.local_directory))
        pids, directories = zip(*places.values(), strict=True)
        assert len(set(pids)) == 2 and os.getpid() not in pids
        assert len(set(directories)) == 2  # each worker in its own directory
        dst = tmp_path / "out"
        with get_task_stream(client) as stream:
            api.run(URL, dst, chunk_size=512, client=client, warn=lambda m: None)
    # The input is in the bucket only: both worker processes read windows of it.
    assert len({task["worker"] for task in stream.data}) == 2
    assert_same_outputs(dst, local_run)


def test_report_checks_the_bucket_object(s3_env, cog, tmp_path):
    dst = tmp_path / "out"
    api.run(URL, dst, chunk_size=512, scheduler="threads", warn=lambda m: None)
    done = tiler("report", dst, "-q", env=s3_env.env())
    assert done.returncode == 0, done.stderr
    assert (dst / "report" / "report.html").is_file()
    key = "survey/changed.tif"
    s3_env.s3.upload_file(str(cog), BUCKET, key)
    body = bytearray(cog.read_bytes())
    body[-1] ^= 0xFF  # the same size, another last byte
    s3_env.s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    other = f"s3://{BUCKET}/{key}"
    moved = tiler("report", dst, "--src", other, "--overwrite", "-q", env=s3_env.env())
    assert moved.returncode != 0
    assert moved.stderr.strip().splitlines() == [
        f"tiler: error: {other}: not the run's input (changed since the run: same size, but its "
        "fingerprint (SHA-256 of its first and last MiB) differs)"
    ]


@pytest.mark.parametrize(
    ("url", "change", "said"),
    [
        (URL, {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "access denied"),
        (URL, {"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000"}, "access denied"),
        (f"s3://no-such-bucket/{KEY}", {}, "no such bucket"),
        (f"s3://{BUCKET}/survey/missing.tif", {}, "no such object"),
        (URL, {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}, "does not answer"),
    ],
)
def test_unreadable_url_is_one_line(server, tmp_path, url, change, said):
    dst = tmp_path / "out"
    env = server.env(**change)
    done = tiler("run", url, dst, "-q", env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tiler: error: {url}: cannot read at "), lines
    assert said in lines[0]
    assert not (dst / "run.json").exists() and not dst.exists()
    for secret in (server.secret, env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]):
        assert secret not in done.stdout + done.stderr


def own_server(folder: Path, cog: Path, key: str, monkeypatch) -> MotoServer:
    """An S3 server of the test's own holding ``cog`` at ``key``, this process's AWS_ set for it."""
    moto = MotoServer(folder)
    try:
        moto.s3.create_bucket(Bucket=BUCKET)
        moto.s3.upload_file(str(cog), BUCKET, key)
    except BaseException:
        moto.stop()
        raise
    for name, value in moto.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return moto


def test_server_gone_mid_run_is_one_line_naming_the_url(tmp_path, cog, monkeypatch):
    """A task reading a window after the server stopped fails with one line naming the URL."""
    from tiler.io import blocks
    from tiler.tiling import Window

    moto = own_server(tmp_path, cog, KEY, monkeypatch)
    try:
        monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
        source = open_geotiff(URL)
        assert moto.secret.encode() not in pickle.dumps(source)  # nothing secret in a task
        image, _ = source.read((1, 2, 3), Window(0, 256, 0, 256))
        assert image.shape == (3, 256, 256)
    finally:
        moto.stop()
    blocks.CACHE.clear()  # a window whose blocks this process has not decoded
    with pytest.raises(InputError) as raised:
        source.read((1, 2, 3), Window(768, 1024, 768, 1024))
    message = str(raised.value)
    assert message.startswith(f"{URL}: cannot read window ") and "\n" not in message
    assert moto.secret not in message


def test_a_missing_fsspec_backend_is_named():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    with pytest.raises(
        InputError, match=r"^gs://b/o\.tif: reading gs:// URLs needs the package gcsfs"
    ):
        remote.identity("gs://b/o.tif")


def test_an_object_replaced_at_the_same_url_gets_blocks_of_its_own(tmp_path, cog, monkeypatch):
    """Decoded blocks are kept under the object's fingerprint, never served for another object,
    and GDAL's own cache of the URL is cleared (tiler.io.raster.note_version)."""
    import rasterio

    from tiler.io import blocks
    from tiler.tiling import Window

    url, key = f"s3://{BUCKET}/survey/replaced.tif", "survey/replaced.tif"
    moto = own_server(tmp_path, cog, key, monkeypatch)
    try:
        window = Window(0, 600, 0, 700)
        first = open_geotiff(url)
        first.read((1, 2, 3), window)
        decoded = blocks.CACHE.decoded
        first.read((1, 2, 3), window)
        assert blocks.CACHE.decoded == decoded  # the same object: its blocks are at hand
        with rasterio.open(cog) as ds:
            profile, image = ds.profile, ds.read()
        other = tmp_path / "other.tif"
        image[:3] = 255 - image[:3]
        with rasterio.open(other, "w", **profile) as ds:
            ds.write(image)
        moto.s3.upload_file(str(other), BUCKET, key)
        second = open_geotiff(url)
        assert second.version != first.version
        after, _ = second.read((1, 2, 3), window)
        assert blocks.CACHE.decoded > decoded  # another object: decoded, not taken from the cache
        np.testing.assert_array_equal(after, image[:3, :600, :700])
    finally:
        moto.stop()
