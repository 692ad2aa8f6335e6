"""A real S3 API server for the tests: moto in server mode on 127.0.0.1, credentials enforced.

moto's server answers the S3 API as a bucket service does, over HTTP, to any
process (the tests' own, tiler's CLI, dask workers); ``INITIAL_NO_AUTH_ACTION_COUNT``
lets the first three requests make an IAM user and its key, and every request
after must be signed by a key the server knows and allowed by the user's policy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``python -m moto.server`` on a free port of 127.0.0.1, with credentials enforced."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / f"moto-{self.port}.log").open("w")
        # Three requests without credentials (the IAM user, its key, its policy); then every
        # request must be signed by a key the server knows.
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, "moto server exited"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.1)
        iam = self._client("iam", "unsigned", "unsigned")
        # The tests' own user may also make other users (user()).
        self.key_id, self.secret = self._user(iam, "tiler", ["s3:*", "iam:*"])
        self.s3 = self._client("s3", self.key_id, self.secret)

    def user(self, name: str, actions: list[str]) -> tuple[str, str]:
        """A new user allowed only ``actions`` (``s3:GetObject``, ...): its key id and secret."""
        return self._user(self._client("iam", self.key_id, self.secret), name, actions)

    @staticmethod
    def _user(iam, name: str, actions: list[str]) -> tuple[str, str]:
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        allow = {"Effect": "Allow", "Action": actions, "Resource": "*"}
        policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=policy)
        return key["AccessKeyId"], key["SecretAccessKey"]

    def _client(self, service: str, key_id: str, secret: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def env(self, **changes: str) -> dict[str, str]:
        """The environment of a process reading from this server (nothing else of AWS's)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("DASK_SCHEDULER_ADDRESS", None)
        env.update(
            AWS_ACCESS_KEY_ID=self.key_id,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=self.endpoint,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        env.update(changes)
        return env

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def tiler(*args: object, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``tiler ARGS`` in a new process with ``env``."""
    command = [sys.executable, "-m", "tiler.cli", *map(str, args)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def point_at(server: MotoServer, monkeypatch) -> None:
    """This process (and the workers it starts) pointed at ``server``, nothing else of AWS's."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in server.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
