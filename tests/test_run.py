"""End to end through real files: GeoTIFF in, Zarr + GeoParquet + run.json out.

Real tiles from ``tests/data`` (with and without nodata, NIR tagged as alpha),
a synthetic RGBA field with an alpha footprint, several tilings and
schedulers, including a real LocalCluster of worker processes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import zarr

import tiler
from tiler.config import load_pipeline, parse_pipeline
from tiler.io.open_raster import open_geotiff
from tiler.reference import reference_objects, run_reference
from tiler.synthetic import SyntheticField, write_geotiff

NDVI = {
    "bands": [1, 2, 3, 4],
    "preprocess": [{"index": "ndvi", "red": 1, "nir": 4}, {"gaussian": {"sigma": 0.8}}],
    "threshold": "otsu",
    "refine": [
        {"opening": {"radius": 1}},
        {"fill_holes": {"max_area": 30}},
        {"remove_small_objects": {"min_area": 8}},
    ],
    "connectivity": 1,
}


def reference_for(path: Path, config=None):
    source = open_geotiff(path)
    pipeline = parse_pipeline(config) if isinstance(config, dict) else load_pipeline(config)
    pipeline = pipeline.resolve_bands(source.count, source.alpha_bands)
    image, valid = source.read_all(pipeline.bands)
    return source, valid, run_reference(image, valid, pipeline)


def assert_output_equals_reference(dst: Path, path: Path, config=None):
    source, valid, ref = reference_for(path, config)
    labels = tiler.open_labels(dst)
    np.testing.assert_array_equal(labels.values, ref.labels)
    assert not labels.values[~valid].any(), "nodata became an object"
    objects = tiler.read_objects(dst)
    expected = reference_objects(ref.labels, source.transform)
    assert len(objects) == len(expected["label"])
    for name, values in expected.items():
        column = objects[name].to_numpy()
        if np.issubdtype(values.dtype, np.integer):
            np.testing.assert_array_equal(column, values, err_msg=name)
        else:
            np.testing.assert_allclose(column, values, rtol=1e-9, atol=0, err_msg=name)
    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["complete"] is True
    assert manifest["threshold"]["value"] == ref.threshold
    assert manifest["object_count"] == len(objects) == int(ref.labels.max())
    return ref


@pytest.fixture
def nodata_tile(tmp_path, neon_tile) -> Path:
    """The NEON tile with a band of nodata (255 in every band) across it."""
    with rasterio.open(neon_tile) as ds:
        image, profile = ds.read(), ds.profile
    image[:, 150:190, :] = 255
    image[:, :, 300:330] = 255
    path = tmp_path / "neon_nodata.tif"
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(image)
    return path


@pytest.mark.parametrize("chunk_size", [400, 97, 64, 33])
def test_real_tile_equals_reference(tmp_path, neon_tile, chunk_size):
    result = tiler.run(neon_tile, tmp_path / "out", chunk_size=chunk_size, scheduler="sync")
    ref = assert_output_equals_reference(tmp_path / "out", neon_tile)
    assert result.n_objects == int(ref.labels.max()) > 5
    assert result.threshold == ref.threshold


def test_real_tile_with_nodata_equals_reference(tmp_path, nodata_tile):
    with rasterio.open(nodata_tile) as ds:
        assert (ds.dataset_mask() == 0).sum() > 20_000
    tiler.run(nodata_tile, tmp_path / "out", chunk_size=70, scheduler="threads")
    assert_output_equals_reference(tmp_path / "out", nodata_tile)


def test_nir_tagged_as_alpha_is_left_out_by_default(tmp_path, naip_tiles):
    bishop = next(p for p in naip_tiles if p.name.startswith("bishop"))
    assert open_geotiff(bishop).alpha_bands == (4,)
    tiler.run(bishop, tmp_path / "out", chunk_size=50, scheduler="sync")
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["config"]["bands"] == [1, 2, 3]
    assert_output_equals_reference(tmp_path / "out", bishop)


@pytest.mark.parametrize("name", ["chico", "claremont"])
def test_ndvi_pipeline_on_naip(tmp_path, naip_tiles, name):
    path = next(p for p in naip_tiles if p.name.startswith(name))
    tiler.run(path, tmp_path / "out", NDVI, chunk_size=45, scheduler="sync")
    ref = assert_output_equals_reference(tmp_path / "out", path, NDVI)
    assert ref.labels.max() > 3


@pytest.fixture(scope="module")
def field_tif(tmp_path_factory) -> Path:
    field = SyntheticField(height=600, width=520, seed=7)
    return write_geotiff(field, tmp_path_factory.mktemp("field") / "field.tif", blocksize=128)


def test_synthetic_rgba_field_equals_reference(tmp_path, field_tif):
    tiler.run(field_tif, tmp_path / "out", chunk_size=128, scheduler="threads")
    source, valid, _ = reference_for(field_tif)
    assert 0 < valid.mean() < 1
    assert_output_equals_reference(tmp_path / "out", field_tif)


def chunk_files(dst: Path) -> dict[str, bytes]:
    root = dst / "labels.zarr" / "labels"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_deterministic_across_schedulers_and_workers(tmp_path, field_tif):
    """Byte-identical chunks and tables on sync, threads, the default local cluster
    (worker threads) and a LocalCluster of 2 worker processes (values cached in files)."""
    from distributed import Client, LocalCluster

    runs = {}
    for scheduler in ("sync", "threads", "local"):
        dst = tmp_path / scheduler
        tiler.run(field_tif, dst, chunk_size=100, scheduler=scheduler, workers=2)
        runs[scheduler] = dst
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        runs["processes"] = tmp_path / "processes"
        tiler.run(field_tif, runs["processes"], chunk_size=100, client=client)
    reference = chunk_files(runs["sync"])
    table = tiler.read_objects(runs["sync"])
    for scheduler in ("threads", "local", "processes"):
        assert chunk_files(runs[scheduler]) == reference, scheduler
        assert tiler.read_objects(runs[scheduler]).equals(table), scheduler


def test_same_objects_for_any_chunk_size(tmp_path, field_tif):
    tables, arrays = [], []
    for chunk in (600, 111, 64):
        dst = tmp_path / f"c{chunk}"
        tiler.run(field_tif, dst, chunk_size=chunk, scheduler="sync")
        tables.append(tiler.read_objects(dst))
        arrays.append(tiler.open_labels(dst).values)
    for table, array in zip(tables[1:], arrays[1:], strict=True):
        assert table.equals(tables[0])
        np.testing.assert_array_equal(array, arrays[0])


def test_output_contract(tmp_path, neon_tile):
    dst = tmp_path / "out"
    result = tiler.run(neon_tile, dst, chunk_size=128, scheduler="sync")
    assert sorted(p.name for p in dst.iterdir()) == ["labels.zarr", "objects.parquet", "run.json"]
    assert (result.labels, result.objects, result.manifest) == (
        dst / "labels.zarr",
        dst / "objects.parquet",
        dst / "run.json",
    )

    group = zarr.open_group(dst / "labels.zarr", mode="r")
    assert group.metadata.zarr_format == 3
    array = group["labels"]
    assert array.dtype == np.uint32 and array.chunks == (128, 128) and array.shape == (400, 400)

    labels = tiler.open_labels(dst)
    with rasterio.open(neon_tile) as ds:
        assert labels.rio.crs == ds.crs
        assert labels.rio.transform().almost_equals(ds.transform)
        assert labels.dims == ("y", "x")
        x0, y0 = ds.xy(0, 0)
    assert labels.x.values[0] == pytest.approx(x0) and labels.y.values[0] == pytest.approx(y0)

    objects = tiler.read_objects(dst)
    assert list(objects.columns) == [
        "label",
        "area_px",
        "area_m2",
        "centroid_row",
        "centroid_col",
        "x",
        "y",
        "bbox_min_row",
        "bbox_min_col",
        "bbox_max_row",
        "bbox_max_col",
        "geometry",
    ]
    assert objects.crs == rasterio.open(neon_tile).crs
    np.testing.assert_array_equal(objects.geometry.x, objects["x"])
    np.testing.assert_array_equal(objects["label"], np.arange(1, len(objects) + 1))
    pixel_area = abs(0.100235 * 0.0997475)
    np.testing.assert_allclose(objects["area_m2"], objects["area_px"] * pixel_area, rtol=1e-4)
    meta = json.loads(pq.read_metadata(dst / "objects.parquet").metadata[b"geo"])
    assert meta["primary_column"] == "geometry"

    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["tiler_version"] == tiler.__version__
    assert manifest["input"]["path"] == str(neon_tile.resolve())
    assert manifest["input"]["size_bytes"] == neon_tile.stat().st_size
    assert len(manifest["input"]["fingerprint_sha256"]) == 64
    assert manifest["chunking"]["chunk_shape"] == [128, 128]
    assert manifest["chunking"]["tiles"] == 16
    assert manifest["threshold"]["method"] == "otsu"
    assert manifest["labels"]["dtype"] == "uint32"
    assert set(manifest["timings_seconds"]) >= {
        "preprocess",
        "histogram",
        "labels",
        "write",
        "total",
    }


def test_overwrite_replaces_a_previous_run(tmp_path, neon_tile):
    dst = tmp_path / "out"
    tiler.run(neon_tile, dst, chunk_size=200, scheduler="sync")
    first = chunk_files(dst)
    with pytest.raises(tiler.OutputError, match="--overwrite"):
        tiler.run(neon_tile, dst, chunk_size=100, scheduler="sync")
    assert chunk_files(dst) == first
    tiler.run(neon_tile, dst, chunk_size=100, scheduler="sync", overwrite=True)
    assert sorted(chunk_files(dst)) != sorted(first)


def test_reading_an_unfinished_run_is_refused(tmp_path, neon_tile):
    dst = tmp_path / "out"
    tiler.run(neon_tile, dst, chunk_size=200, scheduler="sync")
    manifest = json.loads((dst / "run.json").read_text())
    (dst / "run.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(tiler.OutputError, match="complete"):
        tiler.open_labels(dst)
    (dst / "run.json").unlink()
    with pytest.raises(tiler.OutputError, match="run.json"):
        tiler.read_objects(dst)
    shutil.rmtree(dst)


def test_local_cluster_listens_on_loopback_only():
    """Every socket the default local cluster listens on is bound to 127.0.0.1."""
    import psutil

    from tiler.cluster import executor_for

    before = {c.laddr for c in psutil.Process().net_connections("inet") if c.status == "LISTEN"}
    messages = []
    with executor_for("local", log=messages.append):
        listening = [
            c.laddr
            for c in psutil.Process().net_connections("inet")
            if c.status == "LISTEN" and c.laddr not in before
        ]
    assert listening, "the dashboard should listen"
    assert all(address.ip == "127.0.0.1" for address in listening), listening
    assert any("http://127.0.0.1:" in m for m in messages), messages


def test_numpy_huge_page_advice_is_restored_after_a_run(tmp_path, neon_tile, monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    toggle = np._core.multiarray._set_madvise_hugepage
    before = toggle(True)
    try:
        tiler.run(neon_tile, tmp_path / "out", chunk_size=200, scheduler="sync")
        assert toggle(True) is True  # what the run left behind: the value it found
    finally:
        toggle(before)


def test_local_worker_processes_are_sized_as_asked_and_on_loopback():
    """--workers 2 --threads-per-worker 1 --memory-limit 1GiB: two nannied processes on 127.0.0.1,
    and a dashboard that really serves its status page (bokeh is installed)."""
    from urllib.request import urlopen

    from tiler.cluster import executor_for

    messages = []
    with executor_for(
        "local", workers=2, threads_per_worker=1, memory_limit="1GiB", log=messages.append
    ) as executor:
        workers = executor.scheduler.scheduler_info()["workers"]
        assert len(workers) == 2
        assert all(a.startswith("tcp://127.0.0.1:") for a in workers), workers
        assert {w["nthreads"] for w in workers.values()} == {1}
        assert {w["memory_limit"] for w in workers.values()} == {2**30}
        (message,) = messages
        assert "2 worker process(es) x 1 thread(s)" in message
        link = message.split("dashboard ")[1]
        with urlopen(link, timeout=30) as page:
            assert page.status == 200
            assert b"Dask" in page.read()


def test_a_local_threshold_run_records_its_threshold(tmp_path, neon_tile):
    """run.json records a local threshold's parameters (writing it raised TypeError before)."""
    config = {
        "preprocess": [{"index": "exg"}],
        "threshold": {"local": {"block_size": 15, "method": "mean", "offset": -0.02}},
        "refine": [{"remove_small_objects": {"min_area": 20}}],
    }
    dst = tmp_path / "out"
    tiler.run(neon_tile, dst, config, chunk_size=(96, 160), scheduler="sync")
    assert_output_equals_reference(dst, neon_tile, config)
    record = json.loads((dst / "run.json").read_text())["threshold"]
    assert record == {
        "value": None,
        "method": "local",
        "block_size": 15,
        "local_method": "mean",
        "offset": -0.02,
    }


