# One image for every role of a tiler deployment (see cluster/README.md):
#   scheduler:  dask scheduler
#   worker:     dask worker tcp://scheduler:8786 --nthreads 2 --memory-limit 4GiB
#   client:     tiler run s3://tiler/ortho.tif s3://tiler/out/ --scheduler tcp://scheduler:8786
#
#   docker build -t tiler:latest .
#
# GDAL comes with the rasterio wheel, OpenCV with opencv-python-headless: no
# system packages are needed on top of python:3.11-slim.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# dask runs one task per tile on every worker thread: the libraries must not start
# thread pools of their own on top (the nanny already sets OMP/MKL/OpenBLAS to 1).
ENV GDAL_NUM_THREADS=1 \
    OPENCV_FOR_THREADS_NUM=1
# GDAL's block cache in MB, per process (one per dask worker, shared by its threads).
# tiler's reader sets the same 256 MB itself (tiler/io/raster.py); count it in the
# worker's --memory-limit.
ENV GDAL_CACHEMAX=256
# numba caches compiled kernels next to the installed sources, which a non-root user
# cannot write: keep them in a directory any user id can write.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache

# An unprivileged user; /data is its working directory, and where a shared volume
# is mounted when the data are not in a bucket (cluster/README.md).
RUN useradd --create-home --uid 1000 --user-group tiler \
    && mkdir -p /data \
    && chown tiler:tiler /data

# Only what the package needs (pyproject.toml reads README.md); its dependencies
# include bokeh, which serves the scheduler's dashboard (port 8787).
WORKDIR /tmp/tiler-src
COPY pyproject.toml README.md ./
COPY tiler ./tiler
RUN pip install --no-cache-dir . \
    && cd / \
    && rm -rf /tmp/tiler-src \
    && tiler --version \
    && dask --version

USER tiler
WORKDIR /data

# No EXPOSE and no ENTRYPOINT: the role is the command (docker-compose.yml, the
# Kubernetes manifests); publish ports explicitly where they are needed.
CMD ["tiler", "--help"]
