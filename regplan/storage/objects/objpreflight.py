"""What an apply or rollback on object storage refuses before anything moves (pure checks over a
plan and the bucket's listings; ``objapply`` runs them under the lock)."""

from __future__ import annotations

from regplan.errors import StalePlanError
from regplan.plans.plan import TargetKind
from regplan.plans.planfile import PlanStream
from regplan.scan.layout import split_repo
from regplan.storage.objects.bucket import Bucket, ObjectStorage


def preflight(plan: PlanStream, bucket: Bucket, storage: ObjectStorage) -> None:
    """Before anything moves, what a validly signed plan may still not do: remove an
    empty folder (a bucket has none: the plan was made for a filesystem), hold a target
    twice or inside another, or remove as a repository a folder that holds another
    repository (a namespace). The filesystem refuses these before it moves anything
    too; unchecked, the bucket was changed and then said to differ from the plan."""
    paths: set[str] = set()
    for t in plan.targets():
        if t.kind == TargetKind.EMPTY_DIR:
            raise StalePlanError(
                f"target {t.path} is an empty folder: object storage has none "
                "(this plan was made for a filesystem)"
            )
        if t.path in paths:
            raise StalePlanError(f"target {t.path} is in the plan twice: not a plan regplan makes")
        paths.add(t.path)
        if t.kind == TargetKind.REPOSITORY:
            refuse_namespace(bucket, f"{storage.v2_prefix}{t.path}/", t.path)
    for path in paths:
        parts = path.split("/")
        if any("/".join(parts[:i]) in paths for i in range(1, len(parts))):
            raise StalePlanError(
                f"target {path} lies inside another target: not a plan regplan makes"
            )


def refuse_namespace(bucket: Bucket, source: str, path: str) -> None:
    """A repository target's keys all belong to that one repository."""
    name = path.removeprefix("repositories/")
    for sub in ("/_manifests", "/_layers", "/_uploads"):
        name = name.removesuffix(sub)
    for o in bucket.objects(source):
        owner = split_repo(f"{path}/{o.rel}")
        if owner is None or owner[0] != name:
            held = owner[0] if owner is not None else o.rel
            raise StalePlanError(
                f"target {path} holds {held}, another repository: a namespace is never "
                "removed as a repository"
            )
