"""The transaction's store on a filesystem: ``regplan-state/`` beside ``docker/``.

Each apply keeps ``applies/<apply_id>/`` (its state, the verified plan, the
journal) and ``quarantine/<apply_id>/`` (a numbered slot per moved target, and
``INDEX.tsv`` naming each slot's original path for people browsing it). The lock
is an ``flock`` (fslock.py): the kernel drops it with its holder, so it never
needs breaking. State is written without following a planted link, and fsynced.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from regplan import confine
from regplan.changes.records import ApplyRecord
from regplan.changes.transaction import BATCH, INDEX
from regplan.errors import ApplyError, StalePlanError
from regplan.plans.plan import TargetKind
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.scan.layout import STATE_DIR
from regplan.storage.fs import fsmove, fsscan
from regplan.storage.fs.fslock import StorageLock
from regplan.storage.fs.fsmove import Paths
from regplan.storage.fs.fsops import Disk, explain, fsync_dir, real_dir, same_filesystem
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.journal import (
    Journal,
    Record,
    read_journal,
    read_state,
    write_state,
)

log = logging.getLogger(__name__)


class FsStore:
    """A filesystem registry's store (transaction.Store)."""

    def __init__(self, storage: FsStorage, disk: Disk | None = None) -> None:
        self.storage = storage
        self.disk = Disk() if disk is None else disk
        """Every rename and record write goes through it (fsops.Disk)."""

    @property
    def where(self) -> str:
        return str(self.storage.root)

    def lock(self, command: str, break_lock: bool) -> StorageLock:
        del break_lock  # an flock dies with its holder
        return StorageLock(self.storage.state / "lock", command=command)

    def records(self) -> list[ApplyRecord]:
        """Every apply recorded, oldest first (a symlink planted among them is refused,
        never followed)."""
        base = self.storage.state / "applies"
        try:
            if not os.path.lexists(base):
                return []
            confine.real_directory(self.storage.state)
            confine.real_directory(base)
            names = sorted(os.listdir(base))
        except OSError as e:
            raise ApplyError(f"cannot read {base}: {explain(e)}") from None
        found = [
            read_state(base / name) for name in names if os.path.lexists(base / name / "state.json")
        ]
        return sorted(found, key=lambda r: r.seq)

    def load(self, apply_id: str) -> ApplyRecord:
        paths = Paths(self.storage, apply_id)
        if not (paths.record / "state.json").exists():
            known = ", ".join(r.apply_id for r in self.records()) or "none"
            raise ApplyError(f"no apply {apply_id} in {self.storage.state} (applies: {known})")
        return read_state(paths.record)

    def save(self, record: ApplyRecord) -> None:
        write_state(Paths(self.storage, record.apply_id).record, record, self.disk)

    @contextlib.contextmanager
    def began(self, apply_id: str) -> Iterator[PlanStream]:
        """The plan as the apply keeps it (a link or FIFO there is refused)."""
        with PlanStream(Paths(self.storage, apply_id).plan, follow=False) as stream:
            yield stream

    def plan_of(self, apply_id: str) -> Path:
        return Paths(self.storage, apply_id).plan

    def quarantine(self, apply_id: str) -> Path:
        return Paths(self.storage, apply_id).quarantine

    def preflight(self, plan: PlanStream, apply_id: str) -> None:
        _preflight(plan, self.storage, Paths(self.storage, apply_id))

    def begin(self, plan: PlanStream, record: ApplyRecord) -> None:
        _begin(plan, Paths(self.storage, record.apply_id), record, self.disk)

    def move(
        self, plan: PlanStream, apply_id: str, progress: Progress | None, *, resuming: bool
    ) -> int:
        paths = Paths(self.storage, apply_id)
        with Journal(paths.journal, self.disk) as journal:
            return fsmove.move_targets(plan, paths, journal, progress, resuming=resuming)

    def restore(self, plan: PlanStream, record: ApplyRecord) -> FsRestore:
        paths = Paths(self.storage, record.apply_id)
        pruned = [r for r in read_journal(paths.journal) if r.op == "rmdir"]
        back = fsmove.preflight_destinations(self.storage, plan, paths, pruned)
        return FsRestore(self.storage, plan, paths, pruned, back, self.disk)

    def delete_quarantine(self, apply_id: str, progress: Progress | None) -> None:
        top = Paths(self.storage, apply_id).quarantine
        try:
            _delete_quarantine(top, progress)
        except OSError as e:
            raise ApplyError(f"could not delete {top}: {explain(e)}; run the purge again") from None

    def digest(self, progress: Progress | None) -> fingerprint.TreeDigest:
        return fsscan.digest(self.storage, progress=progress)


