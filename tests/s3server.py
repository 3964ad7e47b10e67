"""A real S3 server for tests: moto's standalone server (``moto_server``, PyPI
``moto[server]``) on 127.0.0.1, one bucket per test, and helpers that move a
filesystem registry tree into a bucket and read a bucket back."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regplan.demo.samples import build_demo
from regplan.storage.objects import objscan
from regplan.storage.s3.bucket import Credentials, S3Bucket, S3Storage
from tests import procs

MOTO = "moto_server"
ACCESS, SECRET = "testing", "testing"


def require_moto() -> None:
    """Skip without moto's server, unless CI demands the real parts."""
    if shutil.which(MOTO) is not None:
        return
    message = "S3 tests need moto's server (pip install 'moto[server]')"
    if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
        pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
    pytest.skip(message)


def clean_env() -> dict[str, str]:
    """This process's environment without AWS_* (these machines set AWS_CA_BUNDLE, which
    kills the registry's Go SDK at start-up)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class S3Server:
    """``moto_server -H 127.0.0.1 -p PORT``; its log has one line per request."""

    def __init__(self, work: Path) -> None:
        from tests.integration.realreg import free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = work / f"moto-{self.port}.log"
        self.proc: procs.Proc | None = None
        self._n = 0

    def start(self) -> None:
        args = [MOTO, "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = procs.start(args, self.log, self.endpoint, env=clean_env(), wait=30)

    def stop(self) -> None:
        procs.stop(self.proc)

    def requests(self) -> int:
        """Requests served so far (werkzeug logs one line each)."""
        text = self.log.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if '" 2' in line or '" 3' in line or '" 4' in line
        )

    def storage(self, *, threshold: int | None = None, root: str = "registry") -> S3Storage:
        """A new bucket and the storage in it."""
        self._n += 1
        bucket = f"reg{self._n}"
        s = S3Storage(
            bucket=bucket,
            rootdirectory=root,
            endpoint=self.endpoint,
            region="us-east-1",
            credentials=Credentials(access_key=ACCESS, secret_key=SECRET),
            **({"multipart_threshold": threshold} if threshold else {}),
        )
        client(s).create_bucket(Bucket=bucket)
        return s

    def env(self) -> dict[str, str]:
        """What a regplan subprocess needs to reach this server with ``--root s3://``."""
        return {
            **clean_env(),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_REGION": "us-east-1",
        }


def client(storage: S3Storage) -> Any:
    return S3Bucket(storage)._client


def upload_tree(root: Path, storage: S3Storage) -> int:
    """Every file of a filesystem registry's rootdirectory as keys (what the s3 driver
    writes: the same paths, no folders)."""
    c = client(storage)
    n = 0
    docker = root / "docker"
    for path in sorted(docker.rglob("*")):
        if path.is_file():
            key = storage.key(path.relative_to(root).as_posix())
            c.put_object(Bucket=storage.bucket, Key=key, Body=path.read_bytes())
            n += 1
    return n


def objects(storage: S3Storage, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
    """key -> (size, ETag, SHA-256 of the bytes) under ``prefix`` of the rootdirectory.

    A single-part object's ETag is the MD5 of its bytes: those are not read again
    (their third field is the ETag); a multipart object's bytes are hashed."""
    c = client(storage)
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(
        Bucket=storage.bucket, Prefix=storage.key(prefix), PaginationConfig={"PageSize": 1000}
    ):
        for o in page.get("Contents", ()):
            etag = o["ETag"].strip('"')
            if "-" in etag:
                body = c.get_object(Bucket=storage.bucket, Key=o["Key"])["Body"].read()
                out[o["Key"]] = (o["Size"], etag, hashlib.sha256(body).hexdigest())
            else:
                out[o["Key"]] = (o["Size"], etag, etag)
    return out


def put(storage: S3Storage, rel: str, data: bytes) -> None:
    client(storage).put_object(Bucket=storage.bucket, Key=storage.key(rel), Body=data)


@pytest.fixture(scope="session")
def s3server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    require_moto()
    server = S3Server(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def demo_bucket(s3server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    """The demo registry in a new bucket on moto; the AWS environment points at the server
    and the manifest cache is the test's own."""
    storage = s3server.storage()
    build_demo(tmp_path / "fs")
    upload_tree(tmp_path / "fs", storage)
    for k, v in s3server.env().items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    return storage
