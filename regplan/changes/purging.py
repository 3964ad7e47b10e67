"""Purge: delete the quarantine of one apply, or of every applied one older than an age,
for good (written once over the storage seam, as the rest of the transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from regplan.changes import applies, moves
from regplan.changes.records import ApplyRecord, By, State, stamped
from regplan.changes.transaction import iso
from regplan.errors import ApplyError
from regplan.progress import Progress
from regplan.storage.seam import Store


def purge(
    store: Store,
    *,
    apply_id: str | None,
    older_than: timedelta | None,
    now: datetime,
    progress: Progress | None = None,
    include_unverified: bool = False,
    break_lock: bool = False,
    by: By | None = None,
) -> list[ApplyRecord]:
    """Delete the quarantine of one apply, or of every applied one older than an age.

    An apply whose final check found the tree other than predicted (its note says
    how) is left out of ``older_than`` unless ``include_unverified``: someone
    must look at it first, and purging it by id is that decision."""
    with store.lock(f"purge {apply_id or 'older than ' + str(older_than)}", break_lock):
        if apply_id is not None:
            chosen = purgeable([applies.load(store, apply_id)])
        else:
            chosen = purgeable(applies.records(store), older_than, now, include_unverified)
        done = []
        for record in (stamped(r, by) for r in chosen):
            applies.save(store, attrs.evolve(record, state=State.PURGING, updated_at=iso(now)))
            moves.finish_purge(store, record.apply_id, progress)
            final = attrs.evolve(record, state=State.PURGED, bytes=0, updated_at=iso(now))
            applies.save(store, final)
            done.append(final)
        return done


def purgeable(
    found: Sequence[ApplyRecord],
    older_than: timedelta | None = None,
    now: datetime | None = None,
    include_unverified: bool = False,
) -> list[ApplyRecord]:
    """What a purge deletes: the one apply asked for by id (refused unless applied), or
    (``now`` given) every applied one older than ``older_than`` whose final check held
    unless ``include_unverified``."""
    if now is None:
        [record] = found
        if not _holds_quarantine(record):
            raise ApplyError(
                f"apply {record.apply_id} is {record.state.value}; only an applied one (or one "
                "rolled back around tags pushed since) can be purged"
            )
        return [record]
    cutoff = iso(now - (older_than or timedelta(0)))
    return [
        r
        for r in found
        if _holds_quarantine(r)
        and r.updated_at <= cutoff
        and (include_unverified or not r.note or r.state == State.ROLLED_BACK)
    ]


def _holds_quarantine(r: ApplyRecord) -> bool:
    """Applied, or rolled back with superseded tags' apply-time versions still held."""
    return r.state in (State.APPLIED, State.PARTLY_ROLLED_BACK, State.PURGING) or (
        r.state == State.ROLLED_BACK and r.superseded > 0
    )