class FsRestore:
    """A checked rollback: recreate the pruned folders, move the slots back, then remove
    the emptied quarantine."""

    def __init__(
        self,
        storage: FsStorage,
        plan: PlanStream,
        paths: Paths,
        pruned: list[Record],
        back: int,
        disk: Disk,
    ) -> None:
        self.storage, self.plan, self.paths = storage, plan, paths
        self.pruned, self.back, self.disk = pruned, back, disk

    def run(self, progress: Progress | None) -> tuple[int, int]:
        restored = fsmove.restore(
            self.storage, self.plan, self.paths, self.pruned, self.back, progress, self.disk
        )
        (self.paths.quarantine / INDEX).unlink(missing_ok=True)
        _remove_empty_tree(self.paths.quarantine)
        return restored, len(self.pruned)


def _preflight(plan: PlanStream, storage: FsStorage, paths: Paths) -> None:
    """Before anything moves: real directories only, and a quarantine that can take renames."""
    checked: set[str] = set()
    fresh = not os.path.lexists(paths.quarantine)  # then no slot can be taken
    for i, t in enumerate(plan.targets()):
        if not real_dir(storage.v2, t.path, checked, file=t.kind.is_file):
            raise StalePlanError(f"target {t.path} vanished since planning")
        if not fresh and os.path.lexists(paths.slot(i)):
            raise ApplyError(f"quarantine already holds {paths.slot(i)}")
    _state_dir(storage, f"{STATE_DIR}/quarantine/{paths.apply_id}")
    try:
        same_filesystem(storage.v2, paths.quarantine)
    except ApplyError:
        shutil.rmtree(paths.quarantine, ignore_errors=True)
        raise


def _state_dir(storage: FsStorage, rel: str) -> None:
    """Make a folder of regplan-state/ (and its parents) without following a planted link."""
    try:
        with confine.OpenDirs(storage.root) as root:
            root.dir(rel, create=True)
    except OSError as e:
        raise ApplyError(f"cannot create {storage.root / rel}: {explain(e)}") from None


def _write_new(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a new file of the state folder (never through a link), fsynced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "wb") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ApplyError(f"cannot write {path}: {explain(e)}; nothing was moved") from None


def _begin(plan: PlanStream, paths: Paths, record: ApplyRecord, disk: Disk) -> None:
    _state_dir(paths.storage, f"{STATE_DIR}/applies/{paths.apply_id}")
    _write_new(paths.plan, plan.copy())  # the verified bytes, as read
    write_state(paths.record, record, disk)
    fsync_dir(paths.record.parent)
    _write_new(  # line by line: as one string it was 170 MiB at 516,000 targets
        paths.quarantine / INDEX,
        itertools.chain(
            (b"slot\tkind\tpath\n",),
            (
                f"{i:07d}\t{t.kind.value}\t{t.path}\n".encode()
                for i, t in enumerate(plan.targets())
                if t.kind != TargetKind.EMPTY_DIR
            ),
        ),
    )


def _remove_empty_tree(top: Path) -> None:
    """Remove a quarantine that holds only (empty) directories; keep it if a file is left."""
    if not top.exists():
        return
    for dirpath, _, filenames in os.walk(top):
        if filenames:
            log.warning("quarantine %s still holds %s; kept", top, Path(dirpath) / filenames[0])
            return
    shutil.rmtree(top)


# -- purge ---------------------------------------------------------------------


def _delete_quarantine(top: Path, progress: Progress | None) -> None:
    """Delete a quarantine slot by slot (each with rmtree, which follows no symlink),
    reporting (done, total); a quarantine that is not a real directory is refused."""
    try:
        mode = os.lstat(top).st_mode
    except FileNotFoundError:
        return  # a purge interrupted after the delete, run again
    if not stat.S_ISDIR(mode):
        raise ApplyError(f"{top} is not a directory (a symlink?); nothing was deleted")
    names = sorted(os.listdir(top))
    for done, name in enumerate(names, 1):
        path = os.path.join(top, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        if progress is not None and (done % BATCH == 0 or done == len(names)):
            progress(done, len(names))
    os.rmdir(top)
