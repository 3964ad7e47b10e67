"""Rollback's moves on an object-store registry: copy back what the storage lacks, then
delete the quarantine, a batch at a time, each announced by a journal object first.

What is at a target's place decides each step (objmoves.py): the keys the apply
recorded, unchanged, are the originals (an apply killed before deleting them, or a
rollback killed before cleaning up) and are not copied again; anything else there is
a push since the apply, and nothing is moved. So a rollback killed anywhere is
finished by running it again. Each restored key's original time is recorded
(objtimes.py), so that the next plan decides as the one before the apply did.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import attrs

from regplan.changes.transaction import INDEX, batches
from regplan.errors import ApplyError, StorageError
from regplan.plans import codec
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.storage.objects import objmoves, objtimes
from regplan.storage.objects.bucket import Bucket, Obj
from regplan.storage.objects.objapply import Keys, Place
from regplan.storage.objects.objlock import Lock

JOBS = 16
"""Targets listed and copied at once (each waits on the server, not the CPU)."""


def _slots(bucket: Bucket, keys: Keys) -> dict[int, list[Obj]]:
    """The quarantine's objects by slot (one listing of the whole quarantine)."""
    out: dict[int, list[Obj]] = {}
    for o in bucket.objects(keys.quarantine):
        slot, sep, rest = o.rel.partition("/")
        if sep and slot.isdigit():  # rest "": a folder marker at the target's own prefix
            out.setdefault(int(slot), []).append(attrs.evolve(o, rel=rest))
    return out


@attrs.frozen
class BucketRestore:
    """A checked rollback (transaction.Restore): copy back, then empty the quarantine."""

    bucket: Bucket
    keys: Keys
    held: Lock
    slots: dict[int, list[Obj]]
    paths: dict[int, Place]
    present: dict[int, dict[str, Obj]]
    moved: dict[int, dict[str, objmoves.Moved]]

    @classmethod
    def check(cls, bucket: Bucket, keys: Keys, plan: PlanStream, held: Lock) -> BucketRestore:
        """Refuse (nothing moved) when a target's place holds something new."""
        slots = _slots(bucket, keys)
        paths = {i: keys.place(t) for i, t in enumerate(plan.targets()) if i in slots}
        moved = _originals(bucket, keys, slots)
        present = _refuse_reappeared(bucket, keys, moved, paths)
        return cls(bucket, keys, held, slots, paths, present, moved)

    def run(self, progress: Progress | None) -> tuple[int, int]:
        restored = _restore(
            self.bucket,
            self.keys,
            self.slots,
            self.paths,
            (self.present, self.moved),
            progress,
            self.held,
        )
        self.bucket.delete([self.keys.quarantine + INDEX])
        return restored, 0


def _originals(
    bucket: Bucket, keys: Keys, slots: dict[int, list[Obj]]
) -> dict[int, dict[str, objmoves.Moved]]:
    """What the apply moved, by slot (objmoves.py); for an apply recorded before moves
    were, what its slots hold."""
    moved = objmoves.load(bucket, keys.record)
    for i, objs in slots.items():
        if i not in moved:
            moved[i] = {o.rel: objmoves.Moved(o.size, o.content, o.mtime) for o in objs}
    return moved


def _refuse_reappeared(
    bucket: Bucket,
    keys: Keys,
    moved: dict[int, dict[str, objmoves.Moved]],
    paths: dict[int, Place],
) -> dict[int, dict[str, Obj]]:
    """A target's place may hold originals (keys the apply recorded, unchanged): not yet
    deleted by an interrupted apply, or restored by an interrupted rollback. Anything else
    there is new (a push since the apply, or a key re-pushed with other bytes): refuse.
    Returns, for the targets whose place is not empty, the keys there (not to copy)."""
    reappeared: list[str] = []
    present: dict[int, dict[str, Obj]] = {}

    def check(i: int) -> None:
        mine = moved[i]
        there = {o.rel: o for o in paths[i].objects(bucket)}
        if any(rel not in mine or not mine[rel].same(o) for rel, o in there.items()):
            reappeared.append(paths[i].target)
        elif there:
            present[i] = there

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        list(pool.map(check, sorted(paths)))
    if reappeared:
        raise ApplyError(
            f"cannot roll back {keys.apply_id}: {len(reappeared)} path(s) reappeared since the "
            f"apply (a new push?), first {sorted(reappeared)[0]}; nothing was moved"
        )
    return present


def _restore(
    bucket: Bucket,
    keys: Keys,
    slots: dict[int, list[Obj]],
    paths: dict[int, Place],
    seen: tuple[dict[int, dict[str, Obj]], dict[int, dict[str, objmoves.Moved]]],
    progress: Progress | None,
    held: Lock,
) -> int:
    """Copy back what the storage lacks (``present``: what it holds, seen under the lock
    by the check before), record the restored keys' original times, then delete the
    quarantine's copies, a batch at a time."""
    restored = 0
    total = len(paths)
    present, moved = seen

    def one(i: int) -> tuple[list[str], str]:
        source = paths[i].prefix
        there = present.get(i, {})
        rows = []
        for o in slots[i]:
            now = there.get(o.rel)  # copied but not yet deleted by an interrupted apply
            etag, mtime = (
                (now.etag, now.mtime)
                if now is not None
                else bucket.copy(keys.slot(i) + o.rel, source + o.rel, o.size)
            )
            original = moved[i].get(o.rel)
            rel = f"{paths[i].folder}/{o.rel}"
            if original is not None and objtimes.dated(rel):
                rows.append(objtimes.restored_row(rel, etag, original.time, mtime))
        return [keys.slot(i) + o.rel for o in slots[i]], "".join(rows)

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        for start, batch in batches(sorted(paths)):
            bucket.put(
                keys.journal(1_000_000 + start),
                codec.canonical({"op": "rollback", "from": start, "to": start + len(batch)}),
            )
            try:
                done = list(pool.map(one, batch))
                rows = "".join(r for _, r in done)
                key = objtimes.restored_key(keys.storage, keys.apply_id, batch[0])
                objmoves.append(bucket, key, rows)
                bucket.delete(k for objs, _ in done for k in objs)
            except StorageError as e:
                raise ApplyError(
                    f"{e}; {restored} restored so far, run the same rollback again once fixed"
                ) from None
            restored += len(batch)
            held.renew(time.time())
            if progress is not None:
                progress(restored, total)
    return restored
