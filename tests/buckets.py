"""Buckets that wrap a bucket, as restic's backend wrappers do: each is a Bucket too, so
they compose (``Crashing(Counting(MemoryBucket("s3")), at=("copy", 3))``) and a test
hands one to regplan's public entry points through ``MemoryStorage.opening``.

- :class:`Counting` counts the requests of each kind;
- :class:`Crashing` is a process killed (SIGKILL) at the n-th request of a kind, before
  the request reached the store or after the store did it: it raises :class:`Killed`
  (a BaseException: regplan's ``except Exception`` cannot catch it) then and at every
  later request, since a dead process sends nothing more;
- :class:`Faulty` fails chosen requests with a StorageError (the store said no, or the
  answer was lost after the store did it).

A request's kind is the Bucket method's name; a ``delete`` of many keys is one request
per ``batch`` keys, as the real clients send it (S3 1,000 keys, Azure 256, GCS 100), and
a listing (``objects``, ``folders``) one per page of the store's (S3 and GCS 1,000 keys,
Azure 5,000), as a real server answers it.
Also here: an injectable :class:`Clock`, and :class:`InMemory`, a registry in a memory
bucket driven through ``regplan.workflow`` and ``regplan.apply``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, NoReturn, TypeVar

import attrs

from regplan import apply, workflow
from regplan.changes.records import ApplyRecord
from regplan.changes.transaction import ApplyResult, RollbackResult
from regplan.decide.selection import Selection
from regplan.errors import StorageError
from regplan.plans import signing
from regplan.progress import Progress
from regplan.scan.inventory import ProblemCode
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Bucket, Obj, ObjectStorage
from regplan.storage.objects.memory import MemoryBucket, MemoryStorage
from tests.helpers import KEY, NOW, write_keys

T = TypeVar("T")

WRITES = ("put", "copy", "delete", "delete_one")
"""The kinds of request that change a bucket."""
BATCH = {"s3": 1000, "azure": 256, "gcs": 100}
"""Keys per delete request of each store's client."""


class Killed(BaseException):
    """The process was killed here: nothing of regplan's after this point runs."""


class Clock:
    """Time that moves only when told (epoch seconds), from 2026-11-28 10:15 UTC."""

    def __init__(self, start: float = NOW.timestamp()) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def now(self) -> datetime:
        """The time as the core functions' ``now=`` takes it (whole seconds)."""
        return datetime.fromtimestamp(int(self.t), UTC)


def page_keys(bucket: Bucket) -> int:
    """Keys per listing page of the store ``bucket`` is (or wraps)."""
    if isinstance(bucket, Wrapping):
        return bucket.page_keys
    return bucket.flavour.page if isinstance(bucket, MemoryBucket) else 1000


