"""Per-tile cost of the default pipeline's value kernels, on a real tile.

One 2048² tile of the default pipeline with its halo (2062 x 2062, rows and
columns 8185.. of the 1 GP synthetic field of ``make bench-scale``), each
kernel called as a pass calls it; the calls are interleaved round after round
(the machine's load changes by the second) and the best round is kept:

    .venv/bin/python -m benchmarks.kernels --rounds 20

Before and after a change: run it in both trees, or time both versions of a
kernel in one script as this one does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from benchmarks.bench import SCRATCH
from tiler.config import load_pipeline
from tiler.io.open_raster import open_geotiff
from tiler.kernels.binning import histogram_codes, masked_histogram, masked_range
from tiler.kernels.filters import gaussian
from tiler.tiling import Window
from tiler.values import preprocess

SIDE, HALO, AT = 2048, 7, 8185


def calls(path: str) -> dict[str, Callable[[], object]]:
    """The kernels of one tile, as the passes call them."""
    source = open_geotiff(path)
    pipeline = load_pipeline(None).resolve_bands(source.count, source.alpha_bands)
    outer = Window(AT, AT + SIDE + 2 * HALO, AT, AT + SIDE + 2 * HALO)
    image, valid = source.read(pipeline.bands, outer)
    values = np.array(preprocess(image, pipeline, outer)[0])
    index = pipeline.index
    core = (slice(HALO, HALO + SIDE), slice(HALO, HALO + SIDE))
    vmin, vmax, _ = masked_range(values, valid, core)
    return {
        "index (ExG)": lambda: index.values(image, pipeline.bands),
        "gaussian sigma 1": lambda: gaussian(values, 1.0),
        "masked_range": lambda: masked_range(values, valid, core),
        "masked_histogram": lambda: masked_histogram(values, valid, vmin, vmax, core),
        "histogram_codes": lambda: histogram_codes(values, valid, core, vmin, vmax),
    }


def best_of(kernels: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The least wall time of each kernel (seconds) over interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in kernels}
    for _ in range(rounds + 1):  # the first round compiles and warms up
        for name, call in kernels.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: min(found[1:]) for name, found in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=str(SCRATCH / "field-32768x32768.tif"))
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    pixels = (SIDE + 2 * HALO) ** 2
    print(f"| kernel ({SIDE + 2 * HALO}² float64 tile) | ms | MP/s |\n|---|---:|---:|")
    for name, seconds in best_of(calls(args.input), args.rounds).items():
        print(f"| {name} | {seconds * 1e3:.1f} | {pixels / seconds / 1e6:.0f} |")


if __name__ == "__main__":
    main()
