"""The storage seam for object stores: the few requests regplan makes of a bucket.

S3, Azure Blob and Google Cloud Storage all keep the registry's tree key for key
under ``<rootdirectory>/docker/registry/v2/`` (no empty folders), and regplan's
own state beside it under ``<rootdirectory>/regplan-state/``. The scan, apply,
rollback, purge, history and lock of this package are written once over
:class:`Bucket`; each cloud is one package (``storage/s3``, ``storage/azure``,
``storage/gcs``) with a :class:`ObjectStorage` (where the registry is, with no secret)
that opens its :class:`Bucket` (the cloud's client).

What a listing proves differs per cloud, and is said in two fields of :class:`Obj`:
``etag`` names the version (a conditional write or delete names it; any write
changes it), ``content`` is a hash of the bytes that a server-side copy keeps
(S3's ETag of a single-part object, Azure's Content-MD5, GCS's md5Hash or, for a
composite object, its CRC32C), or None where the store keeps none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Protocol

import attrs

from regplan.errors import StorageError

MANIFEST_LIMIT = 4 << 20
"""distribution refuses manifests over 4 MiB: a larger blob is never read as one."""


@attrs.frozen
class Obj:
    """One key of a listing, relative to the prefix listed."""

    rel: str
    size: int
    etag: str
    """The version: what a conditional request names; changes with every write."""
    mtime: float
    content: str | None = None
    """A hash of the bytes a server-side copy keeps (hex MD5, or ``crc32c:...``); None
    when the store keeps none for this object."""

    def md5(self) -> str | None:
        """The content's hex MD5 when the store proves it."""
        c = self.content
        return c if c is not None and ":" not in c else None


class Exists(Exception):  # noqa: N818 (a conditional create found the key)
    """A conditional write or delete lost: another object is (or is not) there."""


class Bucket(Protocol):
    """The requests regplan makes, thread safe (listings and copies run in a pool).
    Every failure is a one-line StorageError naming the key."""

    @property
    def storage(self) -> ObjectStorage:
        """Where the registry is in this container."""
        ...

    def url(self, key: str) -> str:
        """``scheme://container/key``: how messages name a key."""
        ...

    def objects(self, prefix: str) -> Iterator[Obj]:
        """Every key under ``prefix``, in key order, a page at a time."""
        ...

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        """The immediate "folders" (names before the next ``/``) and the keys right
        under ``prefix`` (a delimiter listing)."""
        ...

    @property
    def seeks(self) -> bool:
        """Whether :meth:`page` can begin a listing at a key (S3, GCS; not Azure)."""
        ...

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool] | None:
        """One listing request: the keys under ``prefix`` that sort after the key
        ``after``, at most a page of them in key order, and whether more may follow; None
        (and no request) when the store does not :attr:`seeks`, or turned out not to."""
        ...

    def get(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes (at most ``limit``); FileNotFoundError when there is none."""
        ...

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        """Write the object's bytes (at most ``limit``) into ``f`` a chunk at a time and
        return its etag; FileNotFoundError when there is none."""
        ...

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        """Write an object and return its etag. With ``new``, only if there is none; with
        ``if_match``, only over the object of that etag (compare-and-swap); else Exists."""
        ...

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        """Server-side copy, whatever the size, finished when it returns; returns the
        new object's etag and time. With ``if_match``, only from the source of that
        etag (else Exists: it was written again or is gone)."""
        ...

    def delete(self, keys: Iterable[str]) -> int:
        """Delete many keys (a missing one is no error); returns how many were asked."""
        ...

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        """Delete one key; with ``if_match``, only the object of that etag (else Exists)."""
        ...

    def check(self) -> None:
        """Fail early with one line when the container cannot be reached."""
        ...


class ObjectStorage(Protocol):
    """Where an object-store registry is: its container and rootdirectory, and how to
    reach them. Never holds a secret in what it prints or records."""

    @property
    def rootdirectory(self) -> str:
        """Without leading or trailing slash; empty for the container's top."""
        ...

    @property
    def root(self) -> str:
        """``scheme://container/rootdirectory``: what messages and the plan's root say."""
        ...

    def url(self, key: str) -> str:
        """``scheme://container/key``: how messages name a key."""
        ...

    @property
    def v2(self) -> str: ...

    def key(self, rel: str) -> str: ...

    @property
    def v2_prefix(self) -> str: ...

    @property
    def state_prefix(self) -> str: ...

    def record(self) -> dict[str, str]:
        """Where the storage is, as a plan records it (``driver`` first; no secret)."""
        ...

    def open(self) -> Bucket:
        """A client on the container (credentials as the cloud's users expect)."""
        ...


class Cloud(Protocol):
    """A cloud's package, as storage/location.py sees it (each module satisfies this)."""

    SCHEME: str
    """``s3://``, ``az://``, ``gs://``: what ``--root`` starts with."""

    def parse_url(self, url: str, env: Mapping[str, str]) -> ObjectStorage:
        """``--root SCHEME://CONTAINER/ROOTDIRECTORY``, the rest from the environment."""
        ...

    def from_record(self, record: Mapping[str, str], env: Mapping[str, str]) -> ObjectStorage:
        """The storage a plan names (credentials from the environment)."""
        ...

    def from_config(
        self, params: Mapping[str, object], env: Mapping[str, str], where: str
    ) -> ObjectStorage:
        """``storage.<driver>`` of a registry config, ``REGISTRY_STORAGE_<DRIVER>_*``
        overriding as in the registry."""
        ...


class Rooted:
    """The key arithmetic every ObjectStorage shares (a mixin of attrs classes with a
    ``rootdirectory`` field and a ``root`` property)."""

    __slots__ = ()
    rootdirectory: str

    def url(self, key: str) -> str:
        """``scheme://container/key`` (each cloud's own)."""
        raise NotImplementedError

    @property
    def root(self) -> str:
        return self.url(self.rootdirectory).rstrip("/")

    @property
    def v2(self) -> str:
        return f"{self.root}/docker/registry/v2"

    def key(self, rel: str) -> str:
        """The key of ``rel``, a path relative to the rootdirectory."""
        return f"{self.rootdirectory}/{rel}" if self.rootdirectory else rel

    @property
    def v2_prefix(self) -> str:
        return self.key("docker/registry/v2/")

    @property
    def state_prefix(self) -> str:
        return self.key("regplan-state/")


def clean_root(text: str) -> str:
    """A rootdirectory without leading or trailing slash, refused with an empty, ``.``
    or ``..`` component."""
    root = text.strip("/")
    if any(p in ("", ".", "..") for p in root.split("/")) and root:
        raise StorageError(f"rootdirectory {text!r} has an empty, '.' or '..' component")
    return root


def checked(
    record: Mapping[str, str], driver: str, required: frozenset[str], optional: frozenset[str]
) -> Mapping[str, str]:
    """A plan's storage record as a cloud reads it: the fields it takes, or one line
    naming what is missing or unknown (a plan is signed, but may come from a newer
    regplan or another cloud)."""
    fields = set(record) - {"driver"}
    missing, unknown = sorted(required - fields), sorted(fields - required - optional)
    if missing or unknown:
        what = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise StorageError(f"the plan's {driver} storage record does not fit: {what}")
    return record


def reason(e: BaseException) -> str:
    """The first line of an error, or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
