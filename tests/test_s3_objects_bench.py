"""benchmarks/s3_objects.py: the requests and objects of a run, counted from a real moto server."""

from __future__ import annotations

import pytest

from benchmarks.s3_objects import bucket_keys, extrapolate, request_counts, requests_in
from benchmarks.s3_read import BUCKET, s3_client, start_moto


def test_requests_and_objects_are_counted_from_the_server_log(tmp_path):
    log = tmp_path / "moto.log"
    server, endpoint = start_moto(log)
    try:
        s3 = s3_client(endpoint)
        s3.create_bucket(Bucket=BUCKET)
        offset = log.stat().st_size
        for key in (
            "run-1/.tiler-work/final.zarr/c/0/1",
            "run-1/.tiler-work/journal/003-labels.log.000001",
            "run-1/labels.zarr/zarr.json",
            "run-1/labels.zarr/zarr.json",
            "other/run.json",
        ):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=BUCKET, Key="run-1/.tiler-work/stage0.zarr/.zarray")
        s3.get_object(Bucket=BUCKET, Key="run-1/labels.zarr/zarr.json")
        counts = request_counts(requests_in(log, offset), "run-1/")
        keys = bucket_keys(s3, "run-1/")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert counts["requests"] == {"GET": 1, "HEAD": 1, "PUT": 5}
    assert counts["puts"] == 4  # under run-1/ only
    assert counts["puts_by_kind"] == {"chunk": 1, "journal": 1, "other": 2}
    assert counts["keys_written"] == 3
    assert counts["work_keys_written"] == 2
    assert counts["requests_by_purpose"] == {
        "PUTs": 5,
        "zarr v2 probes (.zarray/.zattrs, HEAD and LIST)": 1,
        "zarr.json HEADs and GETs": 1,
    }
    assert sorted(keys) == [
        "run-1/.tiler-work/final.zarr/c/0/1",
        "run-1/.tiler-work/journal/003-labels.log.000001",
        "run-1/labels.zarr/zarr.json",
    ]


def test_counts_grow_with_the_tiles_but_metadata_does_not():
    run = {
        "objects_left_by_kind": {"chunk": 16, "other": 9},
        "puts_by_kind": {"chunk": 48, "journal": 13, "other": 20},
        "keys_written_by_kind": {"chunk": 48, "journal": 13, "other": 11},
    }
    assert extrapolate(run, 16, 256) == {
        "tiles": 256,
        "objects_left": 256 + 9,
        "puts": (48 + 13) * 16 + 20,
        "keys_written": (48 + 13) * 16 + 11,
    }
