"""Inputs in object storage: URLs read by ranges through GDAL's virtual file systems.

``s3://bucket/key``, ``gs://bucket/key``, ``az://container/key`` and
``http(s)://host/path`` are opened as ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``
and ``/vsicurl/`` paths. Only the header is read where the run starts; each
task opens the URL itself on its worker and reads its window by HTTP ranges.

The GDAL options for cloud reads (:data:`READ_OPTIONS`) are set by the
reading code itself with :func:`reading` (a ``rasterio.Env``), on the worker:
they travel with the task's code, not with the driver's environment. The
credentials never travel: GDAL reads them from each worker's own environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``, ``AWS_PROFILE``; ``GOOGLE_APPLICATION_CREDENTIALS``;
``AZURE_STORAGE_ACCOUNT`` and its key or SAS), and ``AWS_ENDPOINT_URL`` (an
S3-compatible server) is mapped here, on the worker, to GDAL's own settings.

The identity of a URL input is the rule of local files
(:func:`tiler.io.input_identity.fingerprint`): its size and the SHA-256 of its
first and last MiB, read by two range requests through fsspec (``s3fs`` for
S3) - never the whole object. The same file on disk and in a bucket has the
same fingerprint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from tiler.errors import InputError
from tiler.io.fingerprint import CHUNK, digest

# URL scheme -> GDAL virtual file system.
VSI_PREFIX = {
    "s3": "/vsis3/",
    "gs": "/vsigs/",
    "az": "/vsiaz/",
    "http": "/vsicurl/",
    "https": "/vsicurl/",
}
# GDAL options for reading a Cloud-Optimised GeoTIFF by ranges. A worker's own
# environment wins for each of them (a user's tuning is kept).
READ_OPTIONS = {
    # Opening a URL lists nothing beside it (no .aux.xml, .ovr or .msk lookups).
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt",
    # Requests for neighbouring blocks of one window become one range request.
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    # Downloaded bytes kept per file handle (the halos re-read neighbours' blocks).
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 << 20),
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 << 20),
    # A flaky request is retried; an endpoint that does not answer fails in seconds.
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "60",
}
# Never written anywhere by tiler; masked in any message that quotes a server's answer.
SECRET_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
)


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL read through GDAL (``s3://``, ``gs://``, ``az://``, http)."""
    return isinstance(path, str) and urlsplit(path).scheme.lower() in VSI_PREFIX and "://" in path


