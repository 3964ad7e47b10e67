"""The transaction, written once: apply, rollback, purge and history over a storage's
write side (seam.Store: primitives over names and bytes).

What the steps are, in which order, what is refused, and what each record says is
decided here (with the moves in moves.py, the records in applies.py and the journal
in journal.py), so every store keeps the same promises (tests/test_contract.py runs
them on each). What a move is (a rename, a server-side copy and delete) is the store's.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from datetime import datetime
from typing import Any

import attrs

from regplan.changes import applies, moves
from regplan.changes.recheck import Recheck, describe, resumed
from regplan.changes.records import ApplyRecord, By, State, stamped
from regplan.errors import ApplyError, StalePlanError
from regplan.plans import signing
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.scan.layout import part_of
from regplan.storage.seam import Store

log = logging.getLogger(__name__)

LIVE = (State.APPLYING, State.APPLIED, State.ROLLING_BACK, State.PARTLY_ROLLED_BACK)
"""States in which an apply's moves are (partly) in effect."""


def iso(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(now: datetime) -> str:
    """UTC time for reading, random hex for uniqueness (two applies can share a second)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


@attrs.frozen(kw_only=True)
class ApplyResult:
    apply_id: str
    plan_id: str
    moved: int
    bytes: int
    quarantine: str
    """A folder, or for object storage the key prefix of the quarantine."""
    resumed: bool
    fingerprint_ok: bool
    changed: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    """(path, why) of the plan's targets that stayed (recheck.py)."""

    @property
    def skip_summary(self) -> str:
        """How many targets stayed, by reason (one line)."""
        return describe(why for _, why in self.skipped)


@attrs.frozen(kw_only=True)
class RollbackResult:
    apply_id: str
    restored: int
    recreated: int
    fingerprint_ok: bool
    changed: tuple[str, ...] = ()
    superseded: tuple[str, ...] = ()
    """Tags pushed again since the apply: left as pushed, their apply-time version kept
    in the quarantine."""
    same: int = 0
    """Targets pushed again since the apply with the same bytes (counted as restored)."""
    whole: bool = True
    """False after ``rollback --only``: the rest is still in the quarantine."""


def record_json(r: ApplyRecord) -> dict[str, Any]:
    """One apply as ``history --json`` prints it."""
    return {
        "apply_id": r.apply_id,
        "state": r.state.value,
        "plan_id": r.plan_id,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
        "targets": r.targets,
        "bytes": r.bytes,
        "note": r.note,
        "registry": r.registry,
        "superseded": r.superseded,
    }


# -- apply ---------------------------------------------------------------------


def apply(
    stream: PlanStream,
    store: Store,
    *,
    now: datetime,
    check_fresh: Callable[[], None],
    recheck: Callable[[Recheck | None, Set[int]], Recheck] | None = None,
    progress: Progress | None = None,
    scan_progress: Progress | None = None,
    break_lock: bool = False,
    registry: str = "",
    by: By | None = None,
) -> ApplyResult:
    """Move a verified plan's targets into quarantine, or finish its interrupted apply.

    With ``recheck`` (recheck.py: the plan decided again on the tree as it is now),
    only what still holds moves and the rest is skipped; without, ``check_fresh``
    refuses a plan the storage no longer matches exactly. Either runs under the lock,
    before anything is written."""
    plan = stream.header
    with store.lock(f"apply {plan.plan_id}", break_lock):
        resuming = interrupted(applies.records(store), plan.plan_id)
        if resuming is not None:
            _refuse_another_plan(store, stream, resuming)
            log.info("resuming apply %s", resuming.apply_id)
            record = stamped(resuming, by)
            found = _decided_again(stream, store, resuming.apply_id, recheck)
        else:
            _refuse_beside_interrupted(store, plan.plan_id)
            found = _decide(stream, check_fresh, recheck)
            record = _begin(stream, store, found, now, registry, by)
        skip = found.skip if found is not None else frozenset()
        moved = moves.move_out(
            store, stream, record.apply_id, progress, resuming=resuming is not None, skip=skip
        )
        expected = found.after if found is not None else None
        changed = _final_check(stream, store.digest(scan_progress), expected)
        note = "tree differs from the plan's prediction: " + fingerprint.describe_changes(changed)
        applies.save(
            store,
            attrs.evolve(
                record, state=State.APPLIED, updated_at=iso(now), note=note if changed else ""
            ),
        )
    return ApplyResult(
        apply_id=record.apply_id,
        plan_id=plan.plan_id,
        moved=moved,
        bytes=record.bytes,
        quarantine=store.url(applies.quarantine(record.apply_id)),
        resumed=resuming is not None,
        fingerprint_ok=not changed,
        changed=changed,
        skipped=tuple((p, w) for _, p, w in found.skipped) if found is not None else (),
    )


def _begin(
    stream: PlanStream,
    store: Store,
    found: Recheck | None,
    now: datetime,
    registry: str,
    by: By | None = None,
) -> ApplyRecord:
    """Refuse what cannot move, then keep the plan, the first record and what moves."""
    apply_id = new_id(now)
    skip = found.skip if found is not None else frozenset()
    moves.preflight(store, stream, apply_id, skip)
    record = stamped(_first_record(stream, store, apply_id, now, registry, found), by)
    if found is not None:
        applies.keep_recheck(store, apply_id, found)
    applies.begin(store, stream, record)
    return record


def _final_check(
    stream: PlanStream, after: fingerprint.TreeDigest, expected: fingerprint.TreeDigest | None
) -> tuple[str, ...]:
    """What differs from the tree expected once the apply is done (nothing: ())."""
    wanted = expected.digest if expected is not None else stream.header.fingerprint.after
    return () if after.digest == wanted else unexpected_changes(stream, after, expected)


def _refuse_another_plan(store: Store, stream: PlanStream, resuming: ApplyRecord) -> None:
    with applies.began(store, resuming.apply_id) as began:
        if signing.body_digest(began) != signing.body_digest(stream):
            raise ApplyError(
                f"this plan differs from the plan apply {resuming.apply_id} began with "
                f"({store.url(applies.plan(resuming.apply_id))}); finish that one, or roll it "
                "back"
            )


def _decided_again(
    stream: PlanStream,
    store: Store,
    apply_id: str,
    recheck: Callable[[Recheck | None, Set[int]], Recheck] | None,
) -> Recheck | None:
    """An apply killed part way, run again: what it decided, and what the tree as it is
    now skips of what it had still to move (a push while it was down may need it)."""
    before = applies.read_recheck(store, apply_id)
    if before is None or recheck is None:
        return before
    items = [moves.item(i, t) for i, t in enumerate(stream.targets())]
    full = store.in_slots(apply_id, items)
    started = {it.slot for it, taken in zip(items, full, strict=True) if taken}
    found = resumed(before, recheck(before, started))
    applies.keep_recheck(store, apply_id, found, again=True)
    return found


def _decide(
    stream: PlanStream,
    check_fresh: Callable[[], None],
    recheck: Callable[[Recheck | None, Set[int]], Recheck] | None,
) -> Recheck | None:
    """What moves: everything as planned (None: the tree must be the one planned), or
    what still holds (a plan whose targets carry their digests)."""
    first = next(iter(stream.targets()), None)
    if recheck is None or first is None or first.digest is None:
        check_fresh()
        return None
    found = recheck(None, frozenset())
    if len(found.skipped) == stream.counts["targets"]:
        raise StalePlanError(
            f"nothing of plan {stream.header.plan_id} applies any more: "
            f"{describe(w for _, _, w in found.skipped)}; nothing was moved"
        )
    return found


def _first_record(
    plan: PlanStream,
    store: Store,
    apply_id: str,
    now: datetime,
    registry: str,
    found: Recheck | None,
) -> ApplyRecord:
    skipped, skipped_bytes = (len(found.skipped), found.bytes) if found is not None else (0, 0)
    return ApplyRecord(
        seq=1 + max((r.seq for r in applies.records(store)), default=0),
        apply_id=apply_id,
        plan_id=plan.header.plan_id,
        state=State.APPLYING,
        root=store.where,
        started_at=iso(now),
        updated_at=iso(now),
        targets=plan.counts["targets"] - skipped,
        bytes=plan.header.summary.bytes - skipped_bytes,
        registry=registry,
    )


def interrupted(applies: Iterable[ApplyRecord], plan_id: str) -> ApplyRecord | None:
    """The interrupted apply of this plan to resume, or None to begin one; refuses a plan
    already applied (exit 4) or one whose apply was being rolled back."""
    previous = [r for r in applies if r.plan_id == plan_id]
    for r in previous:
        if r.state in (State.APPLIED, State.PARTLY_ROLLED_BACK, State.PURGING, State.PURGED):
            raise StalePlanError(f"plan {plan_id} was already applied as {r.apply_id}")
        if r.state == State.ROLLING_BACK:
            raise ApplyError(
                f"apply {r.apply_id} of this plan was interrupted while rolling back: "
                f"finish it with: regplan rollback {r.apply_id}"
            )
    return next((r for r in previous if r.state == State.APPLYING), None)


def _refuse_beside_interrupted(store: Store, plan_id: str) -> None:
    """Another plan's apply or rollback was interrupted: its moves are half done, so any
    other plan would only find the tree "stale"; name it and how to finish it instead."""
    for r in applies.records(store):
        if r.plan_id == plan_id:
            continue
        if r.state == State.APPLYING:
            raise ApplyError(
                f"apply {r.apply_id} of plan {r.plan_id} was interrupted: finish it by running "
                f"the same regplan apply of that plan again (its verified copy: "
                f"{store.url(applies.plan(r.apply_id))}), or undo it with: "
                f"regplan rollback {r.apply_id}; nothing was moved"
            )
        if r.state == State.ROLLING_BACK:
            raise ApplyError(
                f"the rollback of apply {r.apply_id} (plan {r.plan_id}) was interrupted: "
                f"finish it with: regplan rollback {r.apply_id}; nothing was moved"
            )


def unexpected_changes(
    plan: PlanStream, actual: fingerprint.TreeDigest, expected: fingerprint.TreeDigest | None
) -> tuple[str, ...]:
    """Name what differs from the prediction (the plan's, or the apply's own when it
    skipped targets), as precisely as the parts allow."""
    touched = {part_of(t.path) for t in plan.targets()}
    parts = plan.header.fingerprint.parts if expected is None else expected.named_parts()
    wanted = {k: v for k, v in parts.items() if k not in touched}
    seen = {k: v for k, v in actual.named_parts().items() if k not in touched}
    changed = fingerprint.changed_parts(wanted, seen)
    return tuple(changed) or (f"within the {len(touched)} part(s) this plan changes",)


# -- rollback ------------------------------------------------------------------


def rollback(
    store: Store,
    apply_id: str,
    *,
    now: datetime,
    scan_progress: Progress | None = None,
    progress: Progress | None = None,
    break_lock: bool = False,
    registry: str = "",
    only: tuple[str, ...] = (),
    choose: Callable[[PlanStream, tuple[str, ...]], set[int]] | None = None,
    by: By | None = None,
) -> RollbackResult:
    """Put everything of one apply back (``only``: the images those references name,
    the targets ``choose`` finds for them, as ``rollback --only``; the rest stays in the
    quarantine); refuse (nothing moved) when a target's place holds something unknown,
    or a later apply touched the same folders. A rollback killed part way is finished by
    any rollback after it: with at least the references it had."""
    with store.lock(f"rollback {apply_id}", break_lock):
        record = applies.load(store, apply_id)
        _refuse_gone(record, partly=bool(only))
        refs = _with_interrupted(record, only)
        with applies.began(store, apply_id) as plan:
            _refuse_out_of_order(store, record, plan)
            chosen = choose(plan, refs) if refs and choose is not None else None
            ready = moves.check_back(store, plan, apply_id, chosen)
            record = stamped(attrs.evolve(rolling_back(record, now, registry), only=refs), by)
            applies.save(store, record)
            restored, recreated = moves.move_back(store, plan, apply_id, ready, progress)
            before = _before(store, apply_id, plan)
        whole = store.taken(apply_id) is None or not refs
        changed = _changed_from(before, store.digest(scan_progress)) if whole else ()
        note = "tree differs from the one the apply found: " + fingerprint.describe_changes(changed)
        applies.save(
            store,
            attrs.evolve(
                record,
                state=State.ROLLED_BACK if whole else State.PARTLY_ROLLED_BACK,
                bytes=0 if whole else record.bytes,
                updated_at=iso(now),
                note=note if changed else "",
                superseded=len(ready.superseded),
            ),
        )
    return RollbackResult(
        apply_id=apply_id,
        restored=restored,
        recreated=recreated,
        fingerprint_ok=not changed,
        changed=changed,
        superseded=ready.superseded,
        same=ready.same,
        whole=whole,
    )


def _with_interrupted(record: ApplyRecord, only: tuple[str, ...]) -> tuple[str, ...]:
    """The references a rollback restores: ``only``, and those of a rollback of the
    same apply killed part way (all of them, when that one restored all)."""
    if record.state != State.ROLLING_BACK or not only:
        return only
    if not record.only:
        return ()
    return tuple(sorted(set(record.only) | set(only)))


def _refuse_gone(record: ApplyRecord, *, partly: bool) -> None:
    """Nothing to restore: purged (its quarantine is gone), or rolled back already."""
    if record.state in (State.PURGING, State.PURGED):
        raise ApplyError(
            f"apply {record.apply_id} was purged: its quarantine is gone, nothing to restore"
        )
    if record.state == State.ROLLED_BACK:
        error = StalePlanError if partly else ApplyError
        raise error(f"apply {record.apply_id} was already rolled back")


def _changed_from(
    before: tuple[str, Mapping[str, str]], now: fingerprint.TreeDigest
) -> tuple[str, ...]:
    if now.digest == before[0]:
        return ()
    return tuple(fingerprint.changed_parts(before[1], now.named_parts())) or ("the tree",)


def _before(store: Store, apply_id: str, plan: PlanStream) -> tuple[str, Mapping[str, str]]:
    """The tree the apply found (what a rollback restores), its digest and named parts:
    the one it read again when it skipped what changed since planning, else the one
    planned."""
    found = applies.read_recheck(store, apply_id)
    if found is not None and found.before is not None:
        return found.before.digest, found.before.named_parts()
    fp = plan.header.fingerprint
    return fp.before, fp.parts


def rolling_back(record: ApplyRecord, now: datetime, registry: str) -> ApplyRecord:
    """The record as a rollback begins: how it knew the registry could not write joins
    the apply's."""
    said = f"{record.registry}; rollback: {registry}" if record.registry else registry
    return attrs.evolve(record, state=State.ROLLING_BACK, updated_at=iso(now), registry=said)


def _refuse_out_of_order(store: Store, record: ApplyRecord, plan: PlanStream) -> None:
    """Undo applies in reverse order where they touch the same folders: rolling back an
    earlier one first would recreate what a later one removed, and then the later one
    could never be rolled back cleanly. (Only when a later apply is live are the two
    plans' paths held, to compare them.)"""
    mine: list[str] | None = None
    for later in applies.records(store):
        if later.seq <= record.seq or later.state not in LIVE:
            continue
        if mine is None:
            mine = [t.path for t in plan.targets()]
        with applies.began(store, later.apply_id) as other:
            clash = overlap(mine, [t.path for t in other.targets()])
        if clash is not None:
            raise ApplyError(
                f"cannot roll back {record.apply_id} before {later.apply_id}, which was applied "
                f"after it and also touched {clash}: first run: regplan rollback {later.apply_id}"
            )


def overlap(a: Sequence[str], b: Sequence[str]) -> str | None:
    """A path of ``b`` that is, holds or lies inside a path of ``a``, or None."""
    mine = set(a)
    above = {p.rsplit("/", i)[0] for p in a for i in range(1, p.count("/") + 1)}
    for path in b:
        if path in mine or path in above:
            return path
        parts = path.split("/")
        if any("/".join(parts[:i]) in mine for i in range(1, len(parts))):
            return path
    return None
