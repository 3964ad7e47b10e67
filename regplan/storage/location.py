"""Where the registry's storage is: a filesystem rootdirectory or an S3 bucket.

The one place that tells the kinds apart: the scan and the tree digest of either
come out the same (fsscan.py, s3scan.py), and each has a store the transaction runs
over (fsstore.py, s3store.py), so the selection, the planner, the plan, its
rendering, its signatures and the transaction never know which one it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeAlias

import attrs

from regplan.changes.transaction import Store
from regplan.errors import StalePlanError
from regplan.plans.plan import Plan, StorageRecord
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.scan.inventory import Inventory
from regplan.scan.layout import part_of
from regplan.scan.tree import Tree
from regplan.storage.fs import fsscan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.s3 import bucket, s3scan
from regplan.storage.s3.bucket import S3Storage
from regplan.storage.s3.s3store import S3Store

Location: TypeAlias = FsStorage | S3Storage


def locate(found: Path | str | S3Storage, env: Mapping[str, str] | None = None) -> Location:
    """``s3://BUCKET/ROOTDIRECTORY``, an S3Storage from a config, or a filesystem path
    (the rootdirectory or its docker/registry/v2 folder)."""
    if isinstance(found, S3Storage):
        return found
    text = os.fspath(found)
    if text.startswith(bucket.SCHEME):
        return bucket.parse_url(text, os.environ if env is None else env)
    return FsStorage.locate(Path(text))


def of_plan(header: Plan, root: Path | str | S3Storage | None) -> Location:
    """The storage a plan is applied to: ``root`` when given, else where the plan says."""
    if root is not None:
        return locate(root)
    if header.storage is not None:
        return bucket.from_record(attrs.asdict(header.storage), os.environ)
    return FsStorage.locate(Path(header.root))


def has_folders(storage: Location) -> bool:
    """Whether the storage keeps a folder once it is empty (a bucket does not)."""
    return not isinstance(storage, S3Storage)


def record(storage: Location) -> StorageRecord | None:
    """What a plan records of where the storage is, besides its ``root``."""
    if isinstance(storage, S3Storage):
        return StorageRecord(**storage.record())
    return None


def read(
    storage: Location,
    *,
    progress: Progress | None = None,
    created: bool = False,
    mtimes: bool = False,
) -> Inventory:
    if isinstance(storage, S3Storage):
        return s3scan.scan(storage, progress=progress, created=created, mtimes=mtimes)
    return fsscan.scan(storage, progress=progress, created=created, mtimes=mtimes)


def predicted(storage: Location, tree: Tree, targets: Iterable[str]) -> fingerprint.TreeDigest:
    """The digest the tree must have once ``targets`` (in the order of their parts,
    ``layout.part_of``) are gone: on object storage, the folders they leave empty
    go too (a bucket has no empty folders)."""
    if isinstance(storage, S3Storage):
        paths = list(targets)
        return tree.without(sorted(paths + tree.emptied(paths), key=part_of))
    return tree.without(targets)


def store(storage: Location) -> Store:
    """The write side of the storage: what apply, rollback and purge run over."""
    if isinstance(storage, S3Storage):
        return S3Store(storage)
    return FsStore(storage)


def digest(storage: Location, progress: Progress | None = None) -> fingerprint.TreeDigest:
    """The tree's digest as it is now, in one streaming walk (no path is kept)."""
    if isinstance(storage, S3Storage):
        return s3scan.digest(storage, progress=progress)
    return fsscan.digest(storage, progress=progress)


def check_fresh(plan: Plan, storage: Location, progress: Progress | None = None) -> None:
    """Refuse a plan made against another tree, naming what changed (``plan`` may be a
    header: its lists are not used)."""
    now = digest(storage, progress)
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
