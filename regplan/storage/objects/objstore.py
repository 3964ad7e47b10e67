"""The transaction's store on an object-store registry (transaction.Store): the state of
its applies and its quarantine live in the bucket, under ``regplan-state/``; the
moves are objapply.py's and objrollback.py's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from regplan.changes.records import ApplyRecord
from regplan.errors import ApplyError, StorageError
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Bucket, ObjectStorage
from regplan.storage.objects.objapply import (
    Keys,
    begin,
    load_state,
    lock,
    move_targets,
    records,
    state_plan,
    write_state,
)
from regplan.storage.objects.objlock import Lock
from regplan.storage.objects.objpreflight import preflight
from regplan.storage.objects.objrollback import BucketRestore


class BucketStore:
    """An object-store registry's store (transaction.Store). Its lock is a lease that can
    outlive a killed holder; the moves renew it after every batch."""

    def __init__(self, storage: ObjectStorage, bucket: Bucket | None = None) -> None:
        self.storage = storage
        self.bucket = bucket or storage.open()
        self.held: Lock | None = None

    @property
    def where(self) -> str:
        return self.storage.root

    @contextlib.contextmanager
    def lock(self, command: str, break_lock: bool) -> Iterator[Lock]:
        self.bucket.check()
        with lock(self.bucket, command, break_lock) as held:
            self.held = held
            try:
                yield held
            finally:
                self.held = None

    def records(self) -> list[ApplyRecord]:
        return records(self.bucket)

    def load(self, apply_id: str) -> ApplyRecord:
        return load_state(self.bucket, Keys(self.storage, apply_id))

    def save(self, record: ApplyRecord) -> None:
        write_state(self.bucket, Keys(self.storage, record.apply_id), record)

    def began(self, apply_id: str) -> contextlib.AbstractContextManager[PlanStream]:
        return state_plan(self.bucket, Keys(self.storage, apply_id))

    def plan_of(self, apply_id: str) -> str:
        return self.bucket.url(Keys(self.storage, apply_id).plan)

    def quarantine(self, apply_id: str) -> str:
        return self.bucket.url(Keys(self.storage, apply_id).quarantine)

    def preflight(self, plan: PlanStream, apply_id: str) -> None:
        del apply_id  # a new apply's keys cannot be taken: its id is new
        preflight(plan, self.bucket, self.storage)

    def begin(self, plan: PlanStream, record: ApplyRecord) -> None:
        begin(self.bucket, plan, Keys(self.storage, record.apply_id), record)

    def move(
        self, plan: PlanStream, apply_id: str, progress: Progress | None, *, resuming: bool
    ) -> int:
        assert self.held is not None  # noqa: S101 (the transaction holds the lock)
        keys = Keys(self.storage, apply_id)
        return move_targets(self.bucket, plan, keys, progress, self.held, resuming=resuming)

    def restore(self, plan: PlanStream, record: ApplyRecord) -> BucketRestore:
        assert self.held is not None  # noqa: S101
        keys = Keys(self.storage, record.apply_id)
        return BucketRestore.check(self.bucket, keys, plan, self.held)

    def delete_quarantine(self, apply_id: str, progress: Progress | None) -> None:
        keys = Keys(self.storage, apply_id)
        try:
            gone = [o.rel for o in self.bucket.objects(keys.quarantine)]
            for start in range(0, len(gone), 1000):
                self.bucket.delete(keys.quarantine + rel for rel in gone[start : start + 1000])
                if progress is not None:
                    progress(min(start + 1000, len(gone)), len(gone))
        except StorageError as e:
            raise ApplyError(f"{e}; run the purge again") from None

    def digest(self, progress: Progress | None) -> fingerprint.TreeDigest:
        return objscan.digest(self.storage, bucket=self.bucket, progress=progress)
