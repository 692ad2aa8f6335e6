"""How close is the tiled watershed split to the whole-image one, on the synthetic field?

    python -m benchmarks.split_agreement [--size 2000] [--seed 0] [--footprints 3 none]
        [--chunks 512 256] [--halos 8 12 16 24 32 64] [--min-distances 5 6 7 8 9]

The mask is the default plant pipeline's (``tiler.reference.run_reference``)
on a ``tiler.synthetic.SyntheticField`` read whole (RGBA; valid = alpha > 0).
For each footprint (``none``: ``2 * min_distance + 1``) and ``min_distance``
it runs the ``split: watershed`` step on the whole mask
(:func:`tiler.kernels.split.reference_split`) and tiled, in memory
(:func:`tiler.split.split_in_memory`), for every chunk size and halo, and
prints Markdown tables:

* **agreement**: the share of reference objects that the tiled run
  reproduces exactly (same pixels), object counts, the merge's fallbacks and
  the time of both runs (one process, no dask);
* **detection**: the reference split's objects scored against the field's
  known crop-plant centres (:func:`tiler.accuracy.match_points`, within half
  the plant spacing, weeds counting as false positives), next to the
  unsplit connected components: how well each ``min_distance`` separates
  touching plants without cutting single ones.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage as ndi

from tiler.accuracy import Score, match_points
from tiler.config import load_pipeline
from tiler.kernels.split import reference_split
from tiler.reference import run_reference
from tiler.split import identical_objects, split_in_memory
from tiler.synthetic import SyntheticField
from tiler.tiling import Window


def field_mask(size: int, seed: int) -> tuple[np.ndarray, int, SyntheticField]:
    """The default pipeline's final mask on a ``size`` x ``size`` field, and its connectivity."""
    field = SyntheticField(size, size, seed=seed)
    rgba = field.read(Window(0, size, 0, size))
    pipeline = load_pipeline().resolve_bands(4, alpha_bands=(4,))
    image = rgba[[band - 1 for band in pipeline.bands]]
    mask = run_reference(image, rgba[3] > 0, pipeline).mask
    return mask, pipeline.connectivity, field


def detection(labels: np.ndarray, n: int, truth: np.ndarray, radius: float) -> Score:
    """Object centroids (row, col) matched to the truth centres."""
    centroids = np.array(ndi.center_of_mass(labels > 0, labels, np.arange(1, n + 1)))
    return match_points(centroids.reshape(-1, 2), truth, radius).score()


def _footprint(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--footprints", type=_footprint, nargs="+", default=[3, None])
    parser.add_argument("--chunks", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--halos", type=int, nargs="+", default=[8, 12, 16, 24, 32, 64])
    parser.add_argument("--min-distances", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    args = parser.parse_args(argv)

    mask, connectivity, field = field_mask(args.size, args.seed)
    truth = field.plant_centres()
    radius = field.plant_spacing / 2
    components, n_components = ndi.label(mask, np.ones((3, 3)) if connectivity == 2 else None)
    sizes = [max(s.stop - s.start for s in box) for box in ndi.find_objects(components)]
    print(
        f"field {args.size} x {args.size}, seed {args.seed}: {n_components} components "
        f"(largest bounding box side {max(sizes)} px), {len(truth)} crop plants, "
        f"connectivity {connectivity}\n"
    )

    print("| footprint | min_distance | objects | plants found | other objects | missed | F1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    s = detection(components, n_components, truth, radius)
    print(f"| (no split) | | {n_components} | {s.tp} | {s.fp} | {s.fn} | {s.f1:.3f} |")
    references = {}
    for footprint in args.footprints:
        for min_distance in args.min_distances:
            (ref, n), seconds = _timed(reference_split, mask, min_distance, footprint, connectivity)
            references[footprint, min_distance] = (ref, n, seconds)
            s = detection(ref, n, truth, radius)
            print(f"| {footprint} | {min_distance} | {n} | {s.tp} | {s.fp} | {s.fn} | {s.f1:.3f} |")

    print(
        "\n| footprint | min_distance | chunk | halo | identical | objects (ref / tiled) "
        "| fallbacks (IoU / own) | time ref / tiled (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (footprint, min_distance), (ref, n, ref_seconds) in references.items():
        for chunk in args.chunks:
            for halo in args.halos:
                result, seconds = _timed(
                    split_in_memory,
                    mask,
                    (chunk, chunk),
                    halo,
                    min_distance=min_distance,
                    footprint=footprint,
                    connectivity=connectivity,
                )
                same = identical_objects(ref, result.labels)
                print(
                    f"| {footprint} | {min_distance} | {chunk} | {halo} "
                    f"| {100 * same / max(n, 1):.2f} % | {n} / {result.n} "
                    f"| {result.fallback_iou} / {result.fallback_own} "
                    f"| {ref_seconds:.2f} / {seconds:.2f} |"
                )


if __name__ == "__main__":
    main()
