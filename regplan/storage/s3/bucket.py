"""Where an S3-backed registry keeps its data, and the S3 requests of the Bucket seam.

The registry's s3-aws driver writes the filesystem driver's tree key for key
under ``<rootdirectory>/docker/registry/v2/``; a move is a server-side
CopyObject then DeleteObject, never a download (objects/bucket.py).

What S3 proves: a listing gives each key's size, LastModified and ETag; the ETag
of a single-part object is the MD5 of its bytes (and a copy keeps it), a
multipart ETag (``<md5>-<parts>``) proves nothing of them. Conditional writes:
``If-None-Match: *`` and ``If-Match`` on PutObject and DeleteObject, and
``x-amz-copy-source-if-match`` on CopyObject and UploadPartCopy. A listing can begin
after a key (StartAfter).

Only this module imports the S3 client (boto3, the optional extra
``regplan[s3]``); every failure comes out as one line naming the key.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import attrs

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Exists, Obj, Rooted, checked, clean_root

log = logging.getLogger(__name__)

S3Client = Any
"""boto3's client (untyped)."""

SCHEME = "s3://"
PAGE = 1000
"""Keys per ListObjectsV2 page: what S3 serves at most (never ask a server for more)."""
DELETE_BATCH = 1000
"""Keys per DeleteObjects request (S3's limit)."""
COPY_LIMIT = 5 << 30
"""CopyObject's size limit: larger objects need a multipart copy."""
MIN_PART = 5 << 20
"""S3's smallest part (all but the last)."""
ENV_THRESHOLD = "REGPLAN_S3_MULTIPART_THRESHOLD"
"""Bytes above which an object is copied part by part (default: CopyObject's 5 GiB)."""


