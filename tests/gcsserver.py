"""A GCS service for tests: ``gcp-storage-emulator`` (PyPI) on 127.0.0.1, one bucket
per test, and helpers that move a filesystem registry tree into a bucket key for key
(as the registry's gcs driver lays it out: rootdirectory + path) and read a bucket
back, through Google's own client (not through regplan's bucket).

The emulator answers the JSON API regplan uses (list, media and multipart uploads,
ranged downloads, rewrite, delete) but ignores preconditions: a write with
``ifGenerationMatch`` always succeeds. The server started here runs it with the one
rules GCS documents added, under one lock: an upload or delete whose
``ifGenerationMatch`` is not the object's generation (0: no object), or a rewrite whose
``ifSourceGenerationMatch`` is not its source's, answers 412. Without
it the lock's compare-and-swap could not be tested at all. What is tested here is
what the registry wrote on a filesystem, copied in: the v3 gcs driver cannot push
offline (its uploads go to Google's host whatever the emulator)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regplan.storage.gcs.place import GcsStorage
from tests import procs

SERVE = """
import sys, threading
from http import HTTPStatus
from gcp_storage_emulator import server
from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage

LOCK = threading.Lock()

# In memory, the emulator writes every object's metadata out as JSON after each change
# (time growing with all the objects the session's tests made) and reads it only when
# it starts, which a server in memory never does again: the write is skipped.
Storage._write_config_to_file = lambda self: None

def generation(storage, bucket, name):
    try:
        return int(storage.get_file_obj(bucket, name)["generation"])
    except NotFound:
        return 0

def upload_name(request):
    if "name" in request.query:
        return request.query["name"][0]
    data = request.data
    if isinstance(data, dict):
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else data
        return meta.get("name")
    return None

def conditional(handler, name_of):
    def wrapped(request, response, storage, *args, **kwargs):
        with LOCK:
            want = request.query.get("ifGenerationMatch")
            name = name_of(request) if want else None
            bucket = request.params["bucket_name"]
            if name is not None and generation(storage, bucket, name) != int(want[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                return None
            return handler(request, response, storage, *args, **kwargs)
    return wrapped

def source_conditional(handler):
    def wrapped(request, response, storage, *args, **kwargs):
        with LOCK:
            want = request.query.get("ifSourceGenerationMatch")
            bucket, name = request.params["bucket_name"], request.params["object_id"]
            if want and generation(storage, bucket, name) != int(want[0]):
                response.status = HTTPStatus.PRECONDITION_FAILED
                return None
            return handler(request, response, storage, *args, **kwargs)
    return wrapped

insert = conditional(objects.insert, upload_name)
delete = conditional(objects.delete, lambda r: r.params["object_id"])
rewrite = source_conditional(objects.rewrite)
for _, handlers in server.HANDLERS:
    for method, handler in list(handlers.items()):
        if handler is objects.insert:
            handlers[method] = insert
        elif handler is objects.delete:
            handlers[method] = delete
        elif handler is objects.rewrite:
            handlers[method] = rewrite
objects.insert = insert
server.create_server(sys.argv[1], int(sys.argv[2]), in_memory=True).run()
"""


def require_emulator() -> None:
    try:
        import gcp_storage_emulator  # noqa: F401
        import google.cloud.storage  # noqa: F401
    except ImportError:
        message = "GCS tests need gcp-storage-emulator and google-cloud-storage (.[test])"
        if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
            pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
        pytest.skip(message)


class GcsEmulator:
    """The emulator, with preconditions, on a free port."""

    def __init__(self, work: Path) -> None:
        from tests.integration.realreg import free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = work / f"gcs-{self.port}.log"
        self.proc: procs.Proc | None = None
        self._n = 0

    def start(self) -> None:
        args = [sys.executable, "-c", SERVE, "127.0.0.1", str(self.port)]
        self.proc = procs.start(args, self.log, f"{self.endpoint}/storage/v1/b", wait=30)

    def stop(self) -> None:
        procs.stop(self.proc)

    def storage(self, *, root: str = "registry") -> GcsStorage:
        """A new bucket and the storage in it."""
        self._n += 1
        s = GcsStorage(bucket=f"reg{self._n}", rootdirectory=root, endpoint=self.endpoint)
        client(s).create_bucket(s.bucket)
        return s

    def env(self) -> dict[str, str]:
        """What a regplan subprocess needs to reach this emulator with ``--root gs://``."""
        return {**os.environ, "STORAGE_EMULATOR_HOST": self.endpoint}


def client(storage: GcsStorage) -> Any:
    """Google's own client on the emulator (the tests' view, apart from regplan's)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    return gcs.Client(
        project="test",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": storage.endpoint},
    )


def upload_tree(root: Path, storage: GcsStorage) -> int:
    """Every file of a filesystem registry's rootdirectory as objects, key for key."""
    bucket = client(storage).bucket(storage.bucket)
    n = 0
    for path in sorted((root / "docker").rglob("*")):
        if path.is_file():
            key = storage.key(path.relative_to(root).as_posix())
            bucket.blob(key).upload_from_string(path.read_bytes())
            n += 1
    return n


def download_tree(storage: GcsStorage, root: Path) -> int:
    """The bucket's registry tree as a filesystem rootdirectory (what the filesystem
    driver would hold), so a registry can serve it."""
    c = client(storage)
    prefix = storage.key("")
    n = 0
    for b in c.list_blobs(storage.bucket, prefix=storage.key("docker/")):
        path = root / b.name[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b.download_as_bytes())
        n += 1
    return n


def objects(storage: GcsStorage, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
    """key -> (size, md5Hash, CRC32C) under ``prefix``: the service's hashes of the
    bytes (the emulator computes both from what it stores)."""
    c = client(storage)
    out = {}
    for b in c.list_blobs(storage.bucket, prefix=storage.key(prefix)):
        out[b.name] = (int(b.size), str(b.md5_hash), str(b.crc32c))
    return out


def put(storage: GcsStorage, rel: str, data: bytes) -> None:
    client(storage).bucket(storage.bucket).blob(storage.key(rel)).upload_from_string(data)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    require_emulator()
    server = GcsEmulator(tmp_path_factory.mktemp("gcs"))
    server.start()
    yield server
    server.stop()
