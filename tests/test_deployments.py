"""Checks of the deployments in ``cluster/`` and of the ``Dockerfile``.

There is no Docker engine, Kubernetes cluster or batch system on the build
machine (cluster/README.md says which deployments ran for real). So every file
is parsed, checked against the others (service names, ports, volumes,
namespaces), and every command line it runs is parsed by the real command:
``tiler run`` by tiler's click command, ``dask scheduler``/``dask worker`` by
distributed's. The SLURM and PBS driver scripts also run under bash: once with
a stand-in ``tiler`` that records its arguments, once for real with tiler and
dask-jobqueue, only ``sbatch``/``qsub`` standing in (they run the worker job
scripts on this machine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from dask.utils import parse_bytes
from distributed.cli.dask_scheduler import main as dask_scheduler_command
from distributed.cli.dask_worker import main as dask_worker_command

from tiler.cli import run as tiler_run_command
from tiler.synthetic import SyntheticField, write_geotiff

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
DATA = "/data"  # the batch scripts' shared file system (SLURM, PBS)
# The variables the S3 clients (GDAL, s3fs/botocore) read for the bucket.
S3_ENDPOINT, S3_KEYS = "AWS_ENDPOINT_URL", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
TILER_SERVICES = {"scheduler", "worker", "tiler"}  # the compose services of tiler's image
GiB = 2**30

DEPLOYMENT_FILES = [
    "docker-compose.yml",
    "slurm/jobqueue.yaml",
    "slurm/tiler.sbatch",
    "pbs/jobqueue.yaml",
    "pbs/tiler.pbs",
    "kubernetes/storage.yaml",
    "kubernetes/daskcluster.yaml",
    "kubernetes/tiler-job.yaml",
    "README.md",
]


# --- helpers -----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_yaml(relative: str):
    with open(CLUSTER / relative, encoding="utf-8") as f:
        return yaml.load(f, Loader=_StrictLoader)  # a SafeLoader subclass


_COMPOSE_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\})")


def compose_defaults(value):
    """``value`` with compose's ``${VAR:-default}`` replaced by the default, recursively.

    Every variable must have a default, so that the file works with no environment.
    """
    if isinstance(value, dict):
        return {k: compose_defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compose_defaults(v) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        rest = match.group("rest")
        assert rest.startswith((":-", "-")), f"${{{match.group('name')}}} has no default"
        return rest.split("-", 1)[1]

    return _COMPOSE_VARIABLE.sub(replace, value)


def argv_of(command) -> list[str]:
    """A compose/Kubernetes command (list or string) as an argv list."""
    return list(command) if isinstance(command, list) else shlex.split(command)


def parse_tiler_run(argv: list[str]) -> dict:
    """``tiler run ...`` parsed by tiler's own click command (unknown flags raise)."""
    assert argv[:2] == ["tiler", "run"], argv
    return tiler_run_command.make_context("tiler run", argv[2:]).params


def tiler_run_in_bucket(argv: list[str]) -> tuple[dict, str, str]:
    """``tiler run s3://... s3://...`` parsed by tiler; SRC and DST as written.

    DST is compared as written: while tiler's DST argument is a click path, it
    parses ``s3://b/out/`` as ``s3:/b/out`` (a URL parameter keeps it whole).
    """
    assert argv[:2] == ["tiler", "run"] and len(argv) >= 4, argv
    src, dst = argv[2:4]
    params = parse_tiler_run(argv)
    assert params["src"] == src, params
    assert str(params["dst"]).rstrip("/") in (dst.rstrip("/"), dst.rstrip("/").replace("//", "/"))
    for url in (src, dst):
        assert url.startswith("s3://") and len(url) > len("s3://x/"), f"{url} is not in a bucket"
    assert not src.startswith(dst.rstrip("/") + "/"), "SRC inside DST"
    return params, src, dst


