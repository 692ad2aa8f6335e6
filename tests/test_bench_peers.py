"""The benchmark's whole-image peer computes the specification's values, and the harness keeps
each pipeline's fastest whole-process run."""

from __future__ import annotations

import numpy as np
import rasterio
import zarr

import tiler
from benchmarks import bench, peer_reference
from benchmarks.run_one import PIPELINE
from tiler.reference import run_reference
from tiler.synthetic import SyntheticField, write_geotiff


def test_reference_peer_is_the_specification_bit_for_bit(tmp_path, geotiff):
    """Threshold, labels and areas equal ``tiler.reference.run_reference``'s exactly.

    A synthetic field (alpha 0 outside its footprint) and a noisy RGBA image
    with black pixels inside the valid area (s == 0 in ExG) and rows that are
    not a multiple of the peer's ExG bands.
    """
    rng = np.random.default_rng(5)
    noisy = rng.integers(0, 256, (4, 301, 203), dtype=np.uint8)
    noisy[:3, 40:60, 30:90] = 0  # black but valid
    noisy[3] = np.where(rng.random((301, 203)) < 0.1, 0, 255)
    sources = [
        write_geotiff(SyntheticField(height=300, width=400, seed=3), tmp_path / "field.tif"),
        geotiff(noisy, alpha=True),
    ]
    pipeline = tiler.parse_pipeline(PIPELINE).resolve_bands(4, (4,))
    for i, src in enumerate(sources):
        with rasterio.open(src) as dataset:
            ref = run_reference(dataset.read([1, 2, 3]), dataset.dataset_mask() > 0, pipeline)
        dst = tmp_path / f"out{i}"
        dst.mkdir()
        got = peer_reference.run(src, dst, chunk=128)
        labels = zarr.open_array(got["labels"], mode="r")[...]
        assert got["threshold"] == ref.threshold
        assert labels.dtype == np.uint32
        np.testing.assert_array_equal(labels, ref.labels)
        assert got["n_objects"] == ref.labels.max() > 10
        np.testing.assert_array_equal(np.load(got["areas"]), np.bincount(ref.labels.ravel())[1:])


def test_exg_by_bands_of_rows_equals_the_whole_image_expression():
    """Every band height gives the bits of section 3's expression on the whole image."""
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (3, 37, 23), dtype=np.uint8)
    image[:, 5:9, 2:7] = 0
    whole = (
        tiler.parse_pipeline(PIPELINE)
        .resolve_bands(3, ())
        .index.reference(image.astype(np.float64), (1, 2, 3))
    )
    for rows in (1, 5, 36, 37, 256):
        assert np.array_equal(peer_reference.excess_green(image, rows=rows), whole)


def test_best_of_keeps_the_fastest_whole_process_and_lists_every_run():
    def run(wall, seconds, ok=True):
        return {"ok": ok, "wall_seconds": wall, "seconds": seconds, "other_cpu_seconds": 0.0,
                "peak_rss": int(wall * 100)}  # fmt: skip

    best = bench.best_of([run(5.0, 3.0), run(4.0, 3.5), run(4.5, 2.0)])
    assert (best["wall_seconds"], best["seconds"]) == (4.0, 3.5)
    assert best["runs_wall_seconds"] == [5.0, 4.0, 4.5]
    failed = bench.best_of([run(4.0, 3.0), {**run(1.0, 0.0), "ok": False}])
    assert failed["ok"] is False
