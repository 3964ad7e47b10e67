"""The Bucket seam on Google Cloud Storage (``google-cloud-storage``, the extra
``regplan[gcs]``; its JSON API).

What GCS proves: a listing gives each object's size, ``updated`` time, generation
(a number every write changes: regplan's etag) and its ``md5Hash`` (absent for a
composite object, which has its ``crc32c`` only); a rewrite keeps both hashes.
Conditional writes: ``ifGenerationMatch=0`` creates only where there is no object,
``ifGenerationMatch=N`` replaces or deletes only generation N (412 otherwise), and a
rewrite with ``ifSourceGenerationMatch=N`` copies only generation N. A listing can
begin at a key (``startOffset``).

A copy is a rewrite, repeated with its token until done: GCS copies any size so,
in as many calls as it takes. Deletes go 100 to a batch request (GCS bills each as an
operation all the same).
Every request is retried on a dropped connection or a 429/5xx: Google's client
retries a write only under a precondition by default, but a copy or an
unconditional write of regplan's repeats to the same end.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Protocol

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Exists, Obj, ObjectStorage

PAGE = 1000
"""Objects per list page: what GCS serves at most."""
DELETE_BATCH = 100
"""Deletes per batch request (the JSON API takes at most 100 calls in one)."""
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"

try:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import storage as gcs
    from google.cloud.storage.retry import DEFAULT_RETRY

    HAVE_SDK = True
    FAILURES: tuple[type[Exception], ...] = (
        gexc.GoogleAPIError,  # an answer, or retries that ran out (RetryError)
        requests.RequestException,
        GoogleAuthError,
    )
except ImportError:  # pragma: no cover (the extra is not installed)
    HAVE_SDK = False


class Where(ObjectStorage, Protocol):
    """What the client needs of place.GcsStorage (which opens this module)."""

    @property
    def bucket(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def keyfile(self) -> str | None: ...
    @property
    def info(self) -> Mapping[str, Any] | None: ...


class GcsBucket:
    """The Bucket seam on one client (thread safe)."""

    def __init__(self, storage: Where, client: Any = None) -> None:
        self.storage = storage
        self._client = client if client is not None else _client(storage)
        self._bucket = self._client.bucket(storage.bucket)
        self.seeks = True
        """Whether the server begins a listing at ``startOffset`` (GCS does; its emulator
        does not: found out at the first listing)."""
        self._batcher: Any = None
        """The client of batch deletes (made at the first)."""
        self._batching = threading.Lock()

    def url(self, key: str) -> str:
        return self.storage.url(key)

    def _fail(self, what: str, key: str, e: Exception) -> StorageError:
        return StorageError(f"{self.url(key)}: cannot {what}: {_reason(e)}")

    def _obj(self, n: int, b: Any) -> Obj:
        content = None
        if b.md5_hash:
            content = base64.b64decode(b.md5_hash).hex()
        elif b.crc32c:
            content = f"crc32c:{b.crc32c}"
        return Obj(
            rel=b.name[n:],
            size=int(b.size or 0),
            etag=str(b.generation),
            mtime=b.updated.timestamp(),
            content=content,
        )

    def objects(self, prefix: str) -> Iterator[Obj]:
        n = len(prefix)
        try:
            for b in self._client.list_blobs(self._bucket, prefix=prefix, page_size=PAGE):
                yield self._obj(n, b)
        except FAILURES as e:
            raise self._fail("list", prefix, e) from None

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        n = len(prefix)
        try:
            found = self._client.list_blobs(
                self._bucket, prefix=prefix, delimiter="/", page_size=PAGE
            )
            files = [self._obj(n, b) for b in found]
        except FAILURES as e:
            raise self._fail("list", prefix, e) from None
        return sorted(p[n:].rstrip("/") for p in found.prefixes), files

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool] | None:
        """One list request from ``after`` on (``startOffset``, which includes it); None
        once a server is seen to ignore the offset (an emulator), as from then on."""
        if not self.seeks:
            return None
        n = len(prefix)
        try:
            found = self._client.list_blobs(
                self._bucket, prefix=prefix, start_offset=after, page_size=PAGE
            )
            first = next(found.pages, None)
            listed = [] if first is None else [self._obj(n, b) for b in first]
        except FAILURES as e:
            raise self._fail("list", prefix, e) from None
        if any(prefix + o.rel < after for o in listed):
            self.seeks = False
            return None
        return [o for o in listed if prefix + o.rel != after], found.next_page_token is not None

    def get(self, key: str, limit: int | None = None) -> bytes:
        end = None if limit is None else limit - 1
        try:
            data: bytes = self._bucket.blob(key).download_as_bytes(start=0, end=end)
        except gexc.RequestRangeNotSatisfiable:
            return b""  # no byte 0: the object is empty
        except gexc.NotFound:
            raise FileNotFoundError(key) from None
        except FAILURES as e:
            raise self._fail("read", key, e) from None
        return data

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        """The bytes of one generation, and that generation (its metadata first, then its
        bytes on the condition that it is still the one)."""
        end = None if limit is None else limit - 1
        for _ in range(3):
            try:
                blob = self._bucket.get_blob(key)
                if blob is None:
                    raise FileNotFoundError(key)
                generation = blob.generation
                out = io.BytesIO()
                if blob.size:  # a range of an empty object is not satisfiable
                    blob.download_to_file(out, start=0, end=end, if_generation_match=generation)
            except gexc.PreconditionFailed:
                continue  # rewritten between the two requests: again
            except gexc.NotFound:
                raise FileNotFoundError(key) from None
            except FAILURES as e:
                raise self._fail("read", key, e) from None
            f.write(out.getvalue())
            return str(generation)
        raise StorageError(f"{self.url(key)}: cannot read: it changes at every read")

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        condition = 0 if new else (None if if_match is None else int(if_match))
        blob = self._bucket.blob(key)
        try:
            if isinstance(data, bytes):
                blob.upload_from_string(data, if_generation_match=condition, retry=DEFAULT_RETRY)
            else:
                blob.upload_from_file(data, if_generation_match=condition, retry=DEFAULT_RETRY)
        except (gexc.PreconditionFailed, gexc.NotFound) as e:
            if condition is not None:
                raise Exists(key) from None
            raise self._fail("write", key, e) from None
        except FAILURES as e:
            raise self._fail("write", key, e) from None
        return str(blob.generation)

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        """Rewrite ``src`` to ``dst``, call after call until GCS says it is done; with
        ``if_match``, only from that generation of ``src`` (``ifSourceGenerationMatch``),
        else Exists."""
        target = self._bucket.blob(dst)
        condition = None if if_match is None else int(if_match)
        token = None
        try:
            while True:
                token, _, _ = target.rewrite(
                    self._bucket.blob(src),
                    token=token,
                    if_source_generation_match=condition,
                    retry=DEFAULT_RETRY,
                )
                if token is None:
                    break
        except (gexc.PreconditionFailed, gexc.NotFound) as e:
            if condition is not None:
                raise Exists(src) from None
            raise self._fail(f"copy to {dst}", src, e) from None
        except FAILURES as e:
            raise self._fail(f"copy to {dst}", src, e) from None
        return str(target.generation), target.updated.timestamp()

    def delete(self, keys: Iterable[str]) -> int:
        """Many keys, DELETE_BATCH to a batch request, on a client of their own (a batch
        is its client's: any other request on it meanwhile would join the batch)."""
        todo = list(keys)
        with self._batching:
            if todo and self._batcher is None:
                self._batcher = _client(self.storage)
            for start in range(0, len(todo), DELETE_BATCH):
                self._delete_batch(todo[start : start + DELETE_BATCH])
        return len(todo)

    def _delete_batch(self, chunk: list[str]) -> None:
        client = self._batcher
        try:
            with client.batch(raise_exception=False) as batch:
                bucket = client.bucket(self.storage.bucket)
                for key in chunk:
                    bucket.delete_blob(key)
        except FAILURES as e:
            raise self._fail("delete", chunk[0], e) from None
        answers = batch._responses  # what finish() returned: one answer per delete
        failed = [(k, r.status_code) for k, r in zip(chunk, answers, strict=True)]
        failed = [(k, s) for k, s in failed if s >= 300 and s != 404]  # 404: gone already
        if failed:
            key, status = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise StorageError(f"{self.url(key)}: cannot delete: HTTP {status}{more}")

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        condition = None if if_match is None else int(if_match)
        try:
            self._bucket.blob(key).delete(if_generation_match=condition, retry=DEFAULT_RETRY)
        except (gexc.PreconditionFailed, gexc.NotFound):
            if condition is not None:
                raise Exists(key) from None  # another generation, or none: not ours
        except FAILURES as e:
            raise self._fail("delete", key, e) from None

    def check(self) -> None:
        try:
            self._bucket.reload()
        except Exception as e:  # noqa: BLE001 (any client or credentials error is one line)
            where = self.url("").rstrip("/")
            raise StorageError(f"{where}: cannot reach the bucket: {_reason(e)}") from None


def _reason(e: Exception) -> str:
    if HAVE_SDK and isinstance(e, gexc.GoogleAPICallError):
        lines = str(e.message or "").strip().splitlines()
        return f"HTTP {e.code} {lines[0] if lines else ''}".strip()
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _client(storage: Where) -> Any:
    if not HAVE_SDK:
        raise StorageError("GCS storage needs its client: pip install 'regplan[gcs]'")
    from google.auth.credentials import AnonymousCredentials  # noqa: PLC0415
    from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415
    from requests.adapters import HTTPAdapter  # noqa: PLC0415

    options: dict[str, Any] = {}
    if storage.endpoint:  # an emulator: unsigned, as Google's clients do there
        credentials: Any = AnonymousCredentials()  # type: ignore[no-untyped-call]
        project: str | None = "regplan"
        options["client_options"] = {"api_endpoint": storage.endpoint}
    else:
        try:
            credentials, project = _credentials(storage)
        except Exception as e:  # noqa: BLE001 (a bad key file or no credentials: one line)
            raise StorageError(f"{storage.root}: no usable GCS credentials: {_reason(e)}") from None
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    session.mount("https://", HTTPAdapter(pool_connections=32, pool_maxsize=32))
    session.mount("http://", HTTPAdapter(pool_connections=32, pool_maxsize=32))
    return gcs.Client(project=project, credentials=credentials, _http=session, **options)


def _credentials(storage: Where) -> tuple[Any, str | None]:
    from google.oauth2 import service_account  # noqa: PLC0415

    if storage.info is not None:
        creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            dict(storage.info), scopes=[SCOPE]
        )
        return creds, storage.info.get("project_id")
    if storage.keyfile:
        creds = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            storage.keyfile, scopes=[SCOPE]
        )
        return creds, creds.project_id
    import google.auth  # noqa: PLC0415

    found, project = google.auth.default(scopes=[SCOPE])
    return found, project