class Wrapping:
    """A bucket around ``inner``: every request goes through :meth:`request`."""

    def __init__(self, inner: Bucket, *, batch: int = 1000) -> None:
        self.inner = inner
        self.batch = batch
        self.page_keys = page_keys(inner)

    @property
    def storage(self) -> ObjectStorage:
        return self.inner.storage

    def url(self, key: str) -> str:
        return self.inner.url(key)

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        """Send one request of ``kind`` (about ``key``); a wrapper's own behaviour."""
        del kind, key
        return call()

    def objects(self, prefix: str) -> Iterator[Obj]:
        listed = self.request("objects", prefix, lambda: self.inner.objects(prefix))
        for n, o in enumerate(listed):
            if n and n % self.page_keys == 0:  # the next page's request
                self.request("objects", prefix, lambda: None)
            yield o

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        names, files = self.request("folders", prefix, lambda: self.inner.folders(prefix))
        for _ in range(1, -(-(len(names) + len(files)) // self.page_keys)):
            self.request("folders", prefix, lambda: None)  # a later page's request
        return names, files

    @property
    def seeks(self) -> bool:
        return self.inner.seeks

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool] | None:
        if not self.inner.seeks:  # no request is sent
            return None
        return self.request("page", prefix, lambda: self.inner.page(prefix, after))

    def get(self, key: str, limit: int | None = None) -> bytes:
        return self.request("get", key, lambda: self.inner.get(key, limit))

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        return self.request("get_to", key, lambda: self.inner.get_to(key, f, limit))

    def put(
        self, key: str, data: bytes | IO[bytes], *, new: bool = False, if_match: str | None = None
    ) -> str:
        return self.request(
            "put", key, lambda: self.inner.put(key, data, new=new, if_match=if_match)
        )

    def copy(
        self, src: str, dst: str, size: int, *, if_match: str | None = None
    ) -> tuple[str, float]:
        return self.request("copy", src, lambda: self.inner.copy(src, dst, size, if_match=if_match))

    def delete(self, keys: Iterable[str]) -> int:
        todo = list(keys)
        for start in range(0, len(todo), self.batch):
            self._delete_batch(todo[start : start + self.batch])
        return len(todo)

    def _delete_batch(self, chunk: list[str]) -> None:
        self.request("delete", chunk[0], lambda: self.inner.delete(chunk))

    def delete_one(self, key: str, *, if_match: str | None = None) -> None:
        self.request("delete_one", key, lambda: self.inner.delete_one(key, if_match=if_match))

    def check(self) -> None:
        self.request("check", "", self.inner.check)


class Counting(Wrapping):
    """Counts the requests of each kind (``counts``)."""

    def __init__(self, inner: Bucket, *, batch: int = 1000) -> None:
        super().__init__(inner, batch=batch)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        with self._lock:
            self.counts[kind] += 1
        return call()

    def writes(self) -> dict[str, int]:
        """The requests that changed the bucket, by kind."""
        return {k: n for k, n in self.counts.items() if k in WRITES}


class Crashing(Wrapping):
    """The process dies at the ``at[1]``-th request of kind ``at[0]``: before it reached
    the store, or (``after``) once the store did it and before its answer was read; or
    when :meth:`kill` says so."""

    def __init__(
        self,
        inner: Bucket,
        *,
        at: tuple[str, int] | None = None,
        after: bool = False,
        batch: int = 1000,
    ) -> None:
        super().__init__(inner, batch=batch)
        self.at = at
        self.after = after
        self.calls: Counter[str] = Counter()
        self.dead = False
        self._lock = threading.Lock()

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        with self._lock:
            if self.dead:
                raise Killed(f"dead before {kind} {key}")
            self.calls[kind] += 1
            fire = (kind, self.calls[kind]) == self.at
            self.dead = fire
            if fire and not self.after:
                raise Killed(f"killed before {kind} {key}")
            if fire:
                call()  # the store does it; nothing else reaches the store meanwhile
                raise Killed(f"killed after {kind} {key}")
        return call()

    def kill(self) -> NoReturn:
        """The process dies now, wherever it is."""
        with self._lock:
            self.dead = True
        raise Killed("killed")


class Faulty(Wrapping):
    """Fails the requests named in ``at`` ((kind, n): the n-th of that kind) with a
    StorageError: before the store saw them, or (``after``) once it did them."""

    def __init__(
        self,
        inner: Bucket,
        *,
        at: Collection[tuple[str, int]],
        after: bool = False,
        batch: int = 1000,
    ) -> None:
        super().__init__(inner, batch=batch)
        self.at = frozenset(at)
        self.after = after
        self.calls: Counter[str] = Counter()
        self.failed: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        with self._lock:
            self.calls[kind] += 1
            n = self.calls[kind]
        if (kind, n) not in self.at:
            return call()
        self.failed.append((kind, n))
        if self.after:
            call()
        raise StorageError(f"{self.url(key)}: cannot {kind}: injected fault")


# -- a registry in a memory bucket, through the public entry points ------------------


def upload_tree(root: Path, bucket: Bucket) -> int:
    """Every file of a filesystem registry's rootdirectory as keys (what the registry's
    object-store drivers write: the same paths, no folders), in key order."""
    n = 0
    for path in sorted((root / "docker").rglob("*")):
        if path.is_file():
            bucket.put(bucket.storage.key(path.relative_to(root).as_posix()), path.read_bytes())
            n += 1
    return n


def mirror(bucket: MemoryBucket, to: Path) -> Path:
    """The bucket's tree as files (what the filesystem driver would hold, no empty folders)."""
    prefix = bucket.storage.key("")
    for key, o in bucket.snapshot(prefix).items():
        path = to / key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(o.data)
    return to


def objects(bucket: MemoryBucket, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
    """key -> (size, content hash or "-", SHA-256 of the bytes) under ``prefix`` of the
    rootdirectory: an object's identity whatever version the store gave it."""
    return {
        key: (len(o.data), o.content or "-", hashlib.sha256(o.data).hexdigest())
        for key, o in bucket.snapshot(bucket.storage.key(prefix)).items()
    }


def pushed(storage: ObjectStorage, cache: Path) -> dict[tuple[str, str], float]:
    """Every tag's push time and every leftover temporary file's age, as a plan reads them."""
    inv = objscan.scan(storage, cache=cache)
    times = {
        (r, name): tag.pushed_at
        for r, repo in inv.repositories.items()
        for name, tag in repo.tags.items()
    }
    for p in inv.problems:
        if p.code is ProblemCode.LEFTOVER_TEMP:
            times[("leftover", p.path)] = inv.mtimes[p.path]
    return times


def expire_lease(bucket: Bucket) -> bool:
    """The lock a killed holder left, an hour later: its lease ran out (what lets
    ``break_lock`` take it over). False when no lock was left."""
    key = bucket.storage.state_prefix + "lock"
    try:
        info = json.loads(bucket.get(key))
    except FileNotFoundError:
        return False
    past = datetime.now(UTC) - timedelta(hours=1)
    info["expires_at"] = past.timestamp()
    info["expires"] = past.strftime("%Y-%m-%dT%H:%M:%SZ")
    bucket.put(key, json.dumps(info).encode())
    return True


@attrs.define
class InMemory:
    """A registry in a memory bucket, planned, applied, rolled back and purged through
    ``regplan.workflow`` and ``regplan.apply``; ``clock`` dates every write."""

    bucket: MemoryBucket
    clock: Clock
    base: Path
    trusted: list[signing.TrustedKey]

    @classmethod
    def of(cls, flavour: str, base: Path, tree: Path | None = None) -> InMemory:
        clock = Clock()
        found = cls(MemoryBucket(flavour, clock=clock), clock, base, [])
        found.trusted = signing.trusted_from([write_keys(base)[1]])
        if tree is not None:
            upload_tree(tree, found.bucket)
        return found

    @property
    def storage(self) -> MemoryStorage:
        return self.bucket.storage

    def through(self, wrapper: Bucket) -> MemoryStorage:
        """This registry, every request through ``wrapper``."""
        return self.storage.opening(wrapper)

    def objects(self, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
        return objects(self.bucket, prefix)

    def plan(self, selection: Selection, out: Path) -> Path:
        with workflow.make_plan(
            storage=self.storage,
            selection=selection,
            argv=("regplan", "plan", "--root", self.storage.root),
            key=KEY,
            signer="test-planner",
            now=self.clock.now(),
        ) as draft:
            workflow.write_plan(draft, out)
        return out

    def apply(
        self,
        plan: Path,
        *,
        via: Bucket | None = None,
        break_lock: bool = False,
        progress: Progress | None = None,
        exact: bool = False,
    ) -> ApplyResult:
        return apply.apply_plan(
            plan_path=plan,
            trusted=self.trusted,
            root=self.storage if via is None else self.through(via),
            required=1,
            now=self.clock.now(),
            progress=progress,
            break_lock=break_lock,
            exact=exact,
        )

    def rollback(
        self, apply_id: str, *, via: Bucket | None = None, break_lock: bool = False
    ) -> RollbackResult:
        return apply.rollback(
            storage=self.storage if via is None else self.through(via),
            apply_id=apply_id,
            now=self.clock.now(),
            break_lock=break_lock,
        )

    def purge(self, apply_id: str) -> list[ApplyRecord]:
        return apply.purge(
            storage=self.storage, apply_id=apply_id, older_than=None, now=self.clock.now()
        )

    def history(self) -> list[ApplyRecord]:
        return apply.records(self.storage)


def every(kinds: dict[str, int], sample: Callable[[str, int], bool]) -> list[tuple[str, int]]:
    """Every request (kind, n) of a run, but where ``sample(kind, total)``: then the first,
    a middle and the last of that kind."""
    out: list[tuple[str, int]] = []
    for kind, n in sorted(kinds.items()):
        picks = sorted({1, (n + 1) // 2, n}) if sample(kind, n) else range(1, n + 1)
        out += [(kind, i) for i in picks if i >= 1]
    return out
