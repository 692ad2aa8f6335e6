"""One `tiler train`: files -> train/val split -> fit -> model file and model card."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tiler.errors import ConfigError, InputError
from tiler.train import data
from tiler.train.export import card, export_onnx, metadata, set_metadata
from tiler.train.loop import Fitted, Recipe, fit
from tiler.train.net import n_params, receptive_field, shift_period


@dataclass(frozen=True)
class Files:
    """Where the data is and which of it trains and validates."""

    images: Sequence[Path]
    truth: Sequence[Path]
    truth_pixels: bool = False
    missing_truth: str = "error"
    bands: Sequence[int] | None = None
    band_names: Sequence[str] | None = None  # what the files leave unnamed (NIR is often)
    train_list: Path | None = None
    val_list: Path | None = None
    val_fraction: float = 0.1


def choose(files: Files, seed: int) -> tuple[list[tuple], list[tuple]]:
    """The (stem, image, truth) pairs of training and of validation."""
    images = data.expand(files.images, data.IMAGE_SUFFIXES, "image or folder")
    truth = data.expand(files.truth, data.TRUTH_SUFFIXES, "truth file or folder")
    if not images:
        raise InputError(f"{files.images[0]}: no GeoTIFFs (.tif, .tiff) there")
    listed = data.read_list(files.train_list) if files.train_list else sorted(images)
    if files.val_list:
        val = data.read_list(files.val_list)
        train = [s for s in listed if s not in set(val)]
    else:
        train, val = data.split(listed, files.val_fraction, seed)
    if not val:
        raise InputError(f"{files.val_list}: no validation images listed")
    pair = data.pair
    return (
        pair(images, truth, train, files.missing_truth),
        pair(images, truth, val, files.missing_truth),
    )


def train_model(
    out: Path,
    files: Files,
    recipe: Recipe,
    *,
    name: str,
    description: str = "",
    licence: str = "",
    command: str = "",
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and write ``out`` (.onnx) and its card ``out`` with .md; return the summary."""
    train_pairs, val_pairs = choose(files, recipe.seed)
    load = dict(kind=recipe.kind, bands=files.bands, pixels=files.truth_pixels)
    everything = data.load([*train_pairs, *val_pairs], **load)  # type: ignore[arg-type]
    if files.band_names is not None:
        if len(files.band_names) != len(everything.bands):
            raise ConfigError(
                f"--band-names: {len(files.band_names)} name(s) for "
                f"{len(everything.bands)} band(s) ({', '.join(everything.bands)})"
            )
        everything = replace(everything, bands=list(files.band_names))
    train_set = data.Dataset(
        everything.samples[: len(train_pairs)],
        everything.bands,
        everything.pixel_size_m,
        everything.scale,
    )
    val = everything.samples[len(train_pairs) :]
    n_bands = train_set.samples[0].image.shape[0]
    recipe = _with_bands(recipe, n_bands)
    log(
        f"training on {len(train_pairs)} images, validating on {len(val)}; "
        f"{n_bands} bands at {everything.pixel_size_m:.4g} m"
    )
    fitted = fit(train_set, val, recipe, quiet=quiet)
    out.parent.mkdir(parents=True, exist_ok=True)
    diff = export_onnx(fitted.net, out)
    info = _card_info(files, recipe, everything, train_pairs, fitted, name, description)
    info.update(licence=licence, command=command, onnx_max_diff=diff)
    text = card(info)
    props = metadata(
        bands=everything.bands,
        scale=everything.scale,
        mean=fitted.mean,
        std=fitted.std,
        pixel_size_m=everything.pixel_size_m,
        receptive_field_px=receptive_field(recipe.net),
        shift_period_px=shift_period(recipe.net),
        output=recipe.kind,
        threshold=fitted.choice.threshold,
        min_distance_m=recipe.min_distance_m,
        name=name,
        description=description,
        card=text,
    )
    set_metadata(out, props)
    from tiler.io.atomic import write_text

    write_text(out.with_suffix(".md"), text)
    return {**info, "model": str(out), "card": str(out.with_suffix(".md"))}


def _with_bands(recipe: Recipe, bands: int) -> Recipe:
    return replace(recipe, net=replace(recipe.net, bands=bands))


def _card_info(files, recipe, everything, train_pairs, fitted: Fitted, name, description):
    train = everything.samples[: len(train_pairs)]
    n_points = (
        sum(len(s.points) for s in train)
        if recipe.kind == "points"
        else sum(int(s.mask.any()) for s in train)
    )
    return {
        "name": name,
        "description": description,
        "kind": recipe.kind,
        "images": ", ".join(str(p) for p in files.images),
        "truth": ", ".join(str(p) for p in files.truth),
        "n_train": len(train),
        "n_val": len(everything.samples) - len(train),
        "n_points": n_points,
        "bands": everything.bands,
        "pixel_size_m": everything.pixel_size_m,
        "seed": recipe.seed,
        "epochs_run": fitted.epochs_run,
        "best_epoch": fitted.best_epoch,
        "seconds": fitted.seconds,
        "seconds_per_epoch": float(np.mean(fitted.epoch_seconds)),
        "val_seconds_per_epoch": float(np.mean([h["val_s"] for h in fitted.history])),
        "depth": recipe.net.depth,
        "width": recipe.net.width,
        "stem": recipe.net.stem,
        "params": n_params(fitted.net),
        "val": fitted.choice.to_dict(),
        "within_m": recipe.within_m,
        "min_distance_m": recipe.min_distance_m,
        "receptive_field_px": receptive_field(recipe.net),
        "shift_period_px": shift_period(recipe.net),
    }


def summary_json(summary: dict) -> str:
    return json.dumps(summary, indent=2, default=str)
