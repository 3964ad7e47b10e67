"""The moves of apply and rollback, written once over the storage seam (seam.Store).

Apply checks every target before anything moves, then moves the targets into their
slots a batch at a time, each batch announced in the journal first and confirmed
after, and last removes the empty folders the plan prunes (each journaled with its
mode first). A run killed anywhere is finished by running it again: a resumed apply
asks the store where each target is, and moves what is still in the storage.

Rollback refuses (nothing moved) when a target's place holds something the apply
did not move; otherwise it makes the pruned folders again and moves every slot back,
a batch at a time, so a rollback killed anywhere is finished by running it again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Set
from typing import TypeVar

import attrs

from regplan.changes import journal
from regplan.errors import ApplyError, StalePlanError, StorageError
from regplan.plans.plan import Target, TargetKind
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.storage.seam import Folder, Holds, Item, MoveError, Store, Where

T = TypeVar("T")

BATCH = 512
"""Moves per journal record (and per round of directory fsyncs on a filesystem)."""


def batches(items: Iterable[T]) -> Iterator[tuple[int, list[T]]]:
    """(index of the first, BATCH items) at a time."""
    it = iter(items)
    start = 0
    while batch := list(itertools.islice(it, BATCH)):
        yield start, batch
        start += len(batch)


def item(i: int, t: Target) -> Item:
    return Item(
        slot=i,
        path=t.path,
        file=t.kind.is_file,
        repository=t.kind == TargetKind.REPOSITORY,
        tag=t.kind == TargetKind.TAG,
    )


def _split(
    targets: Iterable[Target], pruned: list[Target], skip: Set[int] = frozenset()
) -> Iterator[Item]:
    """Every target to move (but those skipped); the empty folders to prune go to
    ``pruned`` as they pass (they come last: theirs is the last phase)."""
    for i, t in enumerate(targets):
        if i in skip:
            continue
        if t.kind == TargetKind.EMPTY_DIR:
            pruned.append(t)
        else:
            yield item(i, t)


def _vanished(path: str) -> StalePlanError:
    return StalePlanError(f"target {path} vanished since planning; nothing further was moved")


# -- apply ---------------------------------------------------------------------


def preflight(store: Store, plan: PlanStream, apply_id: str, skip: Set[int]) -> None:
    """Before anything moves, refuse what cannot be moved safely: a target gone or
    reached through a link, an empty folder where folders are no thing (a bucket), a
    target twice or inside another where keys move by prefix, a taken quarantine."""
    seen: set[str] | None = None if store.keeps_folders else set()
    for i, t in enumerate(plan.targets()):
        if i in skip:
            continue
        if t.kind == TargetKind.EMPTY_DIR and not store.keeps_folders:
            raise StalePlanError(
                f"target {t.path} is an empty folder: object storage has none "
                "(this plan was made for a filesystem)"
            )
        if seen is not None:
            _refuse_twice(seen, t.path)
        store.check(item(i, t))
    if seen is not None:
        for path in seen:
            parts = path.split("/")
            if any("/".join(parts[:i]) in seen for i in range(1, len(parts))):
                raise StalePlanError(
                    f"target {path} lies inside another target: not a plan regplan makes"
                )
    store.prepare(apply_id)
    taken = store.taken(apply_id)
    if taken is not None:
        raise ApplyError(f"quarantine already holds {taken}")


def _refuse_twice(seen: set[str], path: str) -> None:
    if path in seen:
        raise StalePlanError(f"target {path} is in the plan twice: not a plan regplan makes")
    seen.add(path)


def _left(store: Store, apply_id: str, batch: list[Item]) -> list[Item]:
    """The targets of a batch still in the storage (a resumed apply)."""
    todo = []
    for it, where in zip(batch, store.locate(apply_id, batch), strict=True):
        if where == Where.STORAGE:
            todo.append(it)
        elif where == Where.BOTH:
            raise ApplyError(
                f"{it.path} is both in the storage and in the quarantine: something "
                "recreated it during the apply; nothing further was moved"
            )
        elif where == Where.NEITHER:
            raise _vanished(it.path)
    return todo


def move_out(
    store: Store,
    plan: PlanStream,
    apply_id: str,
    progress: Progress | None,
    *,
    resuming: bool,
    skip: Set[int] = frozenset(),
) -> int:
    """Move what is still in the storage (but the targets skipped), then prune; how many
    targets moved."""
    name = journal.name(apply_id)
    pruned: list[Target] = []
    total = plan.counts["targets"]
    moved = 0
    for start, batch in batches(_split(plan.targets(), pruned, skip)):
        todo = _left(store, apply_id, batch) if resuming else batch
        if todo:
            store.append(name, journal.line("move", **{"from": start, "to": start + len(batch)}))
            try:
                store.move_out(apply_id, todo)
            except StorageError as e:
                moved += e.done if isinstance(e, MoveError) else 0
                raise ApplyError(
                    f"{e}; {moved} moved so far, finish with the same apply, or undo with: "
                    f"regplan rollback {apply_id}"
                ) from None
            store.append(name, journal.line("moved", to=start + len(batch)))
            moved += len(todo)
        store.renew()
        if progress is not None:
            progress(start + len(batch), total)
    # what an interrupted run pruned already (a store without folders has none to read)
    removed = {f.path for f in journal.pruned(journal.read(store, apply_id))} if pruned else set()
    for t in pruned:
        moved += _prune(store, t.path, removed, apply_id)
    if progress is not None:
        progress(total, total)
    return moved


def _prune(store: Store, path: str, removed: set[str], apply_id: str) -> int:
    """Remove an empty folder tree, journaling each folder's mode first."""
    try:
        folders = store.empty_folders(path)
    except StorageError as e:
        raise ApplyError(f"{e}; undo with: regplan rollback {apply_id}") from None
    if not folders:
        if path in removed:
            return 0
        raise _vanished(path)
    store.append(journal.name(apply_id), journal.removed(folders))
    try:
        store.remove_folders(folders)
    except StorageError as e:
        raise ApplyError(
            f"could not remove empty folder {path}: {e}; finish with the same apply, "
            f"or undo with: regplan rollback {apply_id}"
        ) from None
    return 1


