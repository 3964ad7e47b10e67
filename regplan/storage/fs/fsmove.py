"""Moves on a filesystem: targets renamed into numbered quarantine slots, empty folders
pruned, and both put back.

Every move is resolved from the root without following links at the moment of the
rename (fsops.move); a batch is announced in the journal (fsynced), moved, and
the touched directories are fsynced (group commit). Each step is decided by where
each target is (storage or quarantine), so a run killed at any point is finished by
running it again.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import attrs

from regplan import confine
from regplan.changes.transaction import batches
from regplan.errors import ApplyError, StalePlanError
from regplan.plans.plan import Target, TargetKind
from regplan.plans.planfile import PlanStream
from regplan.progress import Progress
from regplan.scan.layout import STATE_DIR, V2
from regplan.storage.fs.fsops import Disk, explain, fsync_dir, fsync_dirs, move, real_dir
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.journal import Journal, Record, read_journal

V2_REL = "/".join(V2)
"""The tree's folder relative to the storage root."""


@attrs.frozen
class Paths:
    """Where one apply keeps its record and its quarantine."""

    storage: FsStorage
    apply_id: str
    record: Path = attrs.field(init=False)
    quarantine: Path = attrs.field(init=False)
    _slots: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        state = self.storage.state
        object.__setattr__(self, "record", state / "applies" / self.apply_id)
        object.__setattr__(self, "quarantine", state / "quarantine" / self.apply_id)
        object.__setattr__(self, "_slots", os.fspath(self.quarantine))

    def slot(self, index: int) -> str:
        """Where target ``index`` of the plan rests in quarantine: flat, so no mkdir per move."""
        return f"{self._slots}/{index:07d}"

    def slot_rel(self, index: int) -> str:
        """``slot`` relative to the storage root (for moves through a confine.OpenDirs)."""
        return f"{STATE_DIR}/quarantine/{self.apply_id}/{index:07d}"

    @property
    def journal(self) -> Path:
        return self.record / "journal"

    @property
    def plan(self) -> Path:
        return self.record / "plan.json"


def _where(v2: str, slot: str, t: Target, checked: set[str]) -> str:
    """'storage', 'quarantine', or an error when it is in both or neither."""
    at_source = real_dir(v2, t.path, checked, file=t.kind.is_file)
    in_quarantine = os.path.lexists(slot)
    if at_source and not in_quarantine:
        return "storage"
    if in_quarantine and not at_source:
        return "quarantine"
    if at_source:
        raise ApplyError(
            f"{t.path} is both in the storage and in the quarantine: something recreated it "
            "during the apply; nothing further was moved"
        )
    raise StalePlanError(f"target {t.path} vanished since planning; nothing further was moved")


def _split(targets: Iterable[Target], pruned: list[Target]) -> Iterator[tuple[int, Target]]:
    """(index in the plan, target) of every target to move; the empty folders to prune
    go to ``pruned`` as they pass (they come last: theirs is the last phase)."""
    for i, t in enumerate(targets):
        if t.kind == TargetKind.EMPTY_DIR:
            pruned.append(t)
        else:
            yield i, t


def move_targets(
    plan: PlanStream,
    paths: Paths,
    journal: Journal,
    progress: Progress | None,
    *,
    resuming: bool,
) -> int:
    """Move what is still in the storage. A fresh apply was just preflighted under the lock;
    a resumed one first finds out, target by target, where each one is.

    Every move is resolved from the root without following links at the moment
    of the rename (fsops.move): a folder swapped for a symlink after the
    preflight stops the apply, it is never followed out of the root."""
    v2, quarantine = os.fspath(paths.storage.v2), os.fspath(paths.quarantine)
    pruned: list[Target] = []
    total = plan.counts["targets"]
    moved = 0
    checked: set[str] = set()
    with confine.OpenDirs(paths.storage.root) as root:
        for start, batch in batches(_split(plan.targets(), pruned)):
            todo = [
                (i, t)
                for i, t in batch
                if not resuming or _where(v2, paths.slot(i), t, checked) == "storage"
            ]
            if todo:
                journal.append({"op": "move", "from": start, "to": start + len(batch)})
                dirs: set[str] = {quarantine}
                for i, t in todo:
                    try:
                        src, slot = f"{V2_REL}/{t.path}", paths.slot_rel(i)
                        move(root, src, root, slot, journal.disk, file=t.kind.is_file)
                    except OSError as e:
                        raise ApplyError(
                            f"could not move {t.path}: {explain(e)}; {moved} moved so far, "
                            "finish with the same apply, or undo with: "
                            f"regplan rollback {paths.apply_id}"
                        ) from None
                    dirs.add(os.path.dirname(f"{v2}/{t.path}"))
                    moved += 1
                fsync_dirs(dirs)
                journal.append({"op": "moved", "to": start + len(batch)})
            if progress is not None:
                progress(start + len(batch), total)
        removed = {r.path for r in read_journal(paths.journal) if r.op == "rmdir"}
        for t in pruned:
            moved += _prune(root, paths.storage.v2, t, journal, removed, paths.apply_id)
    if progress is not None:
        progress(total, total)
    return moved


