"""Moves on an object store: a target is every key under its folder's prefix (or, for a
file target, the one key of that name), moved by server-side copies into its slot
``regplan-state/quarantine/<apply_id>/<slot>/`` and then deleted.

Before copying a batch, what each target holds is recorded (objmoves.py): a crash
between the copies and the deletes leaves both, and the records say which keys at a
place are the originals (not yet deleted, or put back by an interrupted rollback) and
which are new (a push since). A rollback records each restored key's original time
(objtimes.py), so the next plan decides as the one before the apply did.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from regplan.errors import StalePlanError, StorageError
from regplan.storage.objects import objmoves, objtimes
from regplan.storage.objects.bucket import Bucket, Exists, Obj, ObjectStorage
from regplan.storage.objects.objlist import Place, listed
from regplan.storage.objects.objpreflight import refuse_namespace
from regplan.storage.seam import Holds, Item, Where

JOBS = 16
"""Copies (and reads) at once (each waits on the server, not the CPU)."""

SMALL = 1 << 20
"""Objects compared byte for byte when the store keeps no content hash of them."""


class Moves:
    """The copies and deletes of one bucket's registry."""

    def __init__(self, bucket: Bucket, storage: ObjectStorage) -> None:
        self.bucket, self.storage = bucket, storage
        self._slots: dict[str, dict[int, list[Obj]]] = {}
        """Each quarantine's objects by slot, listed once (rollback)."""
        self._moved: dict[str, dict[int, dict[str, objmoves.Moved]]] = {}

    def quarantine(self, apply_id: str) -> str:
        return f"{self.storage.state_prefix}quarantine/{apply_id}/"

    def record(self, apply_id: str) -> str:
        return f"{self.storage.state_prefix}applies/{apply_id}/"

    def slot(self, apply_id: str, index: int) -> str:
        return f"{self.quarantine(apply_id)}{index:07d}/"

    def place(self, it: Item) -> Place:
        source = self.storage.v2_prefix
        if not it.file:
            return Place(it.path, it.path, f"{source}{it.path}/")
        folder, _, name = it.path.rpartition("/")
        return Place(it.path, folder, f"{source}{folder}/", name)

    def check(self, item: Item) -> None:
        if item.repository:
            refuse_namespace(self.bucket, f"{self.storage.v2_prefix}{item.path}/", item.path)

    def taken(self, apply_id: str) -> str | None:
        first = next(iter(self.bucket.objects(self.quarantine(apply_id))), None)
        if first is None or not first.rel[:7].isdigit():
            return None
        return self.bucket.url(self.quarantine(apply_id) + first.rel[:7])

    def locate(self, apply_id: str, items: Sequence[Item]) -> list[Where]:
        """A target still at its place is moved (again: a copy interrupted before its
        deletes is made again); one only in its slot was moved."""
        slots = self.slots(apply_id)  # as this run began: it moves no batch before locating it
        return [
            Where.STORAGE if there else Where.QUARANTINE if it.slot in slots else Where.NEITHER
            for it, there in zip(items, self.at_places(items), strict=True)
        ]

    def at_places(self, items: Sequence[Item]) -> list[list[Obj]]:
        """What each target's place holds now (objlist.py: a page for many places)."""
        return listed(self.bucket, [self.place(it) for it in items])

    @functools.cached_property
    def overlay(self) -> objtimes.Overlay:
        return objtimes.Overlay.load(self.bucket, self.storage)

    def move_out(self, apply_id: str, items: Sequence[Item]) -> None:
        """List the batch's places (objlist.py), record what they hold, copy each key on
        the condition that it is the version listed (in parallel), then delete (1,000
        keys per request on S3)."""
        found = []
        for it, objs in zip(items, self.at_places(items), strict=True):
            if not objs:
                raise StalePlanError(
                    f"target {it.path} vanished since planning; nothing further was moved"
                )
            if not all(objtimes.writable(o.rel) for o in objs):
                raise StalePlanError(f"a key with a tab or line break appeared under {it.path}")
            found.append((it, self.place(it), objs))
        rows = "".join(
            objmoves.row(it.slot, o, self.overlay.time(f"{place.folder}/{o.rel}", o))
            for it, place, objs in found
            for o in objs
        )
        objmoves.append(self.bucket, objmoves.key(self.record(apply_id), items[0].slot), rows)
        copies = [
            (place.prefix + o.rel, self.slot(apply_id, it.slot) + o.rel, o)
            for it, place, objs in found
            for o in objs
        ]
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            list(pool.map(lambda c: self._copy(*c), copies))
        self.bucket.delete(src for src, _, _ in copies)
        self._slots.pop(apply_id, None)  # what the slots hold has changed

    def _copy(self, src: str, dst: str, o: Obj) -> tuple[str, float]:
        """Copy the version of ``src`` that was listed, or fail (nothing is deleted)."""
        try:
            return self.bucket.copy(src, dst, o.size, if_match=o.etag)
        except Exists:
            raise StorageError(
                f"{self.bucket.url(src)} changed since it was listed (written during the "
                "apply?): not copied"
            ) from None

    # -- rollback ------------------------------------------------------------------

    def slots(self, apply_id: str) -> dict[int, list[Obj]]:
        """The quarantine's objects by slot (one listing of the whole quarantine)."""
        if apply_id not in self._slots:
            out: dict[int, list[Obj]] = {}
            for o in self.bucket.objects(self.quarantine(apply_id)):
                index, sep, rest = o.rel.partition("/")
                if sep and index.isdigit():  # rest "": a folder marker at the slot's prefix
                    out.setdefault(int(index), []).append(attrs.evolve(o, rel=rest))
            self._slots[apply_id] = out
        return self._slots[apply_id]

    def moved(self, apply_id: str) -> dict[int, dict[str, objmoves.Moved]]:
        """What the apply moved, by slot (objmoves.py); for an apply recorded before moves
        were, what its slots hold."""
        if apply_id not in self._moved:
            moved = objmoves.load(self.bucket, self.record(apply_id))
            for i, objs in self.slots(apply_id).items():
                if i not in moved:
                    moved[i] = {o.rel: objmoves.Moved(o.size, o.content, o.mtime) for o in objs}
            self._moved[apply_id] = moved
        return self._moved[apply_id]

    def holds(self, apply_id: str, items: Sequence[Item]) -> list[Holds]:
        """The keys the apply recorded, unchanged, are the originals; anything else at
        a place is new (a push since the apply, or a key pushed again with other bytes)."""
        moved = self.moved(apply_id)

        def holds(pair: tuple[Item, list[Obj]]) -> Holds:
            it, there = pair
            mine = moved.get(it.slot, {})
            if not there:
                return Holds.NOTHING
            if all(o.rel in mine and mine[o.rel].same(o) for o in there):
                return Holds.ORIGINAL
            return Holds.SAME if self._same(apply_id, it, there) else Holds.OTHER

        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            return list(pool.map(holds, zip(items, self.at_places(items), strict=True)))

    def _same(self, apply_id: str, it: Item, there: list[Obj]) -> bool:
        """The place holds every key the slot holds, each the same size and content hash
        (read and compared where the store keeps none; a large blob's ``data`` is named
        by its digest: its size): the slot adds nothing (a slot a killed rollback emptied
        in part holds less)."""
        copies = {o.rel: o for o in self.slots(apply_id).get(it.slot, [])}
        here = {o.rel: o for o in there}
        if not copies.keys() <= here.keys():
            return False
        prefix, slot = self.place(it).prefix, self.slot(apply_id, it.slot)
        for c in copies.values():
            o = here[c.rel]
            if o.size != c.size:
                return False
            if o.content is not None and c.content is not None:
                if o.content != c.content:
                    return False
            elif o.size <= SMALL or not it.path.startswith("blobs/"):
                limit = SMALL + 1
                if self.bucket.get(prefix + o.rel, limit) != self.bucket.get(slot + o.rel, limit):
                    return False
        return True

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        """Copy back what a place lacks, record the restored keys' original times, then
        delete the slots' copies."""
        slots, moved = self.slots(apply_id), self.moved(apply_id)
        originals = [it for it, holds in items if holds == Holds.ORIGINAL]
        at = dict(zip((it.slot for it in originals), self.at_places(originals), strict=True))

        def one(pair: tuple[Item, Holds]) -> tuple[list[str], str]:
            it, holds = pair
            if holds == Holds.OTHER:
                raise StorageError(f"{it.path} is taken again: not moved back")
            if holds == Holds.SAME:  # pushed again, byte for byte: the copy goes
                return [self.slot(apply_id, it.slot) + o.rel for o in slots.get(it.slot, [])], ""
            place = self.place(it)
            there = {o.rel: o for o in at.get(it.slot, [])}
            rows = []
            for o in slots.get(it.slot, []):
                now = there.get(o.rel)  # copied but not yet deleted by an interrupted apply
                etag, mtime = (
                    (now.etag, now.mtime)
                    if now is not None
                    else self._copy(self.slot(apply_id, it.slot) + o.rel, place.prefix + o.rel, o)
                )
                original = moved.get(it.slot, {}).get(o.rel)
                rel = f"{place.folder}/{o.rel}"
                if original is not None and objtimes.dated(rel):
                    rows.append(objtimes.restored_row(rel, etag, original.time, mtime))
            return [self.slot(apply_id, it.slot) + o.rel for o in slots.get(it.slot, [])], "".join(
                rows
            )

        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            done = list(pool.map(one, items))
        key = objtimes.restored_key(self.storage, apply_id, items[0][0].slot)
        objmoves.append(self.bucket, key, "".join(r for _, r in done))
        self.bucket.delete(k for keys, _ in done for k in keys)
