"""The transaction's store on an object-store registry (rollback's moves: objrollback.py).

The store of transaction.py, with keys for folders: a target is the key
prefix ``<v2>/<path>/``; apply lists a batch of targets, records what they hold
(objmoves.py), copies each object server side into
``regplan-state/quarantine/<apply_id>/<slot>/`` in the same bucket, then
deletes the originals (a crash between the two leaves both copies: running
apply again copies again and deletes). Each batch is announced first by a
journal object under ``regplan-state/applies/<apply_id>/journal/``; the state
object is replaced at every step. Every step is decided by where each object
is, so a run killed anywhere is finished by running it again.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import attrs

from regplan.changes.records import ApplyRecord, parse_state, state_bytes
from regplan.changes.transaction import INDEX, batches
from regplan.errors import ApplyError, StalePlanError, StorageError
from regplan.plans import codec
from regplan.plans.plan import Target
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.storage.objects import objmoves, objtimes
from regplan.storage.objects.bucket import Bucket, Obj, ObjectStorage
from regplan.storage.objects.objlock import Lock

log = logging.getLogger(__name__)

JOBS = 16
"""Targets listed and copied at once (each waits on the server, not the CPU)."""


@attrs.frozen
class Place:
    """Where a target's keys lie: every key under its folder's prefix, or, for a file
    target (a leftover), the one key of that name in its folder's prefix."""

    target: str
    folder: str
    """The folder the keys' ``rel`` are relative to (a file target's parent)."""
    prefix: str
    """``folder``'s key prefix, ending in ``/``."""
    only: str | None = None

    def objects(self, bucket: Bucket) -> list[Obj]:
        if self.only is None:
            return list(bucket.objects(self.prefix))
        return [
            attrs.evolve(o, rel=self.only)
            for o in bucket.objects(self.prefix + self.only)
            if o.rel == ""  # not a longer name that shares the prefix
        ]


@attrs.frozen
class Keys:
    """Where one apply keeps its record and its quarantine in the bucket."""

    storage: ObjectStorage
    apply_id: str

    @property
    def record(self) -> str:
        return f"{self.storage.state_prefix}applies/{self.apply_id}/"

    @property
    def quarantine(self) -> str:
        return f"{self.storage.state_prefix}quarantine/{self.apply_id}/"

    def slot(self, index: int) -> str:
        return f"{self.quarantine}{index:07d}/"

    def source(self, path: str) -> str:
        return f"{self.storage.v2_prefix}{path}/"

    def place(self, t: Target) -> Place:
        if not t.kind.is_file:
            return Place(t.path, t.path, self.source(t.path))
        folder, _, name = t.path.rpartition("/")
        return Place(t.path, folder, self.source(folder), name)

    @property
    def state(self) -> str:
        return self.record + "state.json"

    @property
    def plan(self) -> str:
        return self.record + "plan.json"

    def journal(self, n: int) -> str:
        return f"{self.record}journal/{n:07d}.json"


def lock(bucket: Bucket, command: str, break_lock: bool) -> Lock:
    return Lock(bucket, command=command, now=time.time(), break_stale=break_lock)


def records(bucket: Bucket) -> list[ApplyRecord]:
    """Every apply recorded in the bucket's state, oldest first."""
    base = f"{bucket.storage.state_prefix}applies/"
    names, _ = bucket.folders(base)
    found = []
    for name in names:
        key = f"{base}{name}/state.json"
        try:
            found.append(parse_state(bucket.get(key, 1 << 20), bucket.url(key)))
        except FileNotFoundError:
            continue  # an apply that never got as far as its state
    return sorted(found, key=lambda r: r.seq)


def write_state(bucket: Bucket, keys: Keys, record: ApplyRecord) -> None:
    bucket.put(keys.state, state_bytes(record))


def load_state(bucket: Bucket, keys: Keys) -> ApplyRecord:
    where = bucket.url(keys.state)
    try:
        return parse_state(bucket.get(keys.state, 1 << 20), where)
    except FileNotFoundError:
        known = ", ".join(r.apply_id for r in records(bucket)) or "none"
        raise ApplyError(
            f"no apply {keys.apply_id} in {keys.storage.root}/regplan-state (applies: {known})"
        ) from None