def public_url(url: str) -> str:
    """``url`` as it may be written down: no user, password, query string or fragment.

    A presigned URL's query is its signature: it is kept for reading, and left
    out of every message, log and ``run.json``.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def gdal_path(url: str) -> str:
    """The GDAL virtual file system path of ``url`` (``s3://b/k`` -> ``/vsis3/b/k``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return VSI_PREFIX[scheme] + url
    return VSI_PREFIX[scheme] + parts.netloc + parts.path


def gdal_options(environ: os._Environ | dict | None = None) -> dict[str, str]:
    """The GDAL options for reading URLs in this process: :data:`READ_OPTIONS` and the endpoint.

    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (the AWS CLI's and
    botocore's name for an S3-compatible server) becomes GDAL's
    ``AWS_S3_ENDPOINT``, with ``AWS_HTTPS=NO`` for an ``http://`` endpoint and
    path-style addressing (``AWS_VIRTUAL_HOSTING=FALSE``). No credential is
    put here: GDAL reads those from the process's environment.
    """
    env = os.environ if environ is None else environ
    options = {k: v for k, v in READ_OPTIONS.items() if k not in env}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint and "AWS_S3_ENDPOINT" not in env:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        options.setdefault("AWS_HTTPS", "NO" if parts.scheme == "http" else "YES")
        options.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
    if "AWS_REGION" not in env and "AWS_DEFAULT_REGION" in env:
        options["AWS_REGION"] = env["AWS_DEFAULT_REGION"]
    return options


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """The GDAL options for reading ``path`` (a ``rasterio.Env``) if it is a URL; else nothing."""
    if not is_url(path):
        yield
        return
    import rasterio

    with rasterio.Env(**gdal_options()):
        yield


def _filesystem(url: str):
    """The fsspec file system of ``url``, failing fast on an endpoint that does not answer."""
    import fsspec

    scheme = urlsplit(url).scheme.lower()
    try:
        if scheme == "s3":
            fs = fsspec.filesystem(
                "s3",
                skip_instance_cache=True,
                config_kwargs={
                    "connect_timeout": 5,
                    "read_timeout": 30,
                    "retries": {"max_attempts": 2, "mode": "standard"},
                },
            )
            fs.retries = 1  # s3fs's own retries of failed requests, over botocore's
            return fs
        return fsspec.filesystem(scheme, skip_instance_cache=True)
    except ImportError:
        package = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs"}.get(scheme, "aiohttp")
        raise InputError(
            f"{public_url(url)}: reading {scheme}:// URLs needs the package {package} "
            f"(pip install {package})"
        ) from None


def reason(exc: BaseException) -> str:
    """What went wrong, in words, without anything of the request (no keys, no signatures)."""
    text = str(exc)
    for words, said in (
        (("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403"),
         "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile)"),
        (("NoSuchBucket", "bucket does not exist"), "no such bucket"),
        (("Could not connect", "Connect timeout", "Cannot connect", "EndpointConnectionError",
          "Connection refused"), "the endpoint does not answer"),
    ):  # fmt: skip
        if any(w in text for w in words):
            return said
    if isinstance(exc, FileNotFoundError):
        return "no such object"
    if isinstance(exc, PermissionError):
        return "access denied (check the credentials)"
    return exc.__class__.__name__


def endpoint_note(url: str) -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if urlsplit(url).scheme.lower() == "s3" and endpoint:
        return f" at {public_url(endpoint)}"
    return ""


def identity(url: str, chunk: int = CHUNK) -> tuple[int, str]:
    """``(size_bytes, fingerprint)`` of the object at ``url``, by two range reads.

    The fingerprint is a file's (:func:`tiler.io.fingerprint.digest`): the
    SHA-256 of the size and of the first and last MiB.

    Raises
    ------
    InputError
        One line naming the URL: access denied, no such bucket or object, or
        an endpoint that does not answer.
    """
    fs = _filesystem(url)
    try:
        info = fs.info(url)
        if info.get("type") == "directory":
            raise InputError(f"{public_url(url)}: is a directory (a prefix), not a GeoTIFF")
        size = int(info["size"])
        sha = digest(size, lambda start, stop: fs.cat_file(url, start=start, end=stop), chunk)
    except InputError:
        raise
    except Exception as exc:  # botocore, aiohttp and fsspec errors alike
        why = reason(exc)
    else:
        if size == 0:
            raise InputError(f"{public_url(url)}: is an empty object, not a GeoTIFF")
        return size, sha
    raise InputError(f"{public_url(url)}: cannot read{endpoint_note(url)}: {why}")


def describe_gdal_error(url: str, reason: str) -> str:
    """GDAL's reason for failing on ``url``, in words a user acts on, naming the URL."""
    lowered = reason.lower()
    for words, said in (
        (("403", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch"),
         "access denied (check the credentials)"),
        (("nosuchbucket", "bucket does not exist"), "no such bucket"),
        (("404", "nosuchkey", "does not exist"), "no such object"),
        (("couldn't connect", "could not connect", "connection refused", "timed out",
          "timeout"), "the endpoint does not answer"),
    ):  # fmt: skip
        if any(w in lowered for w in words):
            return f"{public_url(url)}: cannot read{endpoint_note(url)}: {said}"
    return f"{public_url(url)}: not a readable GeoTIFF ({scrub(reason)})"


def scrub(text: str) -> str:
    """``text`` with every credential of this process's environment masked (GDAL quotes keys)."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def check_identity(url: str, inputs: dict) -> None:
    """Refuse the object at ``url`` unless it is the run's input (its size and fingerprint)."""
    size, digest = identity(url)
    recorded = inputs.get("size_bytes"), inputs.get("fingerprint_sha256")
    if None in recorded:
        raise InputError(
            f"{public_url(url)}: run.json holds no size and fingerprint of the run's input "
            "to check it against"
        )
    if (size, digest) != recorded:
        what = (
            f"{size} bytes, where it had {recorded[0]}"
            if size != recorded[0]
            else ("same size, but its fingerprint (SHA-256 of its first and last MiB) differs")
        )
        raise InputError(f"{public_url(url)}: not the run's input (changed since the run: {what})")


@contextlib.contextmanager
def open_dataset(path: str, driver: str = "GTiff") -> Iterator:
    """``rasterio.open`` of a path or a URL (with :func:`reading`'s options), for a quick look."""
    import rasterio

    opened = gdal_path(path) if is_url(path) else path
    with reading(path), rasterio.open(opened, driver=driver) as ds:
        yield ds
