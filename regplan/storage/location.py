"""Where the registry's storage is: a filesystem rootdirectory or an object store
(an S3 bucket, an Azure Blob container, a GCS bucket).

The one place that tells the kinds apart: the scan and the tree digest of each
come out the same (fsscan.py, objscan.py), and each has a store the transaction
runs over (fsstore.py, objstore.py), so the selection, the planner, the plan, its
rendering, its signatures and the transaction never know which one it was. The
object stores share one implementation over the Bucket seam (objects/bucket.py);
each cloud is a package with a ObjectStorage, listed in ``CLOUDS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeAlias, TypeGuard

from regplan.errors import StorageError
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.scan.inventory import Inventory
from regplan.scan.layout import part_of
from regplan.scan.tree import Tree
from regplan.storage.clouds import CLOUDS, parse_root
from regplan.storage.fs import fsscan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import ObjectStorage
from regplan.storage.objects.objstore import BucketStore
from regplan.storage.seam import Store

Location: TypeAlias = FsStorage | ObjectStorage


def locate(found: Path | str | ObjectStorage, env: Mapping[str, str] | None = None) -> Location:
    """An object store's URL or ObjectStorage (from a config), or a filesystem path (the
    rootdirectory or its docker/registry/v2 folder)."""
    if not isinstance(found, (Path, str)):
        return found
    located = parse_root(os.fspath(found), os.environ if env is None else env)
    return FsStorage.locate(located) if isinstance(located, Path) else located


def of_plan(
    root_text: str, record: Mapping[str, str] | None, root: Path | str | ObjectStorage | None
) -> Location:
    """The storage a plan is applied to: ``root`` when given, else where the plan says
    (its ``root``, and for object storage its storage ``record``)."""
    if root is not None:
        return locate(root)
    if record is not None:
        cloud = CLOUDS.get(record.get("driver", ""))
        if cloud is None:
            raise StorageError(f"the plan names storage driver {record.get('driver')!r}")
        return cloud.from_record(record, os.environ)
    return FsStorage.locate(Path(root_text))


def has_folders(storage: Location) -> bool:
    """Whether the storage keeps a folder once it is empty (a bucket does not)."""
    return isinstance(storage, FsStorage)


def is_object_store(storage: Location) -> TypeGuard[ObjectStorage]:
    """Whether the storage is a bucket or container (what a listing of keys describes)."""
    return not isinstance(storage, FsStorage)


def record(storage: Location) -> dict[str, str] | None:
    """What a plan records of where the storage is, besides its ``root`` (``driver``
    first; no secret)."""
    if isinstance(storage, FsStorage):
        return None
    return storage.record()


def read(
    storage: Location,
    *,
    progress: Progress | None = None,
    created: bool = False,
    mtimes: bool = False,
) -> Inventory:
    if isinstance(storage, FsStorage):
        return fsscan.scan(storage, progress=progress, created=created, mtimes=mtimes)
    return objscan.scan(storage, progress=progress, created=created, mtimes=mtimes)


def predicted(storage: Location, tree: Tree, targets: Iterable[str]) -> fingerprint.TreeDigest:
    """The digest the tree must have once ``targets`` (in the order of their parts,
    ``layout.part_of``) are gone: on object storage, the folders they leave empty
    go too (a bucket has no empty folders)."""
    if isinstance(storage, FsStorage):
        return tree.without(targets)
    paths = list(targets)
    return tree.without(sorted(paths + tree.emptied(paths), key=part_of))


def store(storage: Location) -> Store:
    """The write side of the storage: what apply, rollback and purge run over."""
    if isinstance(storage, FsStorage):
        return FsStore(storage)
    return BucketStore(storage)


def digest(storage: Location, progress: Progress | None = None) -> fingerprint.TreeDigest:
    """The tree's digest as it is now, in one streaming walk (no path is kept)."""
    if isinstance(storage, FsStorage):
        return fsscan.digest(storage, progress=progress)
    return objscan.digest(storage, progress=progress)
