"""An object store in memory: a :class:`~regplan.storage.objects.bucket.Bucket` with
the semantics regplan relies on, in the flavour of S3, Azure Blob or GCS.

It is what the transaction's tests run against in-process (the contract, the lock
races, the crash matrices); ``tests/test_bucket_reads.py`` runs the same primitive
tests on it and on each real store's emulator, which is what makes it a faithful
stand-in. What it keeps of each store:

- **versions** (``Obj.etag``): S3's ETag is the MD5 of a single-part object's bytes
  (the same bytes written again: the same ETag); a copy done part by part (above
  ``part_size``) has a multipart ETag ``<md5>-<parts>``. Azure's ETag is opaque and
  GCS's generation a number; both change with every write, even of the same bytes.
- **content hashes** (``Obj.content``): S3's single-part ETag, Azure's Content-MD5
  (none for a blob put block by block, above ``part_size``), GCS's md5Hash. A copy
  keeps it, but S3's multipart copy, which has none.
- **conditional requests**: ``put(new=True)`` (``If-None-Match: *``), ``put(if_match=)``,
  ``delete_one(if_match=)`` and ``copy(if_match=)`` (of the source) raise Exists when the
  object is another or none; an unconditional delete of a missing key is no error.
- **listings** in key order, a page at a time (S3 and GCS 1,000 keys, Azure 5,000),
  each page read on its own (a write between two pages shows in the later one);
  ``folders`` is a delimiter listing, whose common prefixes count in a page as keys do;
  ``page`` begins after a key (S3, GCS; not Azure: None).
- **reads**: a limited read is a range; an empty object reads as empty; a missing one
  is FileNotFoundError. A copy of a missing source is a StorageError.
- **times** from an injectable clock, at the store's resolution (S3's and Azure's
  whole seconds, GCS's milliseconds).

Every request takes one lock: the bucket is thread safe as the real clients are.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO

import attrs

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Bucket, Exists, Obj, Rooted


@attrs.frozen
class Flavour:
    """What differs between the stores the memory bucket imitates."""

    driver: str
    """The registry's storage driver name: what a plan records."""
    scheme: str
    page: int
    """Keys (and common prefixes) per listing page."""
    tick: float
    """The resolution of an object's time, in seconds."""
    part_size: int
    """S3: copies above this go part by part (CopyObject's 5 GiB); Azure: puts above this
    go block by block (the SDK's 64 MiB single put); GCS: none."""
    seeks: bool = True
    """A listing can begin after a key (S3's StartAfter, GCS's startOffset; regplan does
    not rely on Azure's startFrom)."""


S3 = Flavour("s3", "s3://", page=1000, tick=1.0, part_size=5 << 30)
AZURE = Flavour("azure", "az://", page=5000, tick=1.0, part_size=64 << 20, seeks=False)
GCS = Flavour("gcs", "gs://", page=1000, tick=0.001, part_size=0)
FLAVOURS = {f.driver: f for f in (S3, AZURE, GCS)}
MIN_PART = 5 << 20
"""S3's smallest part of a multipart copy (all but the last)."""


@attrs.frozen
class Stored:
    """One object: its bytes and what the store says of them."""

    data: bytes
    etag: str
    mtime: float
    content: str | None


@attrs.frozen(kw_only=True)
class MemoryStorage(Rooted):
    """Where a registry is in a memory bucket; ``open`` returns ``bucket`` (a test may
    give a wrapping bucket: :meth:`opening`)."""

    flavour: Flavour
    container: str
    rootdirectory: str
    bucket: Bucket = attrs.field(eq=False, repr=False)

    def url(self, key: str) -> str:
        return f"{self.flavour.scheme}{self.container}/{key}"

    def record(self) -> dict[str, str]:
        """What a plan records (the driver of the store it imitates)."""
        return {
            "driver": self.flavour.driver,
            "bucket": self.container,
            "rootdirectory": self.rootdirectory,
        }

    def open(self) -> Bucket:
        return self.bucket

    def opening(self, bucket: Bucket) -> MemoryStorage:
        """The same place, reached through ``bucket`` (a wrapper of this one's)."""
        return attrs.evolve(self, bucket=bucket)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _read(data: bytes | IO[bytes]) -> bytes:
    return data if isinstance(data, bytes) else data.read()


