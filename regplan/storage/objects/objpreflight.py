"""What an apply on object storage refuses before anything moves, besides what every store
refuses (changes/moves.py): a repository target that holds another repository."""

from __future__ import annotations

from regplan.errors import StalePlanError
from regplan.scan.layout import split_repo
from regplan.storage.objects.bucket import Bucket


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
