"""
An S3-compatible server of the tests' own: moto's standalone server (``python -m moto.server``) in its own
process on a free loopback port, with IAM authentication on, so wrong credentials are refused as S3 would.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.services import free_port, service_available

REGION = "us-east-1"
# moto lets the first requests through unauthenticated: the three that create the tests' user and key.
_UNAUTHENTICATED_SETUP_REQUESTS = 3
_ALLOW_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str


class S3Server:
    """
    ``start()`` it, then :attr:`credentials` work and anything else is refused (unless ``authenticate`` is
    off: libcloud's S3 signatures, which ERB's ``transform_tracking_logs`` sends, do not satisfy moto's check).
    """

    def __init__(self, directory: Path, *, authenticate: bool = True):
        self.directory = directory
        self.authenticate = authenticate
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.credentials: Credentials | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.directory / "moto.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env={"PATH": "/usr/bin:/bin"}
            | ({"INITIAL_NO_AUTH_ACTION_COUNT": str(_UNAUTHENTICATED_SETUP_REQUESTS)} if self.authenticate else {}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not service_available("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not start: {(self.directory / 'moto.log').read_text()}")
            time.sleep(0.1)
        iam = self._client("iam", Credentials("setup", "setup"))
        iam.create_user(UserName="history")
        iam.put_user_policy(UserName="history", PolicyName="s3", PolicyDocument=json.dumps(_ALLOW_S3))
        key = iam.create_access_key(UserName="history")["AccessKey"]
        self.credentials = Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def client(self):
        """An S3 client with the good credentials."""
        return self._client("s3", self.credentials)

    def _client(self, service: str, credentials: Credentials):
        import boto3

        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
        )

    def environment(self) -> dict[str, str]:
        """What a process needs to find the server and its credentials (boto3's usual variables)."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.url,
        }

    def bucket_of_logs(self, bucket: str, logs: dict[str, list[str]]) -> None:
        """A bucket holding one object per key: its lines, gzipped when the key ends in ``.gz``."""
        s3 = self.client()
        s3.create_bucket(Bucket=bucket)
        for key, lines in logs.items():
            body = "".join(line + "\n" for line in lines).encode()
            s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if key.endswith(".gz") else body)


def rotated_logs(lines: list[str], prefix: str, days: list[str]) -> dict[str, list[str]]:
    """``lines`` cut into one rotated, gzipped log per day (``prefix`` + ``tracking.log-YYYYMMDD.gz``)."""
    size = -(-len(lines) // len(days))
    return {
        f"{prefix}tracking.log-{day.replace('-', '')}.gz": lines[i * size : (i + 1) * size]
        for i, day in enumerate(days)
    }
