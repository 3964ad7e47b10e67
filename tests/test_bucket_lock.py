"""The object-store lock (S3, Azure Blob, GCS) is a compare-and-swap lease: of two
processes breaking one stale lock only one holds it, and a holder whose lock was
broken stops at its next renewal and never deletes the new holder's lock. The races
are made by a wrapping bucket that lets the other process act between a read and the
write that follows it. They run on the memory bucket in each store's flavour (its
conditional writes are the real stores': tests/test_bucket_reads.py)."""

from __future__ import annotations

import json
import time
from typing import IO

import pytest

from regplan.errors import LockHeldError
from regplan.storage.objects.bucket import Bucket, ObjectStorage
from regplan.storage.objects.memory import FLAVOURS, MemoryBucket
from regplan.storage.objects.objlock import LOCK_TTL, Lock
from tests.buckets import Wrapping


@pytest.fixture(params=sorted(FLAVOURS))
def storage(request: pytest.FixtureRequest) -> ObjectStorage:
    """A new memory bucket of one store's flavour."""
    return MemoryBucket(request.param).storage


def holder(bucket: Bucket) -> str:
    return str(json.loads(bucket.get(bucket.storage.state_prefix + "lock"))["command"])


class Racing(Wrapping):
    """A bucket whose first read of the lock lets ``other`` run right after it."""

    def __init__(self, storage: ObjectStorage, other: Lock) -> None:
        super().__init__(storage.open())
        self.other: Lock | None = other

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        etag = self.inner.get_to(key, f, limit)
        other, self.other = self.other, None
        if other is not None and key.endswith("/lock"):
            other.__enter__()
        return etag


def stale(bucket: Bucket) -> None:
    """A lock whose holder's lease ran out an hour ago."""
    Lock(bucket, command="apply dead", now=time.time() - 2 * LOCK_TTL).__enter__()


def test_two_breakers_of_one_stale_lock_never_both_hold_it(storage: ObjectStorage) -> None:
    plain = storage.open()
    stale(plain)
    second = Lock(plain, command="rollback b", now=time.time(), break_stale=True)
    racing = Racing(storage, second)
    first = Lock(racing, command="apply a", now=time.time(), break_stale=True)
    with pytest.raises(LockHeldError, match="as the stale lock was broken"):
        first.__enter__()
    assert second.etag is not None and first.etag is None
    assert holder(plain) == "rollback b"
    second.__exit__(None, None, None)
    with pytest.raises(FileNotFoundError):
        plain.get(storage.state_prefix + "lock")


def test_a_holder_whose_lock_was_broken_stops_and_leaves_the_new_lock(
    storage: ObjectStorage,
) -> None:
    plain = storage.open()
    old = Lock(plain, command="apply slow", now=time.time() - 2 * LOCK_TTL)
    old.__enter__()
    old.renew(time.time() - 2 * LOCK_TTL)  # its own lock: renewed
    new = Lock(plain, command="apply new", now=time.time(), break_stale=True)
    new.__enter__()
    with pytest.raises(LockHeldError, match="broken by another regplan"):
        old.renew(time.time())
    old.__exit__(None, None, None)
    assert holder(plain) == "apply new"
    new.renew(time.time())
    new.__exit__(None, None, None)
    with pytest.raises(FileNotFoundError):
        plain.get(storage.state_prefix + "lock")


def test_a_live_lock_is_never_broken(storage: ObjectStorage) -> None:
    plain = storage.open()
    with Lock(plain, command="apply live", now=time.time()):
        with pytest.raises(LockHeldError, match=r"apply live .* until"):
            Lock(plain, command="x", now=time.time(), break_stale=True).__enter__()
        assert holder(plain) == "apply live"
