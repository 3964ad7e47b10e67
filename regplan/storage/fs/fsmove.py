"""Moves on a filesystem: targets renamed into their quarantine slots and back, and
empty folders removed and made again.

Every move is resolved from the root without following links at the moment of the
rename (fsops.move): a folder swapped for a symlink after the checks stops the move,
it is never followed out of the root. A batch's renames are made durable together:
the touched folders are fsynced once the batch is done (group commit).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from regplan import confine
from regplan.errors import StalePlanError, StorageError
from regplan.scan.layout import STATE_DIR, V2
from regplan.storage.fs.fsops import Disk, explain, fsync_dir, fsync_dirs, move, real_dir
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.seam import Folder, Holds, Item, MoveError, Where, slot

V2_REL = "/".join(V2)
"""The tree's folder relative to the storage root."""


class Moves:
    """The renames of one filesystem registry."""

    def __init__(self, storage: FsStorage, disk: Disk) -> None:
        self.storage, self.disk = storage, disk
        self.v2 = os.fspath(storage.v2)
        self.state = os.fspath(storage.state)
        self.checked: set[str] = set()
        """Folders seen to be real directories (not links), across calls."""

    def _slot(self, apply_id: str, index: int) -> str:
        return f"{self.state}/{slot(apply_id, index)}"

    def _slot_rel(self, apply_id: str, index: int) -> str:
        return f"{STATE_DIR}/{slot(apply_id, index)}"

    def check(self, item: Item) -> None:
        if not real_dir(self.v2, item.path, self.checked, file=item.file):
            raise StalePlanError(f"target {item.path} vanished since planning")

    def locate(self, apply_id: str, items: Sequence[Item]) -> list[Where]:
        out = []
        for it in items:
            at_source = real_dir(self.v2, it.path, self.checked, file=it.file)
            in_slot = os.path.lexists(self._slot(apply_id, it.slot))
            out.append(
                (Where.BOTH if in_slot else Where.STORAGE)
                if at_source
                else (Where.QUARANTINE if in_slot else Where.NEITHER)
            )
        return out

    def in_slots(self, apply_id: str, items: Sequence[Item]) -> list[bool]:
        return [os.path.lexists(self._slot(apply_id, it.slot)) for it in items]

    def move_out(self, apply_id: str, items: Sequence[Item]) -> None:
        dirs: set[str] = {os.fspath(self.storage.state / "quarantine" / apply_id)}
        with confine.OpenDirs(self.storage.root) as root:
            for done, it in enumerate(items):
                slot_rel = self._slot_rel(apply_id, it.slot)
                try:
                    move(root, f"{V2_REL}/{it.path}", root, slot_rel, self.disk, file=it.file)
                except OSError as e:
                    raise MoveError(f"could not move {it.path}: {explain(e)}", done) from None
                dirs.add(os.path.dirname(f"{self.v2}/{it.path}"))
        fsync_dirs(dirs)

    def holds(self, apply_id: str, items: Sequence[Item]) -> list[Holds]:
        """A place is refused when its parent is a link or a file (whatever was planted
        since the apply); anything at the place itself is new (a rename is atomic: the
        original cannot be both there and in its slot)."""
        out = []
        for it in items:
            parent = it.path.rpartition("/")[0]
            try:
                real_dir(self.v2, parent, self.checked)
            except StalePlanError as e:
                raise StorageError(f"cannot roll back to {it.path}: {e}") from None
            place = f"{self.v2}/{it.path}"
            if not os.path.lexists(place):
                out.append(Holds.NOTHING)
            else:
                slot_path = self._slot(apply_id, it.slot)
                same = _same(place, slot_path, named=it.path.startswith("blobs/"))
                out.append(Holds.SAME if same else Holds.OTHER)
        return out

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        dirs: set[str] = set()
        with confine.OpenDirs(self.storage.root) as root:
            for done, (it, holds) in enumerate(items):
                if holds == Holds.SAME:  # pushed again, byte for byte: the copy goes
                    _drop(self._slot(apply_id, it.slot))
                    dirs.add(os.path.dirname(self._slot(apply_id, it.slot)))
                    continue
                if holds != Holds.NOTHING:
                    raise MoveError(f"{it.path} is taken again: not moved back", done)
                try:
                    src = self._slot_rel(apply_id, it.slot)
                    move(root, src, root, f"{V2_REL}/{it.path}", self.disk, file=it.file)
                except OSError as e:
                    raise MoveError(f"could not move {it.path} back: {explain(e)}", done) from None
                dirs.update(
                    (
                        os.path.dirname(self._slot(apply_id, it.slot)),
                        os.path.dirname(f"{self.v2}/{it.path}"),
                    )
                )
        fsync_dirs(dirs)

    def empty_folders(self, path: str) -> list[Folder]:
        top = Path(self.v2) / path
        if not real_dir(self.v2, path):
            return []
        found: list[Folder] = []
        for dirpath, dirnames, filenames in os.walk(top, topdown=True):
            if filenames:
                raise StorageError(
                    f"{path} is no longer empty ({Path(dirpath) / filenames[0]} appeared)"
                )
            st = os.lstat(dirpath)
            rel = Path(dirpath).relative_to(self.v2).as_posix()
            found.append(Folder(rel, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
            for d in dirnames:
                if (Path(dirpath) / d).is_symlink():
                    raise StorageError(f"{path} holds a symlink; nothing further was moved")
        return found

    def remove_folders(self, folders: Sequence[Folder]) -> None:
        try:
            with confine.OpenDirs(self.storage.root) as root:
                for f in reversed(folders):
                    fd, name = root.parent(f"{V2_REL}/{f.path}")
                    os.rmdir(name, dir_fd=fd)
                    root.forget(f"{V2_REL}/{f.path}")
            fsync_dir(os.path.dirname(f"{self.v2}/{folders[0].path}"))
        except OSError as e:
            raise StorageError(explain(e)) from None

    def make_folders(self, folders: Sequence[Folder]) -> None:
        """Through descriptors reached without following links, so a planted symlink is
        never chmod'ed or chown'ed."""
        try:
            with confine.OpenDirs(self.storage.root) as root:
                for f in folders:
                    fd = root.dir(f"{V2_REL}/{f.path}", create=True)
                    os.fchmod(fd, f.mode)
                    if os.geteuid() == 0:
                        os.fchown(fd, f.uid, f.gid)
        except OSError as e:
            raise StorageError(explain(e)) from None


SMALL = 1 << 20
"""Files compared byte for byte (links, manifests); a larger one under ``blobs/`` is
named by its digest, so its size is compared."""


def _files(top: str) -> dict[str, os.stat_result] | None:
    """Every file under ``top`` (or ``top`` itself) by relative path; None when a link or
    anything but a file or folder is there."""
    st = os.lstat(top)
    if stat.S_ISREG(st.st_mode):
        return {"": st}
    if not stat.S_ISDIR(st.st_mode):
        return None
    out: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode) or not (
                stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
            ):
                return None
            if stat.S_ISREG(st.st_mode):
                out[os.path.relpath(path, top)] = st
    return out


def _same(place: str, slot: str, *, named: bool) -> bool:
    """Whether ``place`` holds now every file ``slot`` holds, each the same bytes (with
    ``named``, a blob's folder, a large ``data``: the same size, its name being its
    digest): then the slot adds nothing. (A slot a killed rollback emptied in part, or
    left an empty folder of, holds less: it adds nothing either.)"""
    here, there = _files(place), _files(slot)
    if here is None or there is None or not there.keys() <= here.keys():
        return False
    for rel, st in there.items():
        if st.st_size != here[rel].st_size:
            return False
        if st.st_size <= SMALL or not named:
            a, b = (os.path.join(p, rel) if rel else p for p in (place, slot))
            if confine.read_regular(a) != confine.read_regular(b):
                return False
    return True


def _drop(slot: str) -> None:
    """Remove a slot's copy (rmtree follows no symlink)."""
    if stat.S_ISDIR(os.lstat(slot).st_mode):
        shutil.rmtree(slot)
    else:
        os.unlink(slot)