def parse_dask(command: click.Command, argv: list[str]) -> dict:
    """``dask scheduler|worker ...`` parsed by distributed's click command."""
    params = command.make_context("dask", argv).params
    # Both commands pass unknown trailing arguments to preloads: a typo would land there.
    assert params["preload_argv"] == (), f"unknown arguments: {params['preload_argv']}"
    return params


def k8s_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``6Gi``, ``512Mi``, ``8G``) in bytes."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?", str(quantity))
    assert match, f"not a memory quantity: {quantity!r}"
    factors = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    factors |= {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    return int(match.group(1)) * factors[match.group(2)]


# --- every file --------------------------------------------------------------------------


def test_the_deployment_files_exist_and_the_readme_describes_each():
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    for relative in DEPLOYMENT_FILES:
        assert (CLUSTER / relative).is_file(), relative
        if relative != "README.md":
            assert relative in readme, f"cluster/README.md does not mention {relative}"
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("relative", [f for f in DEPLOYMENT_FILES if f.endswith((".yml", ".yaml"))])
def test_every_yaml_file_parses_without_duplicate_keys(relative):
    data = load_yaml(relative)
    assert isinstance(data, dict) and data


def test_yaml_files_are_all_checked():
    found = {
        str(p.relative_to(CLUSTER))
        for p in CLUSTER.rglob("*")
        if p.suffix in (".yml", ".yaml") and "data" not in p.relative_to(CLUSTER).parts
    }
    assert found == {f for f in DEPLOYMENT_FILES if f.endswith((".yml", ".yaml"))}


# --- Dockerfile and .dockerignore --------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for item in shlex.split(arguments):
                key, sep, value = item.partition("=")
                assert sep, f"use ENV KEY=VALUE: {item!r}"
                env[key] = value
    return env


def test_dockerfile_base_image_install_and_user():
    instructions = dockerfile_instructions()
    froms = [args for keyword, args in instructions if keyword == "FROM"]
    assert froms == ["python:3.11-slim"]
    assert instructions[0][0] == "FROM"

    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert installs, "no pip install"
    assert any(re.search(r"pip install --no-cache-dir (\S+ )*\.(\s|$)", r) for r in installs), (
        "the project itself (`pip install --no-cache-dir .`) is not installed"
    )

    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert any("useradd" in r and users[-1] in r for r in runs), "the USER is never created"

    keywords = [keyword for keyword, _ in instructions]
    assert "EXPOSE" not in keywords, "the image publishes nothing by default"
    assert "ENTRYPOINT" not in keywords, "the role is the command: no ENTRYPOINT"


def test_dockerfile_thread_and_cache_settings():
    env = dockerfile_env()
    assert env["GDAL_NUM_THREADS"] == "1"
    assert env["OPENCV_FOR_THREADS_NUM"] == "1"
    # GDAL reads a bare number as megabytes: a cache per worker process, not a share of RAM.
    assert env["GDAL_CACHEMAX"].isdigit() and 64 <= int(env["GDAL_CACHEMAX"]) <= 2048


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """``.dockerignore`` as ``(excluded, regex)`` in order (the last match decides).

    As Docker reads it: paths relative to the context, ``*`` and ``?`` within one
    path element, ``**`` across any number, ``!`` re-includes; a pattern that matches
    a directory covers everything under it.
    """
    patterns = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excluded = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((excluded, re.compile(regex + "(?:/.*)?")))
    return patterns


def in_build_context(relative: str, patterns) -> bool:
    excluded = False
    for exclude, regex in patterns:
        if regex.fullmatch(relative):
            excluded = exclude
    return not excluded


def test_dockerignore_keeps_the_package_and_drops_the_rest():
    patterns = dockerignore_patterns()
    copied = [
        args.split()[:-1]
        for keyword, args in dockerfile_instructions()
        if keyword == "COPY" and not args.startswith("--from")
    ]
    sources = [source for sources in copied for source in sources]
    assert set(sources) >= {"pyproject.toml", "README.md", "tiler"}
    needed = []
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        needed += [
            str(p.relative_to(ROOT))
            for p in files
            if "__pycache__" not in p.relative_to(ROOT).parts
        ]
    assert "tiler/data/neon_sjer_477.tif" in needed
    left_out = [f for f in needed if not in_build_context(f, patterns)]
    assert not left_out, f".dockerignore drops files the image needs: {left_out[:5]}"

    for unwanted in [
        ".venv/bin/python",
        ".git/HEAD",
        "demo-output/synthetic-field/run.json",
        "benchmarks/results/bench-64mp.md",
        "benchmarks/scratch/field.tif",
        ".pytest_cache/v/cache/nodeids",
        ".hypothesis/examples/x",
        "tiler/kernels/__pycache__/filters.cpython-311.pyc",
        "tiler.egg-info/PKG-INFO",
        "cluster/data/input.tif",
    ]:
        assert not in_build_context(unwanted, patterns), f"{unwanted} is sent to the builder"


# --- docker compose ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return compose_defaults(load_yaml("docker-compose.yml"))


def test_compose_has_minio_and_the_three_tiler_services_built_from_the_root_dockerfile(compose):
    services = compose["services"]
    assert set(services) == TILER_SERVICES | {"minio", "createbucket"}
    images = set()
    for name in TILER_SERVICES:
        service = services[name]
        build = service["build"]
        assert (CLUSTER / build["context"]).resolve() == ROOT, name
        assert (CLUSTER / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
        images.add(service["image"])
    for name, service in services.items():
        assert "network_mode" not in service, f"{name}: stay on the compose network"
    assert len(images) == 1, "one image for every role"
    assert services["minio"]["image"].split(":")[0] == "minio/minio"
    assert services["createbucket"]["image"].split(":")[0] == "minio/mc"


def loopback_ports(service: dict) -> dict[int, int]:
    """A compose service's published ports, ``{container: host}``; each on 127.0.0.1 only."""
    published = {}
    for entry in service["ports"]:
        host_ip, host_port, container_port = str(entry).split(":")
        assert host_ip == "127.0.0.1", f"{entry} is reachable from other machines"
        published[int(container_port)] = int(host_port)
    return published


def compose_volume_sources(service: dict) -> list[str]:
    """The host paths or named volumes a compose service mounts (short or long syntax)."""
    return [
        (v.split(":")[0] if isinstance(v, str) else v["source"]) for v in service.get("volumes", [])
    ]


def test_compose_services_share_no_volume(compose):
    services = compose["services"]
    for name in TILER_SERVICES:
        assert not compose_volume_sources(services[name]), f"{name} mounts a volume"
    owners: dict[str, str] = {}
    for name, service in services.items():
        for source in compose_volume_sources(service):
            assert source not in owners, f"{source} is mounted by {owners[source]} and {name}"
            owners[source] = name
    # MinIO keeps the bucket in a volume of its own; the input is read by the uploader only.
    assert owners == {"minio-data": "minio", "./data": "createbucket"}
    assert set(compose["volumes"]) == {"minio-data"}
    (input_mount,) = services["createbucket"]["volumes"]
    assert input_mount.endswith(":ro"), "the uploader only reads the input"
    # Present in the checkout, so Docker does not create it owned by root.
    assert (CLUSTER / "data").is_dir()


def test_compose_minio_serves_on_loopback_only_with_a_healthcheck(compose):
    minio = compose["services"]["minio"]
    argv = argv_of(minio["command"])
    assert argv[:2] == ["server", "/data"] and "--address" not in argv, "the API on :9000"
    assert argv[argv.index("--console-address") + 1] == ":9001"
    assert loopback_ports(minio) == {9000: 9000, 9001: 9001}
    # The image has mc and no curl; `local` is mc's alias for the server in the container.
    assert argv_of(minio["healthcheck"]["test"]) == ["CMD", "mc", "ready", "local"]
    assert minio["volumes"] == ["minio-data:/data"]


def test_compose_credentials_come_from_the_environment():
    """No literal key in the file: each is ``${VAR:-local-trial default}``, MinIO's own."""
    raw = load_yaml("docker-compose.yml")["services"]
    minio = raw["minio"]["environment"]
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{name}:-[^}}]+\}}", minio[name]), minio[name]
    assert raw["createbucket"]["environment"] == minio
    # MinIO refuses a root password under 8 characters: the default must start.
    assert len(compose_defaults(minio["MINIO_ROOT_PASSWORD"])) >= 8
    for name, service in raw.items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"KEY|SECRET|PASSWORD|USER|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+:-[^}]+\}", str(value)), f"{name}: {key}"


