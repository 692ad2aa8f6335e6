"""Yield potential from the stand, without measured yield: an estimate from assumptions.

Nothing here is measured yield. Per field, from the stand ``tiler rows`` found
(``stand.csv``'s columns, :func:`tiler.stand.field_columns`; ``gaps.parquet``)
and a per-plant yield the user gives (kg):

* ``potential_t_ha_estimate`` = plants per ha x per-plant kg / 1000, plants per ha
  from ``stand_per_ha`` (else ``density_per_ha``, the objects per imaged ha, for
  fields without rows);
* ``gap_loss_t_ha_estimate``: the plants missing in gaps, ``Σ (gap length /
  plant spacing - 1)`` over the field's gaps (a gap of one missing plant is two
  spacings long), per ha of the rows' ground (row length x row spacing), x per-plant;
* ``spacing_loss_t_ha_estimate``: uneven spacing: each plant in a multiple (a
  ``doubles`` spacing, at most half the nominal one) is *assumed* to yield only
  ``crowded_share`` of a plant (default 0.5: crowding halves it), so each costs
  ``(1 - crowded_share)`` plants, per ha as above;
* ``attainable_t_ha_estimate``: the target stand (``target_per_ha``, else one plant
  per nominal slot, ``10 000 / (row spacing x plant spacing)``) x per-plant.

The per-plant yield and the crowding share are assumptions; every such column's
name ends in ``_estimate`` and :data:`LABEL` goes with them wherever they are shown.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from tiler.errors import ConfigError, InputError
from tiler.report.html import _number

LABEL = "estimate from assumptions, not a measurement"
ESTIMATES = ("potential_t_ha_estimate", "gap_loss_t_ha_estimate",
             "spacing_loss_t_ha_estimate", "attainable_t_ha_estimate")  # fmt: skip


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64) if name in frame else np.full(len(frame), np.nan)


def missing_in_gaps(gaps: pd.DataFrame, id_name: str, spacing: pd.Series) -> pd.Series:
    """Per field id, the plants missing in its gaps: ``Σ (length_m / spacing - 1)``."""
    if gaps is None or len(gaps) == 0:
        return pd.Series(0.0, index=spacing.index)
    if id_name not in gaps or "length_m" not in gaps:
        raise InputError(f"gaps table: needs the columns {id_name!r} and 'length_m'")
    x_ref = gaps[id_name].map(spacing).to_numpy(dtype=np.float64)
    missing = gaps["length_m"].to_numpy(dtype=np.float64) / x_ref - 1.0
    per_field = pd.Series(missing).groupby(gaps[id_name].to_numpy()).sum()
    return per_field.reindex(spacing.index, fill_value=0.0)


def potential(
    stand_fields: pd.DataFrame,
    gaps: pd.DataFrame | None,
    per_plant_kg: float,
    crowded_share: float = 0.5,
    *,
    target_per_ha: float | None = None,
    id_name: str | None = None,
) -> pd.DataFrame:
    """The stand-based yield potential per field (module docstring), t/ha.

    Parameters
    ----------
    stand_fields : pandas.DataFrame
        ``stand.csv``: the id column first (or ``id_name``), ``stand_per_ha``,
        ``row_spacing_m``, ``plant_spacing_m``, ``row_length_m``, ``doubles``.
    gaps : pandas.DataFrame or None
        ``gaps.parquet``: the id column and ``length_m`` (m) per gap.
    per_plant_kg : float
        The assumed yield of one plant, kg.
    crowded_share : float
        The assumed share of a plant's yield a plant in a multiple gives, in [0, 1].
    target_per_ha : float, optional
        The target stand, plants/ha (default: one plant per nominal slot).

    Returns
    -------
    pandas.DataFrame
        The id, ``stand_per_ha``, ``target_per_ha``, ``rows_area_ha``,
        ``missing_plants``, ``crowded_plants``, :data:`ESTIMATES` and ``basis``
        (:data:`LABEL` with the assumptions).
    """
    if not (np.isfinite(per_plant_kg) and per_plant_kg > 0):
        raise ConfigError(
            f"the per-plant yield must be a positive number of kg, got {per_plant_kg}"
        )
    if not 0.0 <= crowded_share <= 1.0:
        raise ConfigError(f"the crowded share must be between 0 and 1, got {crowded_share}")
    if target_per_ha is not None and not target_per_ha > 0:
        raise ConfigError(f"the target stand must be positive plants/ha, got {target_per_ha}")
    id_name = id_name or str(stand_fields.columns[0])
    ids = stand_fields[id_name]
    stand = _column(stand_fields, "stand_per_ha")
    stand = np.where(np.isfinite(stand), stand, _column(stand_fields, "density_per_ha"))
    row_spacing = _column(stand_fields, "row_spacing_m")
    plant_spacing = _column(stand_fields, "plant_spacing_m")
    area_ha = _column(stand_fields, "row_length_m") * row_spacing / 1e4
    spacing = pd.Series(plant_spacing, index=ids.to_numpy())
    missing = missing_in_gaps(gaps, id_name, spacing).to_numpy() if gaps is not None else np.nan
    crowded = _column(stand_fields, "doubles")
    t_per_plant = per_plant_kg / 1000.0
    target = (np.full(len(ids), float(target_per_ha)) if target_per_ha is not None
              else 1e4 / (row_spacing * plant_spacing))  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        per_ha = np.where(area_ha > 0, 1.0 / area_ha, np.nan)
        out = pd.DataFrame({
            id_name: ids.to_numpy(),
            "stand_per_ha": stand,
            "target_per_ha": target,
            "rows_area_ha": area_ha,
            "missing_plants": missing,
            "crowded_plants": crowded,
            "potential_t_ha_estimate": stand * t_per_plant,
            "gap_loss_t_ha_estimate": missing * per_ha * t_per_plant,
            "spacing_loss_t_ha_estimate": crowded * per_ha * (1.0 - crowded_share) * t_per_plant,
            "attainable_t_ha_estimate": target * t_per_plant,
        })  # fmt: skip
    out["basis"] = f"{LABEL} ({per_plant_kg:g} kg per plant, crowded plants at {crowded_share:g})"
    out.attrs = {"label": LABEL, "per_plant_kg": per_plant_kg, "crowded_share": crowded_share}
    return out


DIGITS = {"stand_per_ha": 0, "target_per_ha": 0, "rows_area_ha": 4, "missing_plants": 1,
          "crowded_plants": 1, **dict.fromkeys(ESTIMATES, 3)}  # fmt: skip


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """``potential.csv``'s figures: plants/ha whole, areas to 1 m², t/ha to 1 kg/ha."""
    return table.round({name: d for name, d in DIGITS.items() if name in table})


def section(table: pd.DataFrame) -> str:
    """The page's section of the potential, every figure labelled an estimate."""
    id_name = str(table.columns[0])
    titles = {"stand_per_ha": "stand (plants/ha)", "potential_t_ha_estimate": "potential (t/ha)",
              "gap_loss_t_ha_estimate": "lost to gaps (t/ha)",
              "spacing_loss_t_ha_estimate": "lost to uneven spacing (t/ha)",
              "attainable_t_ha_estimate": "attainable at target stand (t/ha)"}  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in (id_name, *titles.values()))
    rows = []
    for _, row in table.iterrows():
        values = [html.escape(str(row[id_name]))] + [
            _number(float(row[c]), 0 if c == "stand_per_ha" else 2) for c in titles
        ]
        rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    basis = html.escape(str(table["basis"].iloc[0])) if len(table) else LABEL
    return (f"<section id='potential'><h2>Yield potential: {LABEL}</h2><p class='lead'>"
            f"{basis}. Plants per hectare from the stand along the rows; losses: plants missing "
            "in gaps, and plants in multiples assumed to yield a share of a plant.</p>"
            f"<div class='wide'><table id='potential-table'><tr>{head}</tr>{''.join(rows)}"
            "</table></div></section>")  # fmt: skip
