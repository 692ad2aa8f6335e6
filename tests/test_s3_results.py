"""Reading a finished run in a bucket: the API, the exports, the report, as from a local run.

One synthetic GeoTIFF is run twice, to a local folder and to ``s3://BUCKET/run/``
on a real S3 API server (moto in server mode, credentials enforced). Whatever
reads the bucket run (``tiler.open_labels``, ``tiler.read_objects``, ``tiler
export``, ``tiler report``) gives what it gives for the local run; a run
without ``run.json`` and wrong credentials are refused in one line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

moto_server = pytest.importorskip("moto.server")  # the test extra: moto[server]
from s3_server import MotoServer, point_at, tiler  # noqa: E402

from tiler import api  # noqa: E402
from tiler.errors import OutputError  # noqa: E402
from tiler.synthetic import SyntheticField, write_geotiff  # noqa: E402

BUCKET = "tiler-results"
RUN = f"s3://{BUCKET}/run"
PARTIAL = f"s3://{BUCKET}/unfinished"  # a copy of the run without its run.json


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    moto = MotoServer(tmp_path_factory.mktemp("moto-results"))
    moto.s3.create_bucket(Bucket=BUCKET)
    yield moto
    moto.stop()


@pytest.fixture(scope="session")
def local_run(tmp_path_factory, server) -> Path:
    """The run to disk; the same input run to ``RUN`` (and copied, less run.json, to PARTIAL)."""
    tmp = tmp_path_factory.mktemp("results")
    image = write_geotiff(SyntheticField(height=600, width=700), tmp / "field.tif")
    dst = tmp / "local"
    api.run(image, dst, chunk_size=256, scheduler="threads", warn=lambda m: None)
    with pytest.MonkeyPatch.context() as monkeypatch:
        point_at(server, monkeypatch)
        api.run(image, RUN + "/", chunk_size=256, scheduler="threads", warn=lambda m: None)
    for key in _keys(server, "run/"):
        if key != "run/run.json":
            copied = "unfinished/" + key.removeprefix("run/")
            server.s3.copy_object(Bucket=BUCKET, Key=copied, CopySource=f"{BUCKET}/{key}")
    server.s3.upload_file(str(image), BUCKET, "field.tif")
    return dst


@pytest.fixture
def s3_env(server, local_run, monkeypatch):
    """This process pointed at the server (which holds the runs)."""
    point_at(server, monkeypatch)
    return server


def _keys(server: MotoServer, prefix: str) -> list[str]:
    pages = server.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _object(server: MotoServer, key: str) -> bytes:
    return server.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _one_line_error(done, server: MotoServer, *starts: str) -> str:
    """The one line ``tiler`` failed with (no traceback, no secret)."""
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), done.stderr
    for secret in (server.secret, server.key_id):
        assert secret not in done.stdout + done.stderr
    return lines[0]


def test_open_labels_from_the_bucket_is_the_local_run(s3_env, local_run):
    labels, want = api.open_labels(RUN), api.open_labels(local_run)
    assert labels.shape == want.shape == (600, 700) and int(want.max()) > 20
    np.testing.assert_array_equal(labels.values, want.values)
    assert labels.dtype == want.dtype
    assert labels.rio.crs == want.rio.crs and labels.rio.crs is not None
    assert labels.rio.transform() == want.rio.transform()


def test_read_objects_from_the_bucket_is_the_local_table(s3_env, local_run):
    objects, want = api.read_objects(RUN + "/"), api.read_objects(local_run)
    assert len(want) > 20
    assert isinstance(objects, gpd.GeoDataFrame) and objects.crs == want.crs
    pd.testing.assert_frame_equal(pd.DataFrame(objects), pd.DataFrame(want))


def test_exports_from_the_bucket_are_the_local_exports(s3_env, local_run, tmp_path):
    outputs = {}
    for name, dst in (("url", RUN), ("local", local_run)):
        (tmp_path / name).mkdir()
        names = ("labels.tif", "mask.tif", "objects.parquet", "objects.csv")
        files = [tmp_path / name / file for file in names]
        done = tiler("export", dst, "--cog", files[0], "--polygons", files[2],
                     "--csv", files[3], env=s3_env.env())  # fmt: skip
        assert done.returncode == 0, done.stderr
        done = tiler("export", dst, "--cog", files[1], "--mask", env=s3_env.env())
        assert done.returncode == 0, done.stderr
        outputs[name] = [f.read_bytes() for f in files]
    assert all(len(data) > 1000 for data in outputs["local"])
    assert outputs["url"] == outputs["local"]  # COGs, mask, polygons, table: byte for byte


def test_report_in_the_bucket_is_the_local_report(s3_env, local_run, tmp_path):
    done = tiler("report", RUN, "-q", env=s3_env.env())
    assert done.returncode == 0, done.stderr
    assert f"report:    {RUN}/report/report.html" in done.stdout
    local = tiler("report", local_run, "--out", tmp_path / "local", "-q", env=s3_env.env())
    assert local.returncode == 0, local.stderr
    away = tiler("report", RUN, "--out", tmp_path / "away", "-q", env=s3_env.env())
    assert away.returncode == 0, away.stderr
    assert done.stdout.splitlines()[0] == local.stdout.splitlines()[0]  # the field's figures
    for name in ("fields.csv", "objects.csv"):
        want = (tmp_path / "local" / name).read_bytes()
        assert _object(s3_env, f"run/report/{name}") == want
        assert (tmp_path / "away" / name).read_bytes() == want
    for name in ("fields.parquet", "objects.parquet"):
        in_bucket = gpd.read_parquet(io.BytesIO(_object(s3_env, f"run/report/{name}")))
        pd.testing.assert_frame_equal(in_bucket, gpd.read_parquet(tmp_path / "local" / name))
    page = _object(s3_env, "run/report/report.html").decode()
    assert "<img" in page and RUN in page
    keys = _keys(s3_env, "run/report/")
    assert "run/report/pyramid.zarr/zarr.json" in keys
    assert not [k for k in keys if ".partial" in k]  # written in place, nothing left over
    again = tiler("report", RUN, "-q", env=s3_env.env())
    assert _one_line_error(again, s3_env, "tiler: error: ").endswith(
        "holds a tiler report; pass --overwrite to replace it"
    )
    assert tiler("report", RUN, "--overwrite", "-q", env=s3_env.env()).returncode == 0
    assert set(_keys(s3_env, "run/report/")) == set(keys)


def test_an_unfinished_run_in_the_bucket_is_refused(s3_env, tmp_path):
    with pytest.raises(OutputError, match=r"no run\.json; not a finished tiler run$"):
        api.open_labels(PARTIAL)
    with pytest.raises(OutputError, match=r"no run\.json; not a finished tiler run$"):
        api.read_objects(PARTIAL)
    said = f"tiler: error: {PARTIAL}: no run.json; not a finished tiler run"
    report = tiler("report", PARTIAL, "-q", env=s3_env.env())
    assert _one_line_error(report, s3_env, said) == said
    export = tiler("export", PARTIAL, "--cog", tmp_path / "labels.tif", env=s3_env.env())
    assert _one_line_error(export, s3_env, said) == said
    assert not (tmp_path / "labels.tif").exists()
    assert not [k for k in _keys(s3_env, "unfinished/") if "report" in k]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "access denied"),
        ({"AWS_ACCESS_KEY_ID": "AKIAUNKNOWNKEY000000"}, "access denied"),
    ],
)
def test_wrong_credentials_are_one_line(server, local_run, tmp_path, change, said):
    env = server.env(**change)
    for command in (("report", RUN), ("export", RUN, "--cog", tmp_path / "l.tif")):
        line = _one_line_error(tiler(*command, env=env), server, f"tiler: error: {RUN}")
        assert said in line and env["AWS_SECRET_ACCESS_KEY"] not in line


def test_a_reader_without_write_access_reports_elsewhere(server, local_run, tmp_path):
    # moto's names for HEAD and a listing (AWS: s3:GetObject and s3:ListBucket)
    allowed = ["s3:GetObject", "s3:HeadObject", "s3:ListBucket", "s3:ListObjectsV2"]
    key_id, secret = server.user("reader", allowed)
    env = server.env(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    away = tiler("report", RUN, "--out", tmp_path / "report", "-q", env=env)
    assert away.returncode == 0, away.stderr
    assert (tmp_path / "report" / "report.html").is_file()
    here = tiler("report", RUN, "--out", f"{RUN}/reader", "-q", env=env)
    line = _one_line_error(here, server, f"tiler: error: {RUN}/reader")
    assert "access denied" in line and secret not in line
    assert not _keys(server, "run/reader")


def test_validate_reads_a_url(server, local_run):
    env = server.env()
    done = tiler("validate", f"s3://{BUCKET}/field.tif", "-q", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"s3://{BUCKET}/field.tif: 600 x 700 px")
    assert "0 of " not in done.stdout and "bad block" not in done.stdout
    missing = tiler("validate", f"s3://{BUCKET}/none.tif", env=env)
    assert "no such object" in _one_line_error(missing, server, f"tiler: error: s3://{BUCKET}/")


def test_the_stand_is_refused_in_one_line_for_a_run_in_the_bucket(s3_env):
    for command in (("report", RUN, "--rows"), ("rows", RUN)):
        line = _one_line_error(tiler(*command, env=s3_env.env()), s3_env, f"tiler: error: {RUN}: ")
        assert "not in object storage: copy the run to a folder" in line


def test_an_export_to_a_url_is_refused_by_name(local_run):
    done = tiler("export", local_run, "--cog", "s3://bucket/labels.tif", env=dict(os.environ))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "tiler: error: s3://bucket/labels.tif: exports are written to local files; write it "
        "here and copy it (aws s3 cp, gcloud storage cp, azcopy)"
    ]