def test_warnings_point_at_the_line_that_called_run(tmp_path):
    """Python's default warnings name the caller's line, said before a run or after it."""
    import warnings

    from tiler.errors import OutputError, TilerWarning
    from tiler.io.raster import ArraySource

    image = np.zeros((3, 2100, 2100), np.uint8)
    big = ArraySource(image, np.ones(image.shape[1:], bool), name="big.tif")
    refused = tmp_path / "refused"
    refused.mkdir()
    (refused / "notes.txt").write_text("mine")  # refused after the checks that warn
    src = write_geotiff(SyntheticField(height=300, width=300, seed=3), tmp_path / "f.tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(OutputError):
            tiler.run(big, refused, {"refine": [{"opening": {"radius": 100}}]}, chunk_size=256)
        before = len(caught)
        tiler.run(src, tmp_path / "out", scheduler="sync", chunk_size=64)
    said = [w for w in caught if issubclass(w.category, TilerWarning)]
    assert before == 1 and len(said) == 2  # the halo's cost; objects that look merged
    assert "reaches 200 px" in str(said[0].message) and "median area" in str(said[1].message)
    assert {(w.filename, w.lineno > 0) for w in said} == {(__file__, True)}


def test_labels_store_opens_in_zarr_and_xarray_equal_to_the_reference(tmp_path, field_tif):
    """labels.zarr: zstd level 1 after ``bytes`` (no sharding), a chunk file for each tile with
    an object and none for an empty tile; zarr-python and xarray (consolidated metadata, as
    napari and rioxarray open it) read the reference's labels."""
    import xarray as xr

    dst = tmp_path / "out"
    tiler.run(field_tif, dst, chunk_size=128, scheduler="threads")
    _, _, ref = reference_for(field_tif)
    meta = json.loads((dst / "labels.zarr" / "labels" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd"]
    assert meta["codecs"][1]["configuration"]["level"] == 1
    tiles = {
        f"c/{i}/{j}"
        for i in range(5)
        for j in range(5)
        if ref.labels[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128].any()
    }
    assert 0 < len(tiles) < 25, "the field has empty tiles and tiles with objects"
    assert set(chunk_files(dst)) - {"zarr.json"} == tiles
    array = zarr.open_array(dst / "labels.zarr" / "labels", mode="r")
    np.testing.assert_array_equal(array[:], ref.labels)
    dataset = xr.open_zarr(dst / "labels.zarr", consolidated=True, mask_and_scale=False)
    assert dataset["labels"].dtype == np.uint32
    np.testing.assert_array_equal(dataset["labels"].values, ref.labels)