class MemoryBucket:
    """A bucket in memory (see the module's docstring); ``flavour`` is ``s3``, ``azure``
    or ``gcs``, ``clock`` gives the time of each write."""

    def __init__(
        self,
        flavour: str | Flavour = "s3",
        *,
        container: str = "registry-bucket",
        rootdirectory: str = "registry",
        clock: Callable[[], float] = time.time,
        part_size: int | None = None,
    ) -> None:
        found = FLAVOURS[flavour] if isinstance(flavour, str) else flavour
        if part_size is not None:
            found = attrs.evolve(found, part_size=part_size)
        self.flavour = found
        self.clock = clock
        self.storage = MemoryStorage(
            flavour=found, container=container, rootdirectory=rootdirectory, bucket=self
        )
        self._lock = threading.Lock()
        self._objects: dict[str, Stored] = {}
        self._keys: list[str] = []
        """Every key, sorted."""
        self._versions = 0
        self._generation = 0
        """GCS's last generation: the microsecond of the write, or one more."""

    def url(self, key: str) -> str:
        return self.storage.url(key)

    # -- what each write makes -------------------------------------------------

    def _now(self) -> float:
        tick = self.flavour.tick
        return math.floor(self.clock() / tick) * tick

    def _version(self, data: bytes, mtime: float) -> str:
        """A new object's etag (under the lock)."""
        self._versions += 1
        if self.flavour.driver == "s3":
            return _md5(data)
        if self.flavour.driver == "azure":
            return f"0x8D{self._versions:013X}"
        self._generation = max(self._generation + 1, int(mtime * 1e6))
        return str(self._generation)

    def _made(self, data: bytes) -> Stored:
        """The object a put of ``data`` makes (under the lock)."""
        mtime = self._now()
        content: str | None = _md5(data)
        if self.flavour.driver == "azure" and len(data) > self.flavour.part_size:
            content = None  # put block by block: no Content-MD5
        return Stored(data, self._version(data, mtime), mtime, content)

    def _copied(self, src: Stored) -> Stored:
        """The object a server-side copy of ``src`` makes (under the lock)."""
        mtime = self._now()
        size = len(src.data)
        if self.flavour.driver == "s3" and size > self.flavour.part_size:
            part = max(self.flavour.part_size, MIN_PART)
            digests = b"".join(
                hashlib.md5(src.data[i : i + part], usedforsecurity=False).digest()
                for i in range(0, size, part)
            )
            etag = f"{_md5(digests)}-{math.ceil(size / part)}"
            return Stored(src.data, etag, mtime, None)
        etag = src.etag if self.flavour.driver == "s3" else self._version(src.data, mtime)
        return Stored(src.data, etag, mtime, src.content)

    def _store(self, key: str, obj: Stored) -> None:
        if key not in self._objects:
            bisect.insort(self._keys, key)
        self._objects[key] = obj

    def _drop(self, key: str) -> None:
        if self._objects.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    # -- the requests ----------------------------------------------------------

    def _page(
        self, prefix: str, start: str, delimiter: bool
    ) -> tuple[list[str], list[Obj], str | None]:
        """One listing request: up to a page of common prefixes and keys from ``start``
        on; and the key the next page starts at (None: this was the last)."""
        names: list[str] = []
        files: list[Obj] = []
        n = len(prefix)
        with self._lock:
            i = bisect.bisect_left(self._keys, max(start, prefix))
            while i < len(self._keys) and self._keys[i].startswith(prefix):
                if len(names) + len(files) == self.flavour.page:
                    return names, files, self._keys[i]
                key = self._keys[i]
                rest = key[n:]
                if delimiter and "/" in rest:
                    folder = rest[: rest.index("/")]
                    names.append(folder)
                    # past every key of the folder ("0" is the character after "/")
                    i = bisect.bisect_left(self._keys, f"{prefix}{folder}0")
                    continue
                o = self._objects[key]
                files.append(Obj(rest, len(o.data), o.etag, o.mtime, o.content))
                i += 1
        return names, files, None

    def _pages(self, prefix: str, delimiter: bool) -> Iterator[tuple[list[str], list[Obj]]]:
        start: str | None = ""
        while start is not None:
            names, files, start = self._page(prefix, start, delimiter)
            yield names, files

    def objects(self, prefix: str) -> Iterator[Obj]:
        for _, files in self._pages(prefix, delimiter=False):
            yield from files

    @property
    def seeks(self) -> bool:
        return self.flavour.seeks

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool] | None:
        if not self.flavour.seeks:
            return None
        _, files, start = self._page(prefix, after + "\0", delimiter=False)
        return files, start is not None

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        names: list[str] = []
        files: list[Obj] = []
        for page_names, page_files in self._pages(prefix, delimiter=True):
            names += page_names
            files += page_files
        return names, files

    def _get(self, key: str, limit: int | None) -> Stored:
        with self._lock:
            o = self._objects.get(key)
        if o is None:
            raise FileNotFoundError(key)
        return o if limit is None else attrs.evolve(o, data=o.data[:limit])

    def get(self, key: str, limit: int | None = None) -> bytes:
        return self._get(key, limit).data

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        o = self._get(key, limit)
        f.write(o.data)
        return o.etag

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        body = _read(data)
        with self._lock:
            there = self._objects.get(key)
            if new and there is not None:
                raise Exists(key)
            if if_match is not None and (there is None or there.etag != if_match):
                raise Exists(key)
            made = self._made(body)
            self._store(key, made)
        return made.etag

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        del size  # any size, in one request (the real stores' clients loop as they must)
        with self._lock:
            there = self._objects.get(src)
            if if_match is not None and (there is None or there.etag != if_match):
                raise Exists(src)
            if there is None:
                raise StorageError(f"{self.url(src)}: cannot copy to {dst}: NoSuchKey")
            made = self._copied(there)
            self._store(dst, made)
        return made.etag, made.mtime

    def delete(self, keys: Iterable[str]) -> int:
        todo = list(keys)
        with self._lock:
            for key in todo:
                self._drop(key)
        return len(todo)

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        with self._lock:
            there = self._objects.get(key)
            if if_match is not None and (there is None or there.etag != if_match):
                raise Exists(key)
            self._drop(key)

    def check(self) -> None:
        """A memory bucket is always there."""

    # -- for tests ---------------------------------------------------------------

    def snapshot(self, prefix: str = "") -> dict[str, Stored]:
        """Every object under ``prefix`` as it is now (key -> what is stored)."""
        with self._lock:
            return {k: v for k, v in self._objects.items() if k.startswith(prefix)}
