"""A real Azure Blob service for tests: Azurite (npm ``azurite``, Microsoft's emulator)
on 127.0.0.1, one container per test, and helpers that move a filesystem registry
tree into a container and read a container back, through the Azure SDK itself
(not through regplan's bucket)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from regplan.storage.azure.place import AzureStorage, Credential
from tests import procs

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""The emulator's well-known account and key (public: Azurite's documentation)."""


def binary() -> str | None:
    """``azurite-blob``: $REGPLAN_AZURITE, on PATH, or in a node_modules beside the repo."""
    named = os.environ.get("REGPLAN_AZURITE")
    if named:
        return named
    found = shutil.which("azurite-blob")
    if found:
        return found
    local = Path(__file__).resolve().parents[1] / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else None


def require_azurite() -> str:
    """Skip without Azurite, unless CI demands the real parts."""
    found = binary()
    if found is not None:
        return found
    message = "Azure tests need Azurite (npm install -g azurite)"
    if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
        pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
    pytest.skip(message)


class Azurite:
    """``azurite-blob`` on a free port; its console log has one line per request."""

    def __init__(self, work: Path, exe: str) -> None:
        from tests.integration.realreg import free_port

        self.exe = exe
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/{ACCOUNT}"
        self.work = work
        self.log = work / f"azurite-{self.port}.log"
        self.proc: procs.Proc | None = None
        self._n = 0

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self) -> None:
        data = self.work / f"data-{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        args = [self.exe, "--blobHost", "127.0.0.1", "--blobPort", str(self.port)]
        args += ["--location", str(data), "--skipApiVersionCheck", "--disableTelemetry"]
        self.proc = procs.start(args, self.log, f"{self.endpoint}?comp=list")

    def stop(self) -> None:
        procs.stop(self.proc)

    def requests(self) -> int:
        """Requests answered so far (the access log's lines with a status)."""
        text = self.log.read_text(errors="replace")
        return sum(
            1 for line in text.splitlines() if '" 2' in line or '" 3' in line or '" 4' in line
        )

    def storage(self, *, root: str = "registry") -> AzureStorage:
        """A new container and the storage in it."""
        self._n += 1
        s = AzureStorage(
            account=ACCOUNT,
            container=f"reg{self._n}",
            rootdirectory=root,
            endpoint=self.endpoint,
            credential=Credential(kind="connection_string", secret=self.connection_string),
        )
        client(s).create_container()
        return s

    def env(self) -> dict[str, str]:
        """What a regplan subprocess needs to reach this emulator with ``--root az://``."""
        return {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": self.connection_string}


def client(storage: AzureStorage) -> Any:
    """The SDK's own container client (the tests' view, apart from regplan's)."""
    from azure.storage.blob import ContainerClient

    return ContainerClient.from_connection_string(storage.credential.secret, storage.container)


def upload_tree(root: Path, storage: AzureStorage) -> int:
    """Every file of a filesystem registry's rootdirectory as blobs (what the azure
    driver writes: the same paths, no folders)."""
    c = client(storage)
    n = 0
    for path in sorted((root / "docker").rglob("*")):
        if path.is_file():
            key = storage.key(path.relative_to(root).as_posix())
            c.upload_blob(key, path.read_bytes(), overwrite=True)
            n += 1
    return n


def objects(storage: AzureStorage, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
    """key -> (size, Content-MD5 or "", the bytes' hash) under ``prefix``.

    A blob with a Content-MD5 (the service's hash of what one Put Blob wrote) is not
    read again: its third field is that MD5; another's bytes are read and hashed."""
    c = client(storage)
    out = {}
    for b in c.list_blobs(name_starts_with=storage.key(prefix)):
        md5 = bytes(b.content_settings.content_md5 or b"").hex()
        digest = md5 or hashlib.sha256(c.download_blob(b.name).readall()).hexdigest()
        out[b.name] = (b.size, md5, digest)
    return out


def put(storage: AzureStorage, rel: str, data: bytes) -> None:
    client(storage).upload_blob(storage.key(rel), data, overwrite=True)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    exe = require_azurite()
    pytest.importorskip("azure.storage.blob")
    server = Azurite(tmp_path_factory.mktemp("azurite"), exe)
    server.start()
    yield server
    server.stop()
