"""tiler.yield_.stand_potential: the stand-based yield potential, checked by hand and against
the planted truth of a synthetic stand (tiler.synthetic's stand_truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tiler.errors import ConfigError
from tiler.stand import Settings, find_stand
from tiler.synthetic import SyntheticField
from tiler.yield_ import page
from tiler.yield_.stand_potential import ESTIMATES, LABEL, potential, section


def test_potential_by_hand():
    stand = pd.DataFrame({
        "plot": ["N", "S", "W"],
        "stand_status": ["ok", "ok", "no rows"],
        "row_spacing_m": [0.75, 0.5, np.nan],
        "plant_spacing_m": [0.2, 0.25, np.nan],
        "row_length_m": [1000.0, 400.0, np.nan],
        "stand_per_ha": [60000.0, 70000.0, np.nan],
        "doubles": [30, 0, 0],
        "density_per_ha": [59000.0, 69000.0, 50000.0],
    })  # fmt: skip
    gaps = pd.DataFrame({"plot": ["N", "N", "S"], "length_m": [0.6, 1.0, 0.5]})
    out = potential(stand, gaps, per_plant_kg=0.15, crowded_share=0.4)
    # N: rows cover 1000 m x 0.75 m = 0.075 ha; gaps miss 0.6/0.2-1 + 1.0/0.2-1 = 2 + 4 plants
    # S: 400 x 0.5 = 0.02 ha; 0.5/0.25 - 1 = 1 plant; W: no rows, objects per ha instead
    assert list(out["plot"]) == ["N", "S", "W"]
    np.testing.assert_allclose(out["rows_area_ha"], [0.075, 0.02, np.nan])
    np.testing.assert_allclose(out["missing_plants"], [6.0, 1.0, 0.0])
    np.testing.assert_allclose(out["potential_t_ha_estimate"], [9.0, 10.5, 7.5])
    np.testing.assert_allclose(out["gap_loss_t_ha_estimate"],
                               [6 / 0.075 * 0.15e-3, 1 / 0.02 * 0.15e-3, np.nan])  # fmt: skip
    np.testing.assert_allclose(out["spacing_loss_t_ha_estimate"],
                               [30 / 0.075 * 0.6 * 0.15e-3, 0.0, np.nan])  # fmt: skip
    np.testing.assert_allclose(out["target_per_ha"], [1e4 / 0.15, 1e4 / 0.125, np.nan])
    np.testing.assert_allclose(out["attainable_t_ha_estimate"],
                               [1e4 / 0.15 * 0.15e-3, 1e4 / 0.125 * 0.15e-3, np.nan])  # fmt: skip
    target = potential(stand, gaps, 0.15, target_per_ha=80000)
    np.testing.assert_allclose(target["attainable_t_ha_estimate"], 12.0)


def test_every_figure_is_labelled_an_estimate():
    stand = pd.DataFrame(
        {
            "field": ["a"],
            "row_spacing_m": [0.75],
            "plant_spacing_m": [0.2],
            "row_length_m": [100.0],
            "stand_per_ha": [6e4],
            "doubles": [2],
        }
    )
    out = potential(stand, None, 0.2)
    assert [c for c in out.columns if "t_ha" in c] == list(ESTIMATES)
    assert set(ESTIMATES) <= set(out.columns)
    assert out["basis"].iloc[0].startswith(LABEL) and "0.2 kg per plant" in out["basis"].iloc[0]
    assert np.isnan(out["gap_loss_t_ha_estimate"].iloc[0])  # no gaps table: no gap loss
    page = section(out)
    assert f"Yield potential: {LABEL}" in page and "12.00" in page  # 60 000 x 0.2 kg
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="per-plant yield must be a positive"):
            potential(stand, None, bad)
    with pytest.raises(ConfigError, match="crowded share must be between 0 and 1"):
        potential(stand, None, 0.2, crowded_share=1.5)


def test_gap_loss_matches_the_planted_truth():
    """A synthetic stand with skips and doubles, measured as ``tiler rows`` does
    (tiler.stand.find_stand: stand.csv's columns, gaps.parquet's lengths): the plants
    missing in gaps against the planted slots left empty (stand_truth)."""
    field = SyntheticField.at(0.025, (40.0, 60.0), seed=2, skip_rate=0.02, double_rate=0.05,
                              missing_fraction=0.03)  # fmt: skip
    found = find_stand(field.plant_xy(), Settings())
    assert found.status == "ok"
    stand = pd.DataFrame([{"field": "footprint", **found.summary}])
    gaps = pd.DataFrame({"field": "footprint", "length_m": found.gaps["length_m"]})
    out = potential(stand, gaps, per_plant_kg=0.15).iloc[0]
    truth = field.stand_truth()
    missing = 0  # empty slots between each row's first and last plant, as planted
    for row in truth.rows:
        own = (truth.slot_row == row.row) & ~truth.slot_second
        index, present = truth.slot_index[own], truth.slot_present[own]
        between = (index >= index[present].min()) & (index <= index[present].max())
        missing += int((~present[between]).sum())
    assert missing > 200
    np.testing.assert_allclose(out["missing_plants"], missing, rtol=0.02)
    length = sum(r.length_m for r in truth.rows)
    area_ha = length * truth.row_spacing_m / 1e4
    np.testing.assert_allclose(out["gap_loss_t_ha_estimate"], missing / area_ha * 0.15e-3,
                               rtol=0.03)  # fmt: skip
    plants = sum(r.plants for r in truth.rows)  # as planted, doubles' second plants included
    np.testing.assert_allclose(out["potential_t_ha_estimate"], plants / area_ha * 0.15e-3,
                               rtol=0.03)  # fmt: skip
    np.testing.assert_allclose(out["attainable_t_ha_estimate"],
                               1e4 / (truth.row_spacing_m * truth.plant_spacing_m) * 0.15e-3,
                               rtol=0.01)  # fmt: skip


def test_potential_page(tmp_path):
    stand = pd.DataFrame({"field": ["a", "b"], "row_spacing_m": [0.75, 0.5],
                          "plant_spacing_m": [0.2, 0.25], "row_length_m": [100.0, 80.0],
                          "stand_per_ha": [6e4, 7.5e4], "doubles": [2, 0]})  # fmt: skip
    gaps = pd.DataFrame({"field": ["a"], "length_m": [0.8]})
    out = potential(stand, gaps, 0.2)
    text = page.write(tmp_path / "potential.html", page.render_potential("x", out)).read_text()
    assert text.count(LABEL) >= 3  # heading, lead, section title
    # a: 3 plants missing over 0.0075 ha x 0.2 kg = 0.08 t/ha; b: 75 000 x 0.2 kg = 15 t/ha
    assert "<td>a</td><td>60\u00a0000</td><td>12.00</td><td>0.08</td>" in text
    assert "<td>b</td><td>75\u00a0000</td><td>15.00</td><td>0.00</td>" in text
