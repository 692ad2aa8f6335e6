"""The colour-ratio indices (tiler.steps.indices): formulas by hand, tiled runs = the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_tiled
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiler.config import FixedThreshold, Gaussian, Index, Otsu, Pipeline, parse_pipeline
from tiler.io.raster import ArraySource
from tiler.reference import run_reference

# (R, G, B) pixels, and each index on them computed by hand. Denominators of 0: every
# index's on the second (all bands 0), VARI's on the third (G + R = B), NGRDI's on the
# last (R = G = 0).
PIXELS = np.array([[10, 0, 50, 100, 0], [30, 0, 20, 50, 0], [10, 0, 70, 20, 9]], dtype=np.uint8)
BY_HAND = {
    "vari": [20 / 30, 0.0, 0.0, -50 / 130, 0.0],
    "gli": [40 / 80, 0.0, -80 / 160, -20 / 220, -9 / 9],
    "ngrdi": [20 / 40, 0.0, -30 / 70, -50 / 150, 0.0],
}
NAMES = sorted(BY_HAND)


@pytest.mark.parametrize("name", NAMES)
def test_index_formula_by_hand(name):
    index = parse_pipeline({"preprocess": [{"index": name}]}).index
    image = PIXELS[:, None, :]  # (3, 1, 5)
    tiled = index.values(image, (1, 2, 3))
    whole = index.reference(image.astype(np.float64), (1, 2, 3))
    np.testing.assert_array_equal(tiled, [BY_HAND[name]])
    np.testing.assert_array_equal(whole, [BY_HAND[name]])


@st.composite
def cases(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    chunks = (draw(st.integers(max(1, h // 8), h + 2)), draw(st.integers(max(1, w // 8), w + 2)))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # A few levels make zero denominators common; many make the values spread.
    levels = draw(st.sampled_from([3, 8, 256]))
    image = rng.integers(0, levels, size=(3, h, w)).astype(dtype)
    valid = rng.random((h, w)) > draw(st.sampled_from([0.0, 0.3]))
    valid.flat[0] = True
    filters = draw(st.sampled_from([(), (Gaussian(0.8),)]))
    threshold = draw(st.sampled_from([Otsu(), FixedThreshold(0.05), FixedThreshold(-0.2)]))
    name = draw(st.sampled_from(NAMES))
    pipeline = Pipeline((Index(name), *filters), threshold, bands=(1, 2, 3))
    return image, valid, chunks, pipeline


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.data())
def test_tiled_index_equals_the_whole_image_reference(case, data):
    image, valid, chunks, pipeline = case
    ref = run_reference(image, valid, pipeline)
    labels, seg, _ = run_tiled(ArraySource(image, valid), pipeline, chunks)
    assert seg.threshold == ref.threshold
    np.testing.assert_array_equal(labels, ref.labels)
    # Per pixel: any window's index is the whole image's there, bit for bit.
    h, w = valid.shape
    r0, c0 = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    r1, c1 = data.draw(st.integers(r0 + 1, h)), data.draw(st.integers(c0 + 1, w))
    index = pipeline.index
    whole = index.reference(image.astype(np.float64), pipeline.bands)
    window = index.values(image[:, r0:r1, c0:c1], pipeline.bands)
    np.testing.assert_array_equal(window, whole[r0:r1, c0:c1])
