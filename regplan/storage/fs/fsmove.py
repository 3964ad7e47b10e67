"""Moves on a filesystem: targets renamed into their quarantine slots and back, and
empty folders removed and made again.

Every move is resolved from the root without following links at the moment of the
rename (fsops.move): a folder swapped for a symlink after the checks stops the move,
it is never followed out of the root. A batch's renames are made durable together:
the touched folders are fsynced once the batch is done (group commit).
"""

from __future__ import annotations

import os
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
        self.checked: set[str] = set()
        """Folders seen to be real directories (not links), across calls."""

    def _slot(self, apply_id: str, index: int) -> str:
        return os.fspath(self.storage.state / slot(apply_id, index))

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

    def holds(self, items: Sequence[Item]) -> list[Holds]:
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
            out.append(Holds.OTHER if os.path.lexists(f"{self.v2}/{it.path}") else Holds.NOTHING)
        return out

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        dirs: set[str] = set()
        with confine.OpenDirs(self.storage.root) as root:
            for done, (it, holds) in enumerate(items):
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
