"""The Bucket seam on Azure Blob Storage (the SDK ``azure-storage-blob``, the extra
``regplan[azure]``).

What Azure proves: a listing gives each blob's size, Last-Modified, ETag (an
opaque version: every write changes it) and, for a blob written in one Put Blob
(every link the registry writes) or uploaded with one, its Content-MD5; a
server-side copy keeps the Content-MD5. A blob the registry wrote block by block
(a layer) has none: its size and its content-addressed name are what identify it.
Conditional writes: ``If-None-Match: *`` to create, ``If-Match`` to replace or
delete (the lock's compare-and-swap), ``x-ms-source-if-match`` to copy only the
version listed.

A copy is Copy Blob: within one account it is usually done when it answers, and
else pending; :meth:`AzureBucket.copy` waits until the copy succeeded (any size,
up to Azure's limits) and fails on an aborted or failed copy, so nothing is
deleted before its copy is whole. Deletes go 256 to a Blob Batch request.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, Protocol

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Exists, Obj, ObjectStorage

PAGE = 5000
"""Blobs per List Blobs page: what Azure serves at most."""
DELETE_BATCH = 256
"""Blobs per Blob Batch request (Azure's limit)."""
COPY_WAIT = 3600.0
"""Seconds a pending copy may take before regplan gives up on it (and keeps the source)."""

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.storage.blob import BlobPrefix, BlobProperties, ContainerClient

    HAVE_SDK = True
except ImportError:  # pragma: no cover (the extra is not installed)
    HAVE_SDK = False


class Signer(Protocol):
    """How requests are signed (place.Credential)."""

    @property
    def kind(self) -> str: ...
    @property
    def secret(self) -> str: ...
    @property
    def client_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...


class Where(ObjectStorage, Protocol):
    """What the client needs of place.AzureStorage (which opens this module)."""

    @property
    def account(self) -> str: ...
    @property
    def container(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def credential(self) -> Signer: ...


class AzureBucket:
    """The Bucket seam on one container client (thread safe)."""

    def __init__(self, storage: Where, client: Any = None) -> None:
        self.storage = storage
        self._client = client if client is not None else _client(storage)

    def url(self, key: str) -> str:
        return self.storage.url(key)

    def _fail(self, what: str, key: str, e: Exception) -> StorageError:
        return StorageError(f"{self.url(key)}: cannot {what}: {_reason(e)}")

    def _obj(self, n: int, b: BlobProperties) -> Obj:
        md5 = b.content_settings.content_md5 if b.content_settings else None
        return Obj(
            rel=b.name[n:],
            size=int(b.size or 0),
            etag=str(b.etag).strip('"'),
            mtime=b.last_modified.timestamp(),
            content=bytes(md5).hex() if md5 else None,
        )

    def objects(self, prefix: str) -> Iterator[Obj]:
        n = len(prefix)
        try:
            pages = self._client.list_blobs(name_starts_with=prefix, results_per_page=PAGE)
            for page in pages.by_page():
                yield from (self._obj(n, b) for b in page)
        except AzureError as e:
            raise self._fail("list", prefix, e) from None

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        n = len(prefix)
        names: list[str] = []
        files: list[Obj] = []
        try:
            for item in self._client.walk_blobs(
                name_starts_with=prefix, delimiter="/", results_per_page=PAGE
            ):
                if isinstance(item, BlobPrefix):
                    names.append(item.name[n:].rstrip("/"))
                else:
                    files.append(self._obj(n, item))
        except AzureError as e:
            raise self._fail("list", prefix, e) from None
        return names, files

    seeks = False

    def page(self, prefix: str, after: str) -> None:
        """List Blobs' ``startFrom`` is a newer service feature (Azurite ignores it):
        regplan lists by prefix here."""
        del prefix, after

    def get(self, key: str, limit: int | None = None) -> bytes:
        out = io.BytesIO()
        self.get_to(key, out, limit)
        return out.getvalue()

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        try:
            stream = self._client.download_blob(key, offset=0, length=limit, max_concurrency=1)
            stream.readinto(f)
            etag = stream.properties.etag
        except ResourceNotFoundError:
            raise FileNotFoundError(key) from None
        except AzureError as e:
            if _status(e) != 416:
                raise self._fail("read", key, e) from None
            etag = self._empty(key)  # no byte 0: the blob is empty
        return str(etag).strip('"')

    def _empty(self, key: str) -> str:
        """The ETag of a blob a ranged read found empty (it may have gone since)."""
        try:
            return str(self._client.get_blob_client(key).get_blob_properties().etag)
        except ResourceNotFoundError:
            raise FileNotFoundError(key) from None
        except AzureError as e:
            raise self._fail("read", key, e) from None

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        condition: dict[str, Any] = {}
        if if_match is not None:
            condition = {"etag": f'"{if_match}"', "match_condition": MatchConditions.IfNotModified}
        try:
            blob = self._client.get_blob_client(key)
            r = blob.upload_blob(data, overwrite=not new, **condition)
        except (ResourceExistsError, ResourceModifiedError):
            raise Exists(key) from None
        except ResourceNotFoundError:
            if if_match is not None:
                raise Exists(key) from None
            raise
        except AzureError as e:
            if _status(e) == 412 and (new or if_match is not None):
                raise Exists(key) from None
            raise self._fail("write", key, e) from None
        return str(r["etag"]).strip('"')

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        """Copy Blob from ``src``'s URL (same account: the request's own credential
        authorizes the read), then wait while it is pending. A copy done when it
        answers (one request) answers with the new blob's ETag and Last-Modified. With
        ``if_match``, only from the source of that ETag (``x-ms-source-if-match``), else
        Exists."""
        condition: dict[str, Any] = {}
        if if_match is not None:
            condition = {
                "source_etag": f'"{if_match}"',
                "source_match_condition": MatchConditions.IfNotModified,
            }
        source = self._client.get_blob_client(src).url
        target = self._client.get_blob_client(dst)
        try:
            r = target.start_copy_from_url(source, **condition)
            etag, when, status = r.get("etag"), r.get("last_modified"), r.get("copy_status")
            waited, pause = 0.0, 0.05
            while status == "pending":
                if waited > COPY_WAIT:
                    target.abort_copy(r["copy_id"])
                    raise StorageError(f"{self.url(src)}: copy to {dst} still pending after 1 h")
                time.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, 5.0)
                props = target.get_blob_properties()
                etag, when, status = props.etag, props.last_modified, props.copy.status
        except (ResourceModifiedError, ResourceNotFoundError) as e:
            if if_match is not None:
                raise Exists(src) from None
            raise self._fail(f"copy to {dst}", src, e) from None
        except AzureError as e:
            if _status(e) == 412 and if_match is not None:
                raise Exists(src) from None
            raise self._fail(f"copy to {dst}", src, e) from None
        if status != "success" or when is None:
            raise StorageError(f"{self.url(src)}: copy to {dst} ended {status}")
        return str(etag).strip('"'), when.timestamp()

    def delete(self, keys: Iterable[str]) -> int:
        todo = list(keys)
        for start in range(0, len(todo), DELETE_BATCH):
            self._delete_batch(todo[start : start + DELETE_BATCH])
        return len(todo)

    def _delete_batch(self, chunk: list[str]) -> None:
        try:
            answers = self._client.delete_blobs(*chunk, raise_on_any_failure=False)
        except AzureError as e:
            raise self._fail("delete", chunk[0], e) from None
        failed = [
            (k, r.status_code) for k, r in zip(chunk, answers, strict=True) if r.status_code >= 300
        ]
        failed = [(k, s) for k, s in failed if s != 404]  # gone already: what was asked
        if failed:
            key, status = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise StorageError(f"{self.url(key)}: cannot delete: HTTP {status}{more}")

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        condition: dict[str, Any] = {}
        if if_match is not None:
            condition = {"etag": f'"{if_match}"', "match_condition": MatchConditions.IfNotModified}
        try:
            self._client.delete_blob(key, **condition)
        except ResourceModifiedError:
            raise Exists(key) from None
        except ResourceNotFoundError:
            if if_match is not None:
                raise Exists(key) from None
        except AzureError as e:
            if _status(e) == 412 and if_match is not None:
                raise Exists(key) from None
            raise self._fail("delete", key, e) from None

    def check(self) -> None:
        try:
            self._client.get_container_properties()
        except Exception as e:  # noqa: BLE001 (any client error is one line)
            raise StorageError(
                f"{self.url('').rstrip('/')}: cannot reach the container: {_reason(e)}"
            ) from None


def _status(e: Exception) -> int | None:
    return e.status_code if isinstance(e, HttpResponseError) else None


def _reason(e: Exception) -> str:
    if isinstance(e, HttpResponseError):
        code = getattr(e, "error_code", None) or ""
        return f"HTTP {e.status_code} {code}".strip() if e.status_code else str(code or e.reason)
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _client(storage: Where) -> Any:
    if not HAVE_SDK:
        raise StorageError("Azure storage needs its client: pip install 'regplan[azure]'")
    import requests  # noqa: PLC0415
    from azure.core.pipeline.transport import RequestsTransport  # noqa: PLC0415

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    options: dict[str, Any] = {
        "transport": RequestsTransport(session=session, session_owner=True),
        "retry_total": 5,
        "retry_connect": 1,  # nothing listens: say so in seconds, not minutes
    }
    c = storage.credential
    if c.kind == "connection_string":
        return ContainerClient.from_connection_string(c.secret, storage.container, **options)
    credential: Any
    if c.kind == "shared_key":
        credential = {"account_name": storage.account, "account_key": c.secret}
    elif not storage.endpoint.lower().startswith("https://"):
        raise StorageError(
            f"{storage.endpoint}: no account key or connection string for this plain-HTTP "
            "endpoint (Azure takes a token credential over HTTPS only): give the registry's "
            "config with --config, or set AZURE_STORAGE_CONNECTION_STRING, or "
            "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY"
        )
    else:
        credential = _token_credential(c.kind, c.client_id, c.tenant_id, c.secret)
    try:
        return ContainerClient(
            storage.endpoint, storage.container, credential=credential, **options
        )
    except ValueError as e:  # the SDK's word on a URL or credential it will not use
        raise StorageError(f"{storage.endpoint}: {_reason(e)}") from None


def _token_credential(kind: str, client_id: str, tenant_id: str, secret: str) -> Any:
    try:
        from azure.identity import ClientSecretCredential, DefaultAzureCredential  # noqa: PLC0415
    except ImportError:
        raise StorageError(
            "Azure storage without a key needs azure-identity: pip install 'regplan[azure]'"
        ) from None
    if kind == "client_secret":
        return ClientSecretCredential(tenant_id, client_id, secret)
    return DefaultAzureCredential()