@attrs.frozen(kw_only=True)
class Credentials:
    access_key: str
    secret_key: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class S3Storage(Rooted):
    """An S3 bucket and the registry's rootdirectory in it. Never holds a secret in what
    it prints or records; the credentials, when given by a config, are kept aside."""

    bucket: str
    rootdirectory: str
    """Without leading or trailing slash; empty for the bucket's top."""
    endpoint: str | None = None
    region: str | None = None
    credentials: Credentials | None = attrs.field(default=None, eq=False, repr=False)
    multipart_threshold: int = COPY_LIMIT

    def url(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"

    def record(self) -> dict[str, str]:
        """Where the storage is, as a plan records it (no secret)."""
        out = {"driver": "s3", "bucket": self.bucket, "rootdirectory": self.rootdirectory}
        if self.endpoint:
            out["endpoint"] = self.endpoint
        if self.region:
            out["region"] = self.region
        return out

    def open(self) -> S3Bucket:
        return S3Bucket(self)


def threshold(env: Mapping[str, str]) -> int:
    value = env.get(ENV_THRESHOLD)
    if not value:
        return COPY_LIMIT
    try:
        n = int(value)
    except ValueError:
        raise StorageError(f"{ENV_THRESHOLD}={value!r} is not a number of bytes") from None
    if not 0 < n <= COPY_LIMIT:
        raise StorageError(f"{ENV_THRESHOLD} must be between 1 and {COPY_LIMIT} bytes")
    return n


def endpoint_from_env(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def region_from_env(env: Mapping[str, str]) -> str | None:
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


def parse_url(url: str, env: Mapping[str, str]) -> S3Storage:
    """``s3://BUCKET/ROOTDIRECTORY`` with the endpoint and region of the standard AWS
    environment; credentials come from the AWS credentials chain."""
    bucket, _, root = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket (expected s3://BUCKET/ROOTDIRECTORY)")
    return S3Storage(
        bucket=bucket,
        rootdirectory=clean_root(root),
        endpoint=endpoint_from_env(env),
        region=region_from_env(env),
        multipart_threshold=threshold(env),
    )


def from_record(record: Mapping[str, str], env: Mapping[str, str]) -> S3Storage:
    """The storage a plan names (credentials from the environment)."""
    record = checked(
        record, "s3", frozenset({"bucket", "rootdirectory"}), frozenset({"endpoint", "region"})
    )
    return S3Storage(
        bucket=record["bucket"],
        rootdirectory=clean_root(record.get("rootdirectory", "")),
        endpoint=record.get("endpoint") or endpoint_from_env(env),
        region=record.get("region") or region_from_env(env),
        multipart_threshold=threshold(env),
    )


def from_config(params: Mapping[str, object], env: Mapping[str, str], where: str) -> S3Storage:
    """``storage.s3`` of a registry config, ``REGISTRY_STORAGE_S3_*`` overriding as in
    the registry."""

    def get(name: str) -> str | None:
        value = env.get(f"REGISTRY_STORAGE_S3_{name.upper()}")
        if value is None:
            raw = params.get(name)
            value = None if raw is None else str(raw)
        return value or None

    bucket = get("bucket")
    if bucket is None:
        raise StorageError(f"{where}: storage.s3.bucket is not set")
    endpoint = get("regionendpoint")
    if endpoint and "://" not in endpoint:
        secure = (get("secure") or "true").lower() != "false"
        endpoint = f"{'https' if secure else 'http'}://{endpoint}"
    access, secret = get("accesskey"), get("secretkey")
    return S3Storage(
        bucket=bucket,
        rootdirectory=clean_root(get("rootdirectory") or ""),
        endpoint=endpoint or endpoint_from_env(env),
        region=get("region") or region_from_env(env),
        credentials=Credentials(access_key=access, secret_key=secret or "") if access else None,
        multipart_threshold=threshold(env),
    )


def _obj(rel: str, size: int, etag: str, mtime: float) -> Obj:
    return Obj(rel=rel, size=size, etag=etag, mtime=mtime, content=None if "-" in etag else etag)


class S3Bucket:
    """The Bucket seam on one boto3 client (thread safe: listings and copies run in a
    pool). Every error is a one-line StorageError naming the key."""

    def __init__(self, storage: S3Storage, client: S3Client | None = None) -> None:
        self.storage = storage
        self.name = storage.bucket
        self._client = client if client is not None else _client(storage)

    def url(self, key: str) -> str:
        return self.storage.url(key)

    def _fail(self, what: str, key: str, e: Exception) -> StorageError:
        return StorageError(f"{self.url(key)}: cannot {what}: {_reason(e)}")

    def _list(self, prefix: str, **more: str) -> Any:
        """One ListObjectsV2 request (at most 1,000 keys)."""
        try:
            return self._client.list_objects_v2(
                Bucket=self.name, Prefix=prefix, MaxKeys=PAGE, **more
            )
        except Exception as e:  # noqa: BLE001 (any client error is one line)
            raise self._fail("list", prefix, e) from None

    @staticmethod
    def _keys(page: Any, n: int) -> list[Obj]:
        return [
            _obj(
                o["Key"][n:], o["Size"], o.get("ETag", "").strip('"'), o["LastModified"].timestamp()
            )
            for o in page.get("Contents", ())
        ]

    def _pages(self, prefix: str, delimiter: str | None) -> Iterator[tuple[list[str], list[Obj]]]:
        """ListObjectsV2 page by page (at most 1,000 keys each): the page's common prefixes
        (names before the next delimiter) and its keys, both relative to ``prefix``."""
        n = len(prefix)
        token: str | None = None
        while True:
            args: dict[str, str] = {"Delimiter": delimiter} if delimiter else {}
            if token:
                args["ContinuationToken"] = token
            page = self._list(prefix, **args)
            yield [p["Prefix"][n:-1] for p in page.get("CommonPrefixes", ())], self._keys(page, n)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    seeks = True

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool]:
        """One ListObjectsV2 request from after a key (StartAfter)."""
        page = self._list(prefix, StartAfter=after)
        return self._keys(page, len(prefix)), bool(page.get("IsTruncated"))

    def objects(self, prefix: str) -> Iterator[Obj]:
        """Every key under ``prefix``, in key order, a page of at most 1,000 at a time."""
        for _, files in self._pages(prefix, None):
            yield from files

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        """The immediate "folders" (names before the next ``/``) and the keys right
        under ``prefix`` (delimiter listing)."""
        names: list[str] = []
        files: list[Obj] = []
        for page_names, page_files in self._pages(prefix, "/"):
            names += page_names
            files += page_files
        return names, files

    def get(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes (at most ``limit``); FileNotFoundError when there is none."""
        out = io.BytesIO()
        self.get_to(key, out, limit)
        return out.getvalue()

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        """Write the object's bytes (at most ``limit``) into ``f``, a chunk at a time, and
        return its ETag; FileNotFoundError when there is none."""
        args: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if limit is not None:
            args["Range"] = f"bytes=0-{limit - 1}"
        try:
            response = self._client.get_object(**args)
            body = response["Body"]
            try:
                for chunk in body.iter_chunks(1 << 20):
                    f.write(chunk)
            finally:
                body.close()
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            if _code(e) not in ("InvalidRange", "416"):
                raise self._fail("read", key, e) from None
            response = self._empty(key)  # no byte 0: the object is empty
        return str(response.get("ETag", "")).strip('"')

    def _empty(self, key: str) -> Any:
        """The HEAD of an object a ranged read found empty (it may have gone since)."""
        try:
            return self._client.head_object(Bucket=self.name, Key=key)
        except Exception as e:  # noqa: BLE001
            if _code(e) in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from None
            raise self._fail("read", key, e) from None

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        """Write an object (bytes or a binary file) and return its ETag. With ``new``, only
        if there is none (``If-None-Match: *``); with ``if_match``, only over the object
        of that ETag (a compare-and-swap); else Exists."""
        args: dict[str, Any] = {"Bucket": self.name, "Key": key, "Body": data}
        if new:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        try:
            r = self._client.put_object(**args)
        except Exception as e:  # noqa: BLE001
            if _conflict(e, conditional=new or if_match is not None):
                raise Exists(key) from None
            raise self._fail("write", key, e) from None
        return str(r.get("ETag", "")).strip('"')

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        """Server-side copy; part by part above the storage's multipart threshold. Returns
        the new object's ETag and LastModified. With ``if_match``, only from the source of
        that ETag (``x-amz-copy-source-if-match``, on every part), else Exists."""
        condition = {} if if_match is None else {"CopySourceIfMatch": f'"{if_match}"'}
        try:
            if size <= self.storage.multipart_threshold:
                r = self._client.copy_object(
                    Bucket=self.name,
                    Key=dst,
                    CopySource={"Bucket": self.name, "Key": src},
                    **condition,
                )["CopyObjectResult"]
            else:
                self._multipart_copy(src, dst, size, condition)
                r = self._client.head_object(Bucket=self.name, Key=dst)
            return str(r.get("ETag", "")).strip('"'), float(r["LastModified"].timestamp())
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001
            if _conflict(e, conditional=if_match is not None):
                raise Exists(src) from None
            raise self._fail(f"copy to {dst}", src, e) from None

    def _multipart_copy(self, src: str, dst: str, size: int, condition: dict[str, str]) -> None:
        match = {"IfMatch": condition["CopySourceIfMatch"]} if condition else {}
        head = self._client.head_object(Bucket=self.name, Key=src, **match)
        extra: dict[str, Any] = {}
        if head.get("ContentType"):
            extra["ContentType"] = head["ContentType"]
        if head.get("Metadata"):
            extra["Metadata"] = head["Metadata"]
        upload = self._client.create_multipart_upload(Bucket=self.name, Key=dst, **extra)
        upload_id = upload["UploadId"]
        part = min(max(self.storage.multipart_threshold, MIN_PART), COPY_LIMIT)
        parts = []
        try:
            for n, start in enumerate(range(0, size, part), 1):
                end = min(start + part, size) - 1
                r = self._client.upload_part_copy(
                    Bucket=self.name,
                    Key=dst,
                    UploadId=upload_id,
                    PartNumber=n,
                    CopySource={"Bucket": self.name, "Key": src},
                    CopySourceRange=f"bytes={start}-{end}",
                    **condition,
                )
                parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            self._client.complete_multipart_upload(
                Bucket=self.name, Key=dst, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self._client.abort_multipart_upload(Bucket=self.name, Key=dst, UploadId=upload_id)
            except Exception as e:  # noqa: BLE001
                raise self._fail("abort the multipart copy to", dst, e) from None
            raise

    def delete(self, keys: Iterable[str]) -> int:
        """Delete many keys, DELETE_BATCH per request; returns how many were asked."""
        todo = list(keys)
        for start in range(0, len(todo), DELETE_BATCH):
            self.delete_batch(todo[start : start + DELETE_BATCH])
        return len(todo)

    def delete_batch(self, chunk: list[str]) -> None:
        """One DeleteObjects request (at most 1,000 keys)."""
        try:
            r = self._client.delete_objects(
                Bucket=self.name,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
        except Exception as e:  # noqa: BLE001
            raise self._fail("delete", chunk[0], e) from None
        errors = r.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"s3://{self.name}/{first.get('Key')}: cannot delete: "
                f"{first.get('Code')} {first.get('Message', '')}".rstrip()
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
            )

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        """Delete one key; with ``if_match``, only the object of that ETag (else Exists:
        another object is there now)."""
        args: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if if_match is not None:
            args["IfMatch"] = f'"{if_match}"'
        try:
            self._client.delete_object(**args)
        except Exception as e:  # noqa: BLE001
            if if_match is not None and _conflict(e, conditional=True):
                raise Exists(key) from None
            raise self._fail("delete", key, e) from None

    def check(self) -> None:
        """Fail early with one line when the bucket cannot be reached."""
        try:
            self._client.head_bucket(Bucket=self.name)
        except Exception as e:  # noqa: BLE001
            where = self.url("").rstrip("/")
            raise StorageError(f"{where}: cannot reach the bucket: {_reason(e)}") from None


def _conflict(e: Exception, *, conditional: bool) -> bool:
    """A conditional request that lost (the object is not the one the condition named)."""
    return conditional and _code(e) in (
        "PreconditionFailed",
        "412",
        "ConditionalRequestConflict",
        "NoSuchKey",
        "404",
    )


def _code(e: Exception) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _reason(e: Exception) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', '')} {err.get('Message', '')}".strip() or type(e).__name__
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _client(storage: S3Storage) -> S3Client:
    try:
        import boto3  # noqa: PLC0415 (optional: only S3 storage needs it)
        from botocore.config import Config  # noqa: PLC0415
    except ImportError:
        raise StorageError("S3 storage needs the S3 client: pip install 'regplan[s3]'") from None
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=32,
        s3={"addressing_style": "path"} if storage.endpoint else {},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    creds: dict[str, str] = {}
    if storage.credentials is not None:
        creds = {
            "aws_access_key_id": storage.credentials.access_key,
            "aws_secret_access_key": storage.credentials.secret_key,
        }
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=storage.endpoint,
        region_name=storage.region or "us-east-1",
        config=config,
        **creds,
    )
    return client