def test_compose_workers_and_client_reach_the_bucket_the_scheduler_does_not(compose):
    services = compose["services"]
    minio = services["minio"]["environment"]
    for name in ("worker", "tiler"):
        env = services[name]["environment"]
        assert env[S3_ENDPOINT] == "http://minio:9000", name
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"], name
        assert env["AWS_REGION"], name
        assert services[name]["depends_on"]["scheduler"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "environment" not in services["scheduler"], "the scheduler reads no data"


def test_compose_createbucket_makes_the_bucket_the_run_uses(compose, tmp_path):
    services = compose["services"]
    uploader = services["createbucket"]
    assert uploader["depends_on"]["minio"]["condition"] == "service_healthy"
    assert uploader.get("restart", "no") == "no", "a one-shot job"
    assert uploader["entrypoint"][0] == "/bin/sh"
    (script,) = uploader["command"]
    script_file = tmp_path / "createbucket.sh"
    script_file.write_text(script)
    subprocess.run(["sh", "-n", str(script_file)], check=True)  # valid shell
    assert "mc alias set local http://minio:9000" in script
    _, src, dst = tiler_run_in_bucket(argv_of(services["tiler"]["command"]))
    bucket = src.removeprefix("s3://").split("/")[0]
    assert dst.startswith(f"s3://{bucket}/")
    assert f"mc mb --ignore-existing local/{bucket}" in script
    key = src.removeprefix(f"s3://{bucket}/")
    assert f"mc cp /input/{key} local/{bucket}/{key}" in script
    depends = services["tiler"]["depends_on"]["createbucket"]["condition"]
    assert depends == "service_completed_successfully", "the run waits for its input"


def test_compose_scheduler_is_published_on_loopback_only(compose):
    services = compose["services"]
    assert loopback_ports(services["scheduler"]) == {8786: 8786, 8787: 8787}
    assert "ports" not in services["worker"] and "ports" not in services["tiler"]
    assert "ports" not in services["createbucket"]


def test_compose_scheduler_command_and_healthcheck(compose):
    scheduler = compose["services"]["scheduler"]
    argv = argv_of(scheduler["command"])
    assert argv[:2] == ["dask", "scheduler"]
    params = parse_dask(dask_scheduler_command, argv[2:])
    assert int(params["port"]) == 8786
    assert params["dashboard_address"].rsplit(":", 1)[1] == "8787"
    probe = " ".join(argv_of(scheduler["healthcheck"]["test"]))
    assert "127.0.0.1:8787/health" in probe


def test_compose_worker_command_points_at_the_scheduler_service(compose):
    services = compose["services"]
    worker = services["worker"]
    argv = argv_of(worker["command"])
    assert argv[:2] == ["dask", "worker"]
    params = parse_dask(dask_worker_command, argv[2:])
    scheduler_port = parse_dask(
        dask_scheduler_command, argv_of(services["scheduler"]["command"])[2:]
    )["port"]
    assert params["scheduler"] == f"tcp://scheduler:{scheduler_port}"
    assert params["nthreads"] >= 1
    assert parse_bytes(params["memory_limit"]) >= params["nthreads"] * GiB
    assert int(worker["deploy"]["replicas"]) >= 1
    assert worker["depends_on"]["scheduler"]["condition"] == "service_healthy"


def test_compose_tiler_service_is_a_valid_tiler_run_in_the_bucket(compose):
    tiler = compose["services"]["tiler"]
    params, _, _ = tiler_run_in_bucket(argv_of(tiler["command"]))
    assert params["scheduler"] == "tcp://scheduler:8786"
    assert tiler.get("restart", "no") == "no", "a one-shot job"


# --- Kubernetes (dask-kubernetes operator) -----------------------------------------------


@pytest.fixture(scope="module")
def k8s():
    return {
        "storage": load_yaml("kubernetes/storage.yaml"),
        "cluster": load_yaml("kubernetes/daskcluster.yaml"),
        "job": load_yaml("kubernetes/tiler-job.yaml"),
    }


def pod_specs(k8s) -> dict[str, dict]:
    cluster = k8s["cluster"]["spec"]
    return {
        "worker": cluster["worker"]["spec"],
        "scheduler": cluster["scheduler"]["spec"],
        "job": k8s["job"]["spec"]["template"]["spec"],
    }


def test_kubernetes_kinds_and_required_fields(k8s):
    storage, cluster, job = k8s["storage"], k8s["cluster"], k8s["job"]
    assert (storage["apiVersion"], storage["kind"]) == ("v1", "ConfigMap")
    assert all(isinstance(v, str) for v in storage["data"].values()), "ConfigMap values are text"

    # The operator's schema: spec.scheduler needs spec and service, spec.worker needs spec.
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    spec = cluster["spec"]
    assert isinstance(spec["worker"]["replicas"], int) and spec["worker"]["replicas"] >= 1
    assert spec["worker"]["spec"]["containers"]
    assert spec["scheduler"]["spec"]["containers"]
    assert spec["scheduler"]["service"]["ports"]

    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1, "a retried pod resumes the run"

    for doc in (storage, cluster, job):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    namespaces = {doc["metadata"]["namespace"] for doc in (storage, cluster, job)}
    assert len(namespaces) == 1, f"one namespace for all: {namespaces}"


def test_kubernetes_scheduler_service_matches_the_scheduler_pod(k8s):
    name = k8s["cluster"]["metadata"]["name"]
    scheduler = k8s["cluster"]["spec"]["scheduler"]
    service = scheduler["service"]
    assert service.get("type", "ClusterIP") == "ClusterIP", "not exposed outside the cluster"
    assert service["selector"] == {
        "dask.org/cluster-name": name,
        "dask.org/component": "scheduler",
    }
    (container,) = scheduler["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The operator looks the ports up by these names.
    service_ports = {p["name"]: p for p in service["ports"]}
    assert set(service_ports) == {"tcp-comm", "http-dashboard"}
    for port in service_ports.values():
        assert port["targetPort"] in container_ports, port
    assert container_ports[service_ports["tcp-comm"]["targetPort"]] == 8786
    assert container_ports[service_ports["http-dashboard"]["targetPort"]] == 8787

    argv = argv_of(container["command"])
    assert argv[:2] == ["dask", "scheduler"]
    params = parse_dask(dask_scheduler_command, argv[2:])
    assert int(params["port"]) == 8786
    assert params["dashboard_address"].rsplit(":", 1)[1] == "8787"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"port": "http-dashboard", "path": "/health"}


def test_kubernetes_worker_command_and_memory(k8s):
    (container,) = k8s["cluster"]["spec"]["worker"]["spec"]["containers"]
    argv = argv_of(container["command"])
    assert argv[:2] == ["dask", "worker"]
    params = parse_dask(dask_worker_command, argv[2:])
    # No address: the operator sets DASK_SCHEDULER_ADDRESS in every worker pod.
    assert params["scheduler"] is None
    assert params["name"] == "$(DASK_WORKER_NAME)"
    limits = container["resources"]["limits"]
    memory_limit = parse_bytes(params["memory_limit"])
    assert params["nthreads"] * GiB <= memory_limit < k8s_bytes(limits["memory"]), (
        "dask's memory limit must leave the container room for the nanny and GDAL's cache"
    )
    assert params["nthreads"] <= float(limits["cpu"])


def test_kubernetes_no_pod_mounts_a_volume_and_one_image_runs_everywhere(k8s):
    images = set()
    for role, spec in pod_specs(k8s).items():
        assert not spec.get("volumes"), f"{role}: a volume (the data are in the bucket)"
        for container in spec["containers"]:
            assert not container.get("volumeMounts"), role
            images.add(container["image"])
        assert spec["securityContext"]["runAsNonRoot"] is True, role
    assert len(images) == 1, f"one tiler image everywhere: {images}"


def k8s_secret_name() -> str:
    """The Secret of the bucket's keys, as cluster/README.md tells to create it."""
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    (name,) = set(re.findall(r"kubectl -n tiler create secret generic (\S+)", readme))
    return name


def test_kubernetes_workers_and_job_take_the_bucket_from_a_configmap_and_a_secret(k8s):
    storage = k8s["storage"]
    assert S3_ENDPOINT in storage["data"] and "AWS_REGION" in storage["data"]
    assert storage["data"][S3_ENDPOINT].startswith(("http://", "https://"))
    assert not set(storage["data"]) & set(S3_KEYS), "keys belong in a Secret"
    expected = [
        {"configMapRef": {"name": storage["metadata"]["name"]}},
        {"secretRef": {"name": k8s_secret_name()}},
    ]
    for role, spec in pod_specs(k8s).items():
        for container in spec["containers"]:
            literal = {e["name"] for e in container.get("env", []) if "value" in e}
            assert not literal & {S3_ENDPOINT, *S3_KEYS}, f"{role}: {literal}"
            if role == "scheduler":  # hands out tasks; never reads the data
                assert "envFrom" not in container, "the scheduler needs no credentials"
            else:
                assert container["envFrom"] == expected, role
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    for key in S3_KEYS:
        assert f"{key}=" in readme, f"cluster/README.md does not say to put {key} in the Secret"


def test_kubernetes_job_runs_tiler_against_the_operator_scheduler_service(k8s):
    cluster = k8s["cluster"]
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    port = next(
        p["port"]
        for p in cluster["spec"]["scheduler"]["service"]["ports"]
        if p["name"] == "tcp-comm"
    )
    (container,) = k8s["job"]["spec"]["template"]["spec"]["containers"]
    params, _, _ = tiler_run_in_bucket(argv_of(container["command"]))
    # The operator names the scheduler Service `<DaskCluster name>-scheduler`.
    assert params["scheduler"] == f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:{port}"
    assert params["resume"] is True, "a retried pod must continue, not start over"


# --- SLURM and PBS (dask-jobqueue) ---------------------------------------------------------

# The keys dask-jobqueue 0.9 reads for these systems (its own jobqueue.yaml): a key
# outside this set is a typo that dask-jobqueue would ignore without a word.
JOBQUEUE_COMMON_KEYS = {
    "name", "cores", "memory", "processes", "python", "interface", "death-timeout",
    "local-directory", "shared-temp-directory", "extra", "worker-command",
    "worker-extra-args", "shebang", "queue", "account", "project", "walltime", "env-extra",
    "job-script-prologue", "job-extra", "job-extra-directives", "job-directives-skip",
    "log-directory", "scheduler-options",
}  # fmt: skip
JOBQUEUE_KEYS = {
    "slurm": JOBQUEUE_COMMON_KEYS | {"job-cpu", "job-mem"},
    "pbs": JOBQUEUE_COMMON_KEYS | {"resource-spec"},
}
BATCH_SCRIPTS = {"slurm": "slurm/tiler.sbatch", "pbs": "pbs/tiler.pbs"}


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_jobqueue_config(system):
    data = load_yaml(f"{system}/jobqueue.yaml")
    assert list(data) == ["jobqueue"] and list(data["jobqueue"]) == [system]
    config = data["jobqueue"][system]
    unknown = set(config) - JOBQUEUE_KEYS[system]
    assert not unknown, f"not dask-jobqueue settings: {unknown}"

    cores, processes = config["cores"], config["processes"]
    assert isinstance(cores, int) and isinstance(processes, int)
    assert cores % processes == 0, "threads per worker = cores / processes"
    assert parse_bytes(config["memory"]) / processes >= 2 * GiB
    assert re.fullmatch(r"\d+:[0-5]\d:[0-5]\d", config["walltime"])
    # Scratch on the node, expanded by the job's shell, never the shared file system.
    assert config["local-directory"] and "$" in config["local-directory"]

    # What dask-jobqueue appends to `dask worker`, parsed by dask worker itself.
    parse_dask(dask_worker_command, ["tcp://scheduler:8786", *config["worker-extra-args"]])
    prologue = "\n".join(config["job-script-prologue"])
    for setting in ("GDAL_NUM_THREADS=1", "OPENCV_FOR_THREADS_NUM=1", "GDAL_CACHEMAX="):
        assert f"export {setting}" in prologue


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_batch_script_is_valid_bash_with_directives_first(system):
    script = CLUSTER / BATCH_SCRIPTS[system]
    subprocess.run(["bash", "-n", str(script)], check=True)
    lines = script.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    prefix = {"slurm": "#SBATCH ", "pbs": "#PBS "}[system]
    directives = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    # sbatch and qsub stop reading directives at the first command.
    assert directives and max(directives) < first_command
    text = "\n".join(lines[i] for i in directives)
    assert {"slurm": "--time=", "pbs": "walltime="}[system] in text


@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_batch_script_runs_tiler_run_with_existing_flags(system, tmp_path):
    """Run the script under bash with a stand-in ``tiler`` and parse what it was given."""
    env_dir = tmp_path / "env"
    (env_dir / "bin").mkdir(parents=True)
    record = tmp_path / "record"
    (env_dir / "bin" / "activate").write_text(f'export PATH="{env_dir}/bin:$PATH"\n')
    fake = env_dir / "bin" / "tiler"
    fake.write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}.argv"\nenv > "{record}.env"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    submit_dir = {"slurm": "SLURM_SUBMIT_DIR", "pbs": "PBS_O_WORKDIR"}[system]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "SRC": f"{DATA}/ortho.tif",
        "DST": f"{DATA}/out",
        "TILER_ENV": str(env_dir),
        submit_dir: str(ROOT),
    }
    script = str(CLUSTER / BATCH_SCRIPTS[system])
    done = subprocess.run(["bash", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    argv = ["tiler", *record.with_suffix(".argv").read_text().splitlines()]
    assert argv[2:4] == [f"{DATA}/ortho.tif", f"{DATA}/out"]
    params = parse_tiler_run(argv)
    assert params["cluster"] == system
    assert params["workers"] >= 1
    assert params["resume"] is True

    seen = dict(
        line.split("=", 1)
        for line in record.with_suffix(".env").read_text().splitlines()
        if "=" in line
    )
    assert Path(seen["DASK_CONFIG"]) == CLUSTER / system
    assert (Path(seen["DASK_CONFIG"]) / "jobqueue.yaml").is_file()
    assert seen["GDAL_NUM_THREADS"] == "1" and seen["OPENCV_FOR_THREADS_NUM"] == "1"

    # Without SRC the script stops with a message and never calls tiler.
    record.with_suffix(".argv").unlink()
    env.pop("SRC")
    done = subprocess.run(["bash", script], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode != 0 and "SRC" in done.stderr
    assert not record.with_suffix(".argv").exists()


def test_batch_scripts_and_image_agree_on_gdal_settings():
    expected = dockerfile_env()
    sources = [(CLUSTER / s).read_text(encoding="utf-8") for s in BATCH_SCRIPTS.values()]
    sources += ["\n".join(load_yaml(f"{s}/jobqueue.yaml")["jobqueue"][s]["job-script-prologue"])
                for s in BATCH_SCRIPTS]  # fmt: skip
    for text in sources:
        for key in ("GDAL_NUM_THREADS", "GDAL_CACHEMAX", "OPENCV_FOR_THREADS_NUM"):
            assert f"export {key}={expected[key]}" in text, key


# A stand-in batch system: `sbatch`/`qsub` run the job script on this machine in a
# session of its own and answer with its process id as the job id, which
# `scancel`/`qdel` end. Everything else (tiler, dask-jobqueue, the job scripts
# it writes from jobqueue.yaml, dask worker) is real.
STAND_IN_SUBMIT = """#!{python}
import shutil, subprocess, sys, tempfile
jobs = {jobs!r}
copy = tempfile.mkstemp(suffix=".sh", dir=jobs)[1]
shutil.copy(sys.argv[-1], copy)  # the caller deletes its script once we return
with open(copy + ".log", "w") as log:
    job = subprocess.Popen(
        ["bash", copy], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
with open(jobs + "/ids", "a") as ids:
    ids.write(f"{{job.pid}}\\n")
print(f"Submitted batch job {{job.pid}}")
"""
STAND_IN_CANCEL = """#!{python}
import os, signal, sys
for job in sys.argv[1:]:
    try:
        os.killpg(int(job.split(".")[0]), signal.SIGTERM)
    except ProcessLookupError:
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("system", ["slurm", "pbs"])
def test_batch_script_runs_tiler_on_jobqueue_workers(system, tmp_path):
    """The driver script end to end, with only the batch system standing in."""
    submit, cancel = {"slurm": ("sbatch", "scancel"), "pbs": ("qsub", "qdel")}[system]
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in ((submit, STAND_IN_SUBMIT), (cancel, STAND_IN_CANCEL)):
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable, jobs=str(jobs)))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    src = write_geotiff(SyntheticField(height=600, width=600, seed=3), tmp_path / "field.tif")
    dst = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}",
        "SRC": str(src),
        "DST": str(dst),
        "WORKERS": "2",
        "TILER_ENV": str(Path(sys.executable).parent.parent),
        {"slurm": "SLURM_SUBMIT_DIR", "pbs": "PBS_O_WORKDIR"}[system]: str(tmp_path),
        "DASK_CONFIG": str(CLUSTER / system),
        # The scheduler and the workers on loopback: this machine is the whole cluster.
        f"DASK_JOBQUEUE__{system.upper()}__INTERFACE": "lo",
    }
    script = str(CLUSTER / BATCH_SCRIPTS[system])
    try:
        done = subprocess.run(
            ["bash", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
    finally:  # whatever happened, no worker job outlives the test
        ids = (jobs / "ids").read_text().split() if (jobs / "ids").exists() else []
        for job in ids:
            try:
                os.killpg(int(job), signal.SIGKILL)
            except ProcessLookupError:
                pass
    logs = "\n".join(p.read_text() for p in sorted(jobs.glob("*.log")))
    assert done.returncode == 0, done.stdout + done.stderr + logs

    # WORKERS=2 with `processes: 2` per job: one worker job, as jobqueue.yaml describes it.
    config = load_yaml(f"{system}/jobqueue.yaml")["jobqueue"][system]
    cores, processes = config["cores"], config["processes"]
    (job_script,) = sorted(jobs.glob("*.sh"))
    text = job_script.read_text()
    expected = {
        "slurm": [f"#SBATCH -t {config['walltime']}", f"#SBATCH --cpus-per-task={cores}"],
        "pbs": [f"#PBS -l walltime={config['walltime']}", f"ncpus={cores}"],
    }[system]
    expected += [f"--nthreads {cores // processes}", f"--nworkers {processes}", "--no-dashboard"]
    expected += ["export GDAL_NUM_THREADS=1", "--interface lo"]
    for line in expected:
        assert line in text, line
    # The run's workers are the job's processes.
    assert logs.count("Registered to:") == processes, logs

    manifest = json.loads((dst / "run.json").read_text())
    assert manifest["complete"] is True
    reference = tmp_path / "reference"
    run = subprocess.run(
        [sys.executable, "-m", "tiler.cli", "run", str(src), str(reference), "--scheduler", "sync"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (
        manifest["object_count"] == json.loads((reference / "run.json").read_text())["object_count"]
    )
