"""The write side of an object-store registry (seam.Store): records, journal and
quarantine live in the bucket, under ``<rootdirectory>/regplan-state/``.

A record is one object, replaced whole by each write. A journal is a series of
objects (``<name>/<n>.json``, one per append: an object store appends nothing), read
back in key order. The lock is a lease (objlock.py) renewed after every batch. The
targets' moves are server-side copies and deletes (objmove.py).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from regplan.errors import ApplyError
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Bucket, Exists, ObjectStorage
from regplan.storage.objects.objlock import Lock
from regplan.storage.objects.objmove import Moves
from regplan.storage.seam import Folder, Holds, Item, Where


class BucketStore:
    """An object-store registry's write side (seam.Store). Its lock is a lease that can
    outlive a killed holder."""

    keeps_folders = False

    def __init__(self, storage: ObjectStorage, bucket: Bucket | None = None) -> None:
        self.storage = storage
        self.bucket = bucket or storage.open()
        self.held: Lock | None = None
        self.moves = Moves(self.bucket, storage)
        self._next: dict[str, int] = {}
        """Each journal's next object number, once listed."""

    @property
    def where(self) -> str:
        return self.storage.root

    @contextlib.contextmanager
    def lock(self, command: str, break_lock: bool) -> Iterator[Lock]:
        self.bucket.check()
        with Lock(self.bucket, command=command, now=time.time(), break_stale=break_lock) as held:
            self.held = held
            try:
                yield held
            finally:
                self.held = None

    def renew(self) -> None:
        if self.held is not None:
            self.held.renew(time.time())

    # -- records -------------------------------------------------------------------

    def key(self, name: str) -> str:
        return self.storage.state_prefix + name

    def url(self, name: str) -> str:
        return self.bucket.url(self.key(name))

    def names(self, prefix: str) -> list[str]:
        return sorted(self.bucket.folders(self.key(prefix))[0])

    def read(self, name: str, limit: int) -> bytes:
        return self.bucket.get(self.key(name), limit)

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[IO[bytes]]:
        """Downloaded to a private temporary file."""
        with tempfile.TemporaryFile() as f:
            self.bucket.get_to(self.key(name), f)
            f.flush()
            f.seek(0)
            yield f

    def write(self, name: str, chunks: Iterable[bytes], *, new: bool = False) -> None:
        """Through a temporary file (a plan is never whole in memory)."""
        with tempfile.TemporaryFile() as f:
            f.writelines(chunks)
            f.seek(0)
            try:
                self.bucket.put(self.key(name), f, new=new)
            except Exists:
                raise ApplyError(f"{self.url(name)} exists already; nothing was moved") from None

    def append(self, name: str, data: bytes) -> None:
        prefix = self.key(name) + "/"
        if name not in self._next:
            numbers = [int(o.rel[:7]) for o in self.bucket.objects(prefix) if o.rel[:7].isdigit()]
            self._next[name] = max(numbers, default=-1) + 1
        n = self._next[name]
        self.bucket.put(f"{prefix}{n:07d}.json", data)
        self._next[name] = n + 1

    def lines(self, name: str) -> list[bytes]:
        prefix = self.key(name) + "/"
        out: list[bytes] = []
        for o in self.bucket.objects(prefix):
            with contextlib.suppress(FileNotFoundError):
                out.extend(self.bucket.get(prefix + o.rel).splitlines())
        return out

    # -- targets -------------------------------------------------------------------

    def check(self, item: Item) -> None:
        self.moves.check(item)

    def prepare(self, apply_id: str) -> None:
        """A bucket has no folders to make."""

    def taken(self, apply_id: str) -> str | None:
        return self.moves.taken(apply_id)

    def locate(self, apply_id: str, items: Sequence[Item]) -> list[Where]:
        return self.moves.locate(apply_id, items)

    def in_slots(self, apply_id: str, items: Sequence[Item]) -> list[bool]:
        slots = self.moves.slots(apply_id)
        return [it.slot in slots for it in items]

    def move_out(self, apply_id: str, items: Sequence[Item]) -> None:
        self.moves.move_out(apply_id, items)

    def holds(self, apply_id: str, items: Sequence[Item]) -> list[Holds]:
        return self.moves.holds(apply_id, items)

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        self.moves.move_back(apply_id, items)

    def empty_folders(self, path: str) -> list[Folder]:
        return []  # a bucket has none (the transaction never asks: preflight refuses)

    def remove_folders(self, folders: Sequence[Folder]) -> None:
        del folders

    def make_folders(self, folders: Sequence[Folder]) -> None:
        del folders

    def delete(self, apply_id: str, progress: Progress | None) -> None:
        prefix = self.key(f"quarantine/{apply_id}/")
        gone = [o.rel for o in self.bucket.objects(prefix)]
        for start in range(0, len(gone), 1000):
            self.bucket.delete(prefix + rel for rel in gone[start : start + 1000])
            if progress is not None:
                progress(min(start + 1000, len(gone)), len(gone))

    def digest(self, progress: Progress | None) -> fingerprint.TreeDigest:
        return objscan.digest(self.storage, bucket=self.bucket, progress=progress)
