"""Run one pipeline of the benchmark in this process and write its result as JSON.

    python -m benchmarks.run_one {tiler,reference,dask-image} --src F.tif --dst DIR \\
        --chunk 2048 --result R.json

The parent (``benchmarks.bench``) starts one such process per pipeline and
measures the whole process (interpreter start and imports included) and the
peak memory of its process tree. Imports stay inside the functions: only the
``tiler`` runner imports tiler (the peers pay for their own libraries only),
and ``dask-image`` also runs in a virtualenv without tiler.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PIPELINE: dict[str, Any] = {
    "preprocess": [{"index": "exg"}, {"gaussian": {"sigma": 1.0}}],
    "threshold": "otsu",
    "polarity": "above",
    "refine": [{"closing": {"radius": 1}}, {"opening": {"radius": 1}}],
    "connectivity": 2,
}

VERSIONED = (
    "tiler", "dask", "distributed", "dask-image", "numpy", "scipy", "scikit-image",
    "opencv-python-headless", "rasterio", "rioxarray", "zarr", "numba",
)  # fmt: skip


def versions() -> dict[str, str]:
    """Versions of the packages that matter, as installed in this interpreter."""
    found = {"python": sys.version.split()[0]}
    for name in VERSIONED:
        if name == "tiler" and "tiler" not in sys.modules:
            continue  # the repository's tiler.egg-info is on sys.path even where tiler is absent
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def run_tiler(src: Path, dst: Path, chunk: int) -> dict[str, Any]:
    """``tiler.run`` with its defaults (threads in the process, one per core)."""
    import numpy as np
    import pyarrow.parquet as pq

    import tiler

    stamps: dict[str, float] = {}

    def log(message: str) -> None:
        if message.startswith("local cluster") and "cluster_ready" not in stamps:
            stamps["cluster_ready"] = time.perf_counter()

    t0 = time.perf_counter()
    result = tiler.run(src, dst, config=PIPELINE, chunk_size=chunk, log=log)
    seconds = time.perf_counter() - t0
    table = pq.read_table(result.objects, columns=["label", "area_px"])
    areas = table.column("area_px").to_numpy().astype("int64")
    labels = table.column("label").to_numpy()
    if not np.array_equal(labels, np.arange(1, labels.size + 1)):
        raise RuntimeError("tiler's object table is not numbered 1..n in order")
    np.save(dst / "areas.npy", areas)
    manifest = json.loads(result.manifest.read_text())
    return {
        "seconds": seconds,
        "seconds_startup": stamps.get("cluster_ready", t0) - t0,
        "timings": dict(result.timings),
        "n_objects": result.n_objects,
        "threshold": float(result.threshold),
        "labels": str(result.labels / "labels"),
        "label_dtype": manifest["labels"]["dtype"],
        "areas": str(dst / "areas.npy"),
        "tiler_seconds": result.seconds,
        "notes": [],
    }


def run_reference(src: Path, dst: Path, chunk: int) -> dict[str, Any]:
    """The whole image in memory with scikit-image/SciPy: ``benchmarks/peer_reference.py``."""
    from benchmarks import peer_reference

    return peer_reference.run(src, dst, chunk)


def run_dask_image(src: Path, dst: Path, chunk: int) -> dict[str, Any]:
    from benchmarks import peer_daskimage

    return peer_daskimage.run(src, dst, chunk)


RUNNERS = {"tiler": run_tiler, "reference": run_reference, "dask-image": run_dask_image}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_one", description=__doc__)
    parser.add_argument("name", choices=sorted(RUNNERS))
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dst", type=Path, required=True)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    args.dst.mkdir(parents=True, exist_ok=True)
    result = RUNNERS[args.name](args.src, args.dst, args.chunk)
    result["name"] = args.name
    result["versions"] = versions()
    result["imported_tiler"] = "tiler" in sys.modules
    args.result.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