def _prune(
    root: confine.OpenDirs, v2: Path, t: Target, journal: Journal, removed: set[str], apply_id: str
) -> int:
    """Remove an empty directory tree, journaling each directory's mode first."""
    top = v2 / t.path
    if not real_dir(v2, t.path):
        if t.path in removed:
            return 0
        raise StalePlanError(f"target {t.path} vanished since planning; nothing further was moved")
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(top, topdown=True):
        if filenames:
            raise ApplyError(
                f"{t.path} is no longer empty ({Path(dirpath) / filenames[0]} appeared); "
                f"undo with: regplan rollback {apply_id}"
            )
        rel = Path(dirpath).relative_to(v2).as_posix()
        found.append((rel, os.lstat(dirpath)))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise ApplyError(f"{t.path} holds a symlink; nothing further was moved")
    journal.append(
        *(
            {
                "op": "rmdir",
                "path": rel,
                "mode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
            for rel, st in found
        )
    )
    try:
        for rel, _ in reversed(found):
            fd, name = root.parent(f"{V2_REL}/{rel}")
            os.rmdir(name, dir_fd=fd)
            root.forget(f"{V2_REL}/{rel}")
    except OSError as e:
        raise ApplyError(
            f"could not remove empty folder {t.path}: {explain(e)}; "
            f"finish with the same apply, or undo with: regplan rollback {apply_id}"
        ) from None
    fsync_dir(top.parent)
    return 1


# -- rollback ------------------------------------------------------------------


def in_quarantine(plan: PlanStream, paths: Paths) -> Iterator[tuple[int, Target]]:
    """(index, target) of every moved target whose slot is still taken."""
    for i, t in enumerate(plan.targets()):
        if t.kind != TargetKind.EMPTY_DIR and os.path.lexists(paths.slot(i)):
            yield i, t


def restore(
    storage: FsStorage,
    plan: PlanStream,
    paths: Paths,
    pruned: Sequence[Record],
    back: int,
    progress: Progress | None,
    disk: Disk,
) -> int:
    v2 = os.fspath(storage.v2)
    with Journal(paths.journal, disk) as journal, confine.OpenDirs(storage.root) as root:
        journal.append({"op": "rollback", "restore": back, "recreate": len(pruned)})
        try:
            for r in pruned:  # parents were journaled before their children
                _recreate(root, r)
        except OSError as e:
            raise ApplyError(
                f"could not recreate a pruned folder: {explain(e)}; nothing was moved back, "
                "run the rollback again once fixed"
            ) from None
        restored = 0
        for _, batch in batches(in_quarantine(plan, paths)):
            dirs: set[str] = set()
            for i, t in batch:
                try:
                    dst = f"{V2_REL}/{t.path}"
                    move(root, paths.slot_rel(i), root, dst, disk, file=t.kind.is_file)
                except OSError as e:
                    raise ApplyError(
                        f"could not move {t.path} back: {explain(e)}; {restored} restored so "
                        f"far, run the same rollback again once fixed"
                    ) from None
                dirs.update((os.path.dirname(paths.slot(i)), os.path.dirname(f"{v2}/{t.path}")))
                restored += 1
            fsync_dirs(dirs)
            journal.append({"op": "restored", "count": restored})
            if progress is not None:
                progress(restored, back)
    return restored


def _recreate(root: confine.OpenDirs, r: Record) -> None:
    """Make a pruned folder again with its journaled mode and owner: through descriptors
    reached without following links, so a planted symlink is never chmod'ed or chown'ed."""
    fd = root.dir(f"{V2_REL}/{r.path}", create=True)
    os.fchmod(fd, r.mode)
    if os.geteuid() == 0:
        os.fchown(fd, r.uid, r.gid)


def preflight_destinations(
    storage: FsStorage, plan: PlanStream, paths: Paths, pruned: Sequence[Record]
) -> int:
    """Before anything moves back: no destination's parent is a symlink or a file
    (as apply checks its sources), whatever was planted since the apply, and no
    destination was taken again (a new push?). Returns how many targets go back."""
    checked: set[str] = set()
    v2 = os.fspath(storage.v2)
    moved = ((t.path, True) for _, t in in_quarantine(plan, paths))
    back = 0
    reappeared: list[str] = []
    for rel, is_target in itertools.chain(((r.path, False) for r in pruned), moved):
        parent = rel.rpartition("/")[0]
        try:
            real_dir(storage.v2, parent, checked)
        except StalePlanError as e:
            raise ApplyError(f"cannot roll back to {rel}: {e}; nothing was moved") from None
        if is_target:
            back += 1
            if os.path.lexists(f"{v2}/{rel}"):
                reappeared.append(rel)
    if reappeared:
        raise ApplyError(
            f"cannot roll back {paths.apply_id}: {len(reappeared)} path(s) reappeared since the "
            f"apply (a new push?), first {reappeared[0]}; nothing was moved"
        )
    return back
