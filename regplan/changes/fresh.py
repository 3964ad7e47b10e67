"""Whether a plan still fits the storage: the tree's digest now against the plan's."""

from __future__ import annotations

from regplan.errors import StalePlanError
from regplan.plans.plan import Plan
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.storage import location
from regplan.storage.clouds import Found
from regplan.storage.location import Location


def check_fresh(plan: Plan, storage: Location, progress: Progress | None = None) -> None:
    """Refuse a plan made against another tree, naming what changed (``plan`` may be a
    header: its lists are not used)."""
    now = location.digest(storage, progress)
    if now.digest == plan.fingerprint.before:
        return
    if now.digest == plan.fingerprint.after and plan.summary.targets:
        raise StalePlanError(
            f"plan {plan.plan_id} was already applied to {storage.root} "
            "(the tree is in the state the plan leaves)"
        )
    raise StalePlanError(
        f"plan {plan.plan_id} is stale: {storage.v2} changed since planning: "
        + fingerprint.describe_changes(
            fingerprint.changed_parts(plan.fingerprint.parts, now.named_parts())
        )
    )


def storage_of(plan: Plan, root: Found | None) -> Location:
    """The storage a plan is applied to: ``root`` when given, else where the plan says."""
    record = plan.storage.flat() if plan.storage is not None else None
    return location.of_plan(plan.root, record, root)
