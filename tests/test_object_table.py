"""The object table, stitched and written one row group at a time, is the whole-image one.

The driver never holds every object's columns (:mod:`tiler.io.objects_table`):
the table goes out in row groups of ``ROW_GROUP`` kept objects. Here the
row groups are made tiny (1 to 5 rows) so that random images give many, with
objects dropped by ``remove_small_objects`` between them, and tiles down to
one pixel; the file must hold the whole-image reference's objects
(``regionprops``), in row groups of that size, and be byte for byte what
``pyarrow.parquet.write_table`` writes for the whole table at once.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
from conftest import run_tiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from tiler.api.record import write_objects
from tiler.config import parse_pipeline
from tiler.io import objects_table
from tiler.io.raster import ArraySource
from tiler.reference import reference_objects, run_reference

UTM = (0.05, 0.0, 500000.0, 0.0, -0.05, 4100000.0)
DEGREES = (1e-4, 0.0, -120.5, 0.0, -1e-4, 36.2)  # area_m2 varies with the latitude here


@st.composite
def cases(draw):
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    density = draw(st.sampled_from([0.2, 0.4, 0.6]))
    mask = np.random.default_rng(seed).random((height, width)) < density
    chunks = (draw(st.integers(1, height)), draw(st.integers(1, width)))
    refine = [{"remove_small_objects": {"min_area": draw(st.integers(1, 4))}}]
    if draw(st.booleans()):
        refine.insert(0, {"fill_holes": {"max_area": draw(st.integers(1, 6))}})
    config = {
        "preprocess": [{"band": 1}],
        "threshold": 100,
        "refine": refine,
        "connectivity": draw(st.sampled_from([1, 2])),
    }
    crs, transform = draw(st.sampled_from([("EPSG:32611", UTM), ("EPSG:4326", DEGREES)]))
    group = draw(st.integers(1, 5))
    return mask, chunks, parse_pipeline(config).resolve_bands(1, ()), crs, transform, group


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_streamed_table_is_the_whole_image_table(case):
    mask, chunks, pipeline, crs, transform, group = case
    image = (mask * np.uint8(200))[None]
    valid = np.ones(mask.shape, bool)
    crs_wkt = CRS.from_user_input(crs).to_wkt()
    source = ArraySource(image, valid, transform=transform, crs_wkt=crs_wkt)
    _, seg, _ = run_tiled(source, pipeline, chunks)
    reference = reference_objects(run_reference(image, valid, pipeline).labels, transform, crs_wkt)

    saved = objects_table.ROW_GROUP
    objects_table.ROW_GROUP = group
    try:
        with tempfile.TemporaryDirectory() as folder:
            job = SimpleNamespace(source=source, dst=Path(folder))
            path, areas = write_objects(job, seg)
            written = path.read_bytes()
    finally:
        objects_table.ROW_GROUP = saved

    parquet = pq.ParquetFile(io.BytesIO(written))
    table = parquet.read()
    n = len(reference["label"])
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
    assert sizes == ([min(group, n - a) for a in range(0, n, group)] or [0])
    assert table.num_rows == n == seg.n_objects
    np.testing.assert_array_equal(areas, reference["area_px"])
    for name, values in reference.items():
        column = table[name].to_numpy()
        if np.issubdtype(values.dtype, np.integer):
            assert column.dtype == np.int64, name
            np.testing.assert_array_equal(column, values, err_msg=name)
        else:
            np.testing.assert_allclose(column, values, rtol=1e-9, atol=0, err_msg=name)
    whole = io.BytesIO()
    pq.write_table(table, whole, row_group_size=max(group, 1))
    assert whole.getvalue() == written