@contextlib.contextmanager
def state_plan(bucket: Bucket, keys: Keys) -> Iterator[PlanStream]:
    """The plan an apply began with, downloaded to a private temporary file."""
    with tempfile.TemporaryFile() as f:
        try:
            bucket.get_to(keys.plan, f)
        except FileNotFoundError:
            raise ApplyError(
                f"apply {keys.apply_id} has no plan.json; nothing was changed"
            ) from None
        f.flush()
        with PlanStream.of_file(f, bucket.url(keys.plan)) as stream:
            yield stream


def _upload(bucket: Bucket, key: str, chunks: Iterable[bytes]) -> None:
    """Write an object from chunks through a temporary file (never whole in memory)."""
    with tempfile.TemporaryFile() as f:
        f.writelines(chunks)
        f.seek(0)
        bucket.put(key, f)


def begin(bucket: Bucket, plan: PlanStream, keys: Keys, record: ApplyRecord) -> None:
    _upload(bucket, keys.plan, plan.copy())  # the verified bytes, as read
    write_state(bucket, keys, record)
    _upload(
        bucket,
        keys.quarantine + INDEX,
        itertools.chain(
            (b"slot\tkind\tpath\n",),
            (f"{i:07d}\t{t.kind.value}\t{t.path}\n".encode() for i, t in enumerate(plan.targets())),
        ),
    )


def _listed(
    bucket: Bucket, keys: Keys, resuming: bool, item: tuple[int, Target]
) -> tuple[int, Place, list[Obj]]:
    """(slot, where, the target's objects); a resumed apply finds a target it moved before
    the crash in its slot."""
    i, t = item
    place = keys.place(t)
    objs = place.objects(bucket)
    if not objs and not (resuming and next(iter(bucket.objects(keys.slot(i))), None) is not None):
        raise StalePlanError(f"target {t.path} vanished since planning; nothing further was moved")
    if not all(objtimes.writable(o.rel) for o in objs):
        raise StalePlanError(f"a key with a tab or line break appeared under {t.path}")
    return i, place, objs


def move_targets(
    bucket: Bucket,
    plan: PlanStream,
    keys: Keys,
    progress: Progress | None,
    held: Lock,
    *,
    resuming: bool,
) -> int:
    """Copy each target's objects into its slot, then delete them from the storage, a
    batch at a time: list the batch's targets, record what they hold (objmoves.py), copy
    (in parallel), delete (1,000 keys per request)."""
    total = plan.counts["targets"]
    moved = 0
    overlay = objtimes.Overlay.load(bucket, keys.storage)

    listed = functools.partial(_listed, bucket, keys, resuming)

    def copy(item: tuple[int, Place, list[Obj]]) -> None:
        i, place, objs = item
        for o in objs:
            bucket.copy(place.prefix + o.rel, keys.slot(i) + o.rel, o.size)

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        for start, batch in batches(enumerate(plan.targets())):
            bucket.put(
                keys.journal(start),
                codec.canonical({"op": "move", "from": start, "to": start + len(batch)}),
            )
            try:
                found = list(pool.map(listed, batch))
                rows = "".join(
                    objmoves.row(i, o, overlay.time(f"{place.folder}/{o.rel}", o))
                    for i, place, objs in found
                    for o in objs
                )
                objmoves.append(bucket, objmoves.key(keys.record, start), rows)
                list(pool.map(copy, found))
                bucket.delete(place.prefix + o.rel for _, place, objs in found for o in objs)
            except StorageError as e:
                raise ApplyError(
                    f"{e}; {moved} moved so far, finish with the same apply, or undo with: "
                    f"regplan rollback {keys.apply_id}"
                ) from None
            moved += sum(1 for _, _, objs in found if objs)
            held.renew(time.time())
            if progress is not None:
                progress(start + len(batch), total)
    if progress is not None:
        progress(total, total)
    return moved