# -- rollback ------------------------------------------------------------------


def _in_slots(
    store: Store,
    plan: PlanStream,
    apply_id: str,
    only: Set[int] | None,
    seen: Mapping[int, Holds] | None = None,
) -> Iterator[tuple[Item, Holds]]:
    """Every moved target (of ``only``, when given) whose slot still holds it, with what
    its place holds now; with ``seen`` (what the check under this lock found: the places
    not empty), the store is not asked again."""
    chosen = (it for it in _split(plan.targets(), []) if only is None or it.slot in only)
    for _, batch in batches(chosen):
        taken = [
            it for it, full in zip(batch, store.in_slots(apply_id, batch), strict=True) if full
        ]
        if not taken:
            continue
        if seen is not None:
            yield from ((it, seen.get(it.slot, Holds.NOTHING)) for it in taken)
        else:
            yield from zip(taken, store.holds(apply_id, taken), strict=True)


@attrs.frozen
class Back:
    """A rollback checked and ready: how many targets go back (or are back already, the
    same bytes pushed again), which folders are made again, which tags stay as pushed
    since (superseded: their apply-time version stays in the quarantine)."""

    targets: int
    folders: list[Folder]
    superseded: tuple[str, ...] = ()
    same: int = 0
    only: Set[int] | None = None
    """The targets to restore (``rollback --only``); None: all."""
    places: Mapping[int, Holds] = attrs.field(factory=dict)
    """What the check found at the places that are not empty (a few): the moves back
    need not ask again."""


def _superseded(it: Item, holds: Holds) -> bool:
    return holds == Holds.OTHER and it.tag


def check_back(store: Store, plan: PlanStream, apply_id: str, only: Set[int] | None = None) -> Back:
    """Refuse (nothing moved) when a place holds something unknown in the way (anything
    but a tag pushed again, or the same bytes), naming every one; or when a place cannot
    be reached safely."""
    folders = journal.pruned(journal.read(store, apply_id))
    back = same = 0
    superseded: list[str] = []
    conflicts: list[str] = []
    places: dict[int, Holds] = {}
    try:
        for it, holds in _in_slots(store, plan, apply_id, only):
            if holds != Holds.NOTHING:
                places[it.slot] = holds
            if _superseded(it, holds):
                superseded.append(it.path)
                continue
            back += 1
            same += holds == Holds.SAME
            if holds == Holds.OTHER:
                conflicts.append(it.path)
    except (StorageError, StalePlanError) as e:
        raise ApplyError(f"cannot roll back {apply_id}: {e}; nothing was moved") from None
    if conflicts:
        raise ApplyError(
            f"cannot roll back {apply_id}: {len(conflicts)} path(s) reappeared since the apply "
            f"(a new push?) with other content: {', '.join(sorted(conflicts))}; nothing was moved"
        )
    kept = folders if only is None else []
    return Back(back, kept, tuple(superseded), same, only, places)


def move_back(
    store: Store, plan: PlanStream, apply_id: str, ready: Back, progress: Progress | None
) -> tuple[int, int]:
    """Put back everything of one apply but the superseded tags: (targets restored,
    folders made again). The quarantine goes once nothing is left in it."""
    name = journal.name(apply_id)
    store.append(name, journal.line("rollback", restore=ready.targets, recreate=len(ready.folders)))
    try:
        store.make_folders(ready.folders)  # parents were journaled before their children
    except StorageError as e:
        raise ApplyError(
            f"could not recreate a pruned folder: {e}; nothing was moved back, "
            "run the rollback again once fixed"
        ) from None
    restored = 0
    found = _in_slots(store, plan, apply_id, ready.only, ready.places)
    going = (p for p in found if not _superseded(*p))
    for _, batch in batches(going):
        try:
            store.move_back(apply_id, batch)
        except StorageError as e:
            restored += e.done if isinstance(e, MoveError) else 0
            raise ApplyError(
                f"{e}; {restored} restored so far, run the same rollback again once fixed"
            ) from None
        restored += len(batch)
        store.append(name, journal.line("restored", count=restored))
        store.renew()
        if progress is not None:
            progress(restored, ready.targets)
    if store.taken(apply_id) is None:
        store.delete(apply_id, None)
    return restored, len(ready.folders)


def finish_purge(store: Store, apply_id: str, progress: Progress | None) -> None:
    """Delete a quarantine for good."""
    try:
        store.delete(apply_id, progress)
    except StorageError as e:
        raise ApplyError(f"{e}; run the purge again") from None
