"""Apply, rollback, purge and history, as the commands call them: verify the plan, open
the storage's store (location.store), and run the transaction over it
(transaction.py). Nothing here knows what kind of storage it is."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence, Set
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from regplan.changes import applies, fresh, purging, recheck, transaction, who
from regplan.changes import only as changes_only
from regplan.changes.recheck import Recheck
from regplan.changes.records import Action, ApplyRecord, who_json
from regplan.changes.transaction import ApplyResult, RollbackResult
from regplan.plans import approvals, signing
from regplan.plans.planfile import PlanStream
from regplan.plans.rule import Rule, require
from regplan.progress import Progress
from regplan.storage import location
from regplan.storage.clouds import Found
from regplan.storage.location import Location
from regplan.storage.seam import Store

__all__ = [
    "ApplyResult",
    "RollbackResult",
    "apply_plan",
    "purge",
    "record_json",
    "records",
    "rollback",
]


def records(storage: Location) -> list[ApplyRecord]:
    """Every apply recorded in the storage's state, oldest first."""
    return applies.records(location.store(storage))


def record_json(r: ApplyRecord) -> dict[str, Any]:
    """One apply as ``history --json`` prints it: the transaction's fields, the plan's
    signers by principal and who ran each step."""
    return {**transaction.record_json(r), **who_json(r)}


def apply_plan(
    *,
    plan_path: Path,
    trusted: Sequence[signing.TrustedKey],
    root: Found | None,
    required: int,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Progress | None = None,
    break_lock: bool = False,
    registry: str = "",
    opener: Callable[[Location], Store] = location.store,
    guard: Callable[[Location], str] | None = None,
    exact: bool = False,
    rule: Rule | None = None,
) -> ApplyResult:
    """Verify, then move the plan's targets into quarantine (or finish an interrupted apply).

    The plan is read as a stream: each step takes one pass over its targets and holds
    none of them (only the empty folders to prune). ``opener`` gives the storage's store
    (a caller may wrap it: tests inject faults so). ``guard``, the write guard, runs once
    the plan's file, signatures and approvals are verified and before anything else reads
    the storage; what it returns is recorded as ``registry``. With ``exact``, the tree
    must be the one planned (Terraform's rule); else what still holds moves and the
    rest is skipped (changes/recheck.py). With ``rule`` (an approval rule file), the
    signatures must meet it too (exit 3 naming who signed and who is missing). The
    apply's record names the operator and the plan's signers by principal."""
    with PlanStream(plan_path, snapshot=True) as stream:
        checked, _ = signing.verify_stream(
            stream, trusted, required=required, detached=approvals.beside(stream)
        )
        signed = require(rule, checked, stream.header.plan_id)
        stream.check_items()
        storage = fresh.storage_of(stream.header, root)
        registry = guard(storage) if guard is not None else registry
        return transaction.apply(
            stream,
            opener(storage),
            now=now,
            check_fresh=lambda: fresh.check_fresh(stream.header, storage, scan_progress),
            recheck=None if exact else functools.partial(_recheck, stream, storage, scan_progress),
            progress=progress,
            scan_progress=scan_progress,
            break_lock=break_lock,
            registry=registry,
            by=who.by(Action.APPLY, now, planner=signed.planner, approvers=signed.approvers),
        )


def _recheck(
    stream: PlanStream,
    storage: Location,
    progress: Progress | None,
    decided: Recheck | None,
    started: Set[int],
) -> Recheck:
    return recheck.recheck(stream, storage, progress, resuming=decided, started=started)


def rollback(
    *,
    storage: Location,
    apply_id: str,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Progress | None = None,
    break_lock: bool = False,
    registry: str = "",
    only: Sequence[str] = (),
) -> RollbackResult:
    """Put everything of one apply back (``only``: the images those references name, with
    all they need; the rest stays in the quarantine); refuse (nothing moved) on
    conflicts."""
    store = location.store(storage)
    return transaction.rollback(
        store,
        apply_id,
        now=now,
        progress=progress,
        scan_progress=scan_progress,
        break_lock=break_lock,
        registry=registry,
        only=tuple(only),
        choose=changes_only.chooser(store, apply_id, lambda: location.read(storage).manifests),
        by=who.by(Action.ROLLBACK, now),
    )


def purge(
    *,
    storage: Location,
    apply_id: str | None,
    older_than: timedelta | None,
    now: datetime,
    progress: Progress | None = None,
    include_unverified: bool = False,
    break_lock: bool = False,
) -> list[ApplyRecord]:
    """Delete the quarantine of one apply, or of every applied one older than an age."""
    return purging.purge(
        location.store(storage),
        apply_id=apply_id,
        older_than=older_than,
        now=now,
        progress=progress,
        include_unverified=include_unverified,
        break_lock=break_lock,
        by=who.by(Action.PURGE, now),
    )
