"""A COG read from a local S3 API server against the same file read from disk.

    python -m benchmarks.s3_read --megapixels 64 --out benchmarks/results

Writes a synthetic orthomosaic as a Cloud-Optimised GeoTIFF (512-pixel
blocks, deflate), starts moto's S3 server on 127.0.0.1 (``pip install
'moto[server]'``, the test extra), uploads the file, and times ``tiler run``
(the default pipeline and scheduler) on the file and on its ``s3://`` URL,
each in its own process, alternately, ``--repeat`` times. Reports the best
time of each, their ratio (target: within 1.5x), that the outputs are the
same bytes, and the GDAL options the reading tasks set
(:data:`tiler.io.remote.READ_OPTIONS`). moto is a Python server: a real S3
endpoint or MinIO serves ranges faster, so the ratio here is an upper bound
for a local network.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BUCKET, KEY = "tiler-bench", "ortho.tif"


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}"
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"moto server did not start (see {log})")
        time.sleep(0.1)


def s3_env(endpoint: str) -> dict[str, str]:
    """This process's environment for a ``tiler run`` against the moto server (made-up keys)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    env.update(AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    return env


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client of the moto server, with :func:`s3_env`'s keys."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def write_cog(path: Path, side: int) -> None:
    import rasterio.shutil

    from tiler.synthetic import SyntheticField, write_geotiff

    tiled = write_geotiff(SyntheticField(height=side, width=side), path.with_suffix(".tiled.tif"))
    rasterio.shutil.copy(tiled, path, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE")
    tiled.unlink()


def timed_run(src: str, dst: str | Path, env: dict[str, str], chunk: int) -> float:
    command = [sys.executable, "-m", "tiler.cli", "run", src, str(dst), "--overwrite", "-q"]
    command += ["--chunk-size", str(chunk)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tiler run {src} failed: {done.stderr.strip()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.s3_read", description=__doc__)
    parser.add_argument("--megapixels", type=float, default=64.0)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from tiler.io.remote import READ_OPTIONS

    side = int(round((args.megapixels * 1e6) ** 0.5))
    with tempfile.TemporaryDirectory(prefix="tiler-s3-bench-") as tmp_name:
        tmp = Path(tmp_name)
        cog = tmp / "ortho.tif"
        print(f"writing a {side} x {side} COG ...", flush=True)
        write_cog(cog, side)
        server, endpoint = start_moto(tmp / "moto.log")
        try:
            env, s3 = s3_env(endpoint), s3_client(endpoint)
            s3.create_bucket(Bucket=BUCKET)
            s3.upload_file(str(cog), BUCKET, KEY)
            times: dict[str, list[float]] = {"disk": [], "s3": []}
            for i in range(args.repeat):
                for where, src in (("disk", str(cog)), ("s3", f"s3://{BUCKET}/{KEY}")):
                    seconds = timed_run(src, tmp / f"out-{where}", env, args.chunk)
                    times[where].append(seconds)
                    print(f"run {i + 1} {where}: {seconds:.1f} s", flush=True)
            same = all(
                (tmp / "out-disk" / name).read_bytes() == (tmp / "out-s3" / name).read_bytes()
                for name in ("objects.parquet",)
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
        size_mb = cog.stat().st_size / 1e6
    best = {where: min(values) for where, values in times.items()}
    ratio = best["s3"] / best["disk"]
    result = {
        "megapixels": round(side * side / 1e6, 1),
        "cog_mb": round(size_mb, 1),
        "chunk": args.chunk,
        "seconds": times,
        "best": best,
        "ratio_s3_over_disk": round(ratio, 3),
        "within_1_5x": ratio <= 1.5,
        "objects_identical": same,
        "gdal_read_options": READ_OPTIONS,
        "cpus": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"s3-read-{round(side * side / 1e6)}mp"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# COG from a local S3 server (moto) vs from disk, {result['megapixels']} MP",
        "",
        f"COG {size_mb:.1f} MB (512-pixel blocks, deflate); default pipeline, "
        f"chunk {args.chunk}, default scheduler; best of {args.repeat}; {os.cpu_count()} CPUs.",
        "",
        "| input | best (s) | all runs (s) |",
        "|---|---:|---|",
        *(f"| {w} | {best[w]:.1f} | {', '.join(f'{s:.1f}' for s in times[w])} |" for w in times),
        "",
        f"Ratio S3 / disk: **{ratio:.2f}x** (target 1.5x: "
        f"{'met' if ratio <= 1.5 else 'NOT met'}); objects identical: {same}.",
        "",
        "GDAL options set by the reading tasks: "
        + ", ".join(f"`{k}={v}`" for k, v in READ_OPTIONS.items()),
    ]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
