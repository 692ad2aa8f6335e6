"""Which bands an index may read from a file: counts, roles and alpha bands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiler.errors import ConfigError

if TYPE_CHECKING:
    from tiler.steps.indices import Index

ROLE_NAMES = {"red": "red", "nir": "near-infrared"}


def check_bands(
    index: Index,
    bands: tuple[int, ...],
    count: int,
    alpha: tuple[int, ...],
    alpha_is_mask: bool,
    source: str,
) -> None:
    """Refuse selected ``bands`` (of ``count`` in the file ``source``) that ``index`` cannot read.

    It needs enough selected bands, ``band: k`` in range, its role bands
    (NDVI's ``red``/``nir``) selected, and no alpha band in a spectral role
    while the alpha band is the validity mask (see :func:`check_alpha_roles`).
    """
    need = index.bands_needed
    if len(bands) < need:
        raise ConfigError(
            f"{source}: preprocess[0].index: {index.name} needs {need} selected bands, "
            f"but bands: {list(bands)} gives {len(bands)} ({count} band(s) in the file)"
        )
    if index.band is not None and not 1 <= index.band <= len(bands):
        raise ConfigError(
            f"{source}: preprocess[0].band: {index.band} is out of range; "
            f"{len(bands)} band(s) are selected (1..{len(bands)})"
        )
    check_alpha_roles(index, bands, count, alpha, alpha_is_mask, source)
    for role in index.formula.roles:
        number = getattr(index, role)
        if number not in bands:
            raise ConfigError(
                f"{source}: preprocess[0].{role}: band {number} is not among the "
                f"selected bands {list(bands)} ({count} band(s) in the file); "
                "list it in 'bands:'"
            )


def check_alpha_roles(
    index: Index,
    bands: tuple[int, ...],
    count: int,
    alpha: tuple[int, ...],
    alpha_is_mask: bool,
    source: str,
) -> None:
    """Refuse a band the index would read as a colour that is absent or the alpha band.

    An alpha band is transparency: read as near-infrared or blue it gives a
    number, but a meaningless one, and as the validity mask it also drops
    every pixel where it is 0. So it is never proposed for a role, and is
    refused in one while it is the mask. A spectral band tagged alpha by
    mistake (NIR in some 4-band files) runs once ``--mask nodata`` or
    ``none`` says the tag is not a mask and ``bands:`` lists it.
    """
    others = ", ".join(str(b) for b in range(1, count + 1) if b not in alpha) or "none"
    fix = (
        "list it in 'bands:'"
        if not alpha_is_mask
        else ("run with --mask nodata (or --mask none) and list it in 'bands:'")
    )
    if index.formula.roles:
        for role in index.formula.roles:
            number, name = getattr(index, role), ROLE_NAMES[role]
            where = f"{source}: preprocess[0].{role}: band {number}"
            if number > count:
                raise ConfigError(
                    f"{where} does not exist: the file has {count} band(s) (1..{count}); "
                    f"set {role}: to its {name} band (NDVI needs red and near-infrared; "
                    "an RGB image has no near-infrared: use index: exg)"
                )
            if number in alpha and (alpha_is_mask or number not in bands):
                raise ConfigError(
                    f"{where} is the file's alpha band (transparency), not {name}; set {role}: "
                    f"to its {name} band (bands that are not alpha: {others}); if band {number} "
                    f"is {name} tagged alpha by mistake, {fix}"
                )
        return
    if not alpha_is_mask:
        return
    used = (bands[index.band - 1],) if index.band is not None else bands[: index.bands_needed]
    for position, number in enumerate(used):
        if number in alpha:
            what = f"band: {index.band}" if index.band is not None else f"index: {index.name}"
            colour = "its values" if index.band is not None else ("red", "green", "blue")[position]
            raise ConfigError(
                f"{source}: bands: band {number} is the file's alpha band (transparency), which "
                f"preprocess[0].{what} would read as {colour}; leave it out "
                f"of 'bands:' (bands that are not alpha: {others}); if it is a spectral band "
                "tagged alpha by mistake, run with --mask nodata (or --mask none)"
            )
