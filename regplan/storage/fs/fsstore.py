"""The write side of a filesystem registry (seam.Store): ``regplan-state/`` beside ``docker/``.

Records are files under ``regplan-state/``, written without following a planted link
and fsynced (a record replaced by a rename of its fsynced copy); a journal is a file
appended to and fsynced. The lock is an ``flock`` (fslock.py): the kernel drops it
with its holder, so it never needs breaking. The targets' moves are renames
(fsmove.py). Every rename and record write goes through a ``Disk`` (fsops.py), which
tests wrap to inject faults.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from regplan import confine
from regplan.errors import ApplyError, StorageError
from regplan.progress import Progress
from regplan.scan import fingerprint
from regplan.scan.layout import STATE_DIR
from regplan.storage.fs import fsmove, fsscan
from regplan.storage.fs.fslock import StorageLock
from regplan.storage.fs.fsops import Disk, explain, fsync_dir, same_filesystem
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.seam import Folder, Holds, Item, Where

_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _disk_error(what: str, e: OSError) -> ApplyError:
    hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    reason = f"{e.filename}: {e.strerror}" if isinstance(e, confine.NotConfined) else e.strerror
    return ApplyError(f"cannot write {what}: {reason}{hint}")


class FsStore:
    """A filesystem registry's write side (seam.Store)."""

    keeps_folders = True

    def __init__(self, storage: FsStorage, disk: Disk | None = None) -> None:
        self.storage = storage
        self.disk = Disk() if disk is None else disk
        """Every rename and record write goes through it (fsops.Disk)."""
        self.moves = fsmove.Moves(storage, self.disk)

    @property
    def where(self) -> str:
        return str(self.storage.root)

    def lock(self, command: str, break_lock: bool) -> StorageLock:
        del break_lock  # an flock dies with its holder
        return StorageLock(self.storage.state / "lock", command=command)

    def renew(self) -> None:
        """An flock needs no renewing."""

    # -- records -------------------------------------------------------------------

    def url(self, name: str) -> str:
        return os.fspath(self.storage.state / name)  # "": the state folder itself

    def _rel(self, name: str) -> str:
        return f"{STATE_DIR}/{name}"

    def names(self, prefix: str) -> list[str]:
        base = self.storage.state / prefix
        try:
            if not os.path.lexists(base):
                return []
            confine.real_directory(self.storage.state)
            confine.real_directory(base)
            return sorted(os.listdir(base))
        except OSError as e:
            raise ApplyError(f"cannot read {base}: {explain(e)}") from None

    def _open(self, name: str) -> int:
        """A record opened for reading, reached without following a link."""
        with confine.OpenDirs(self.storage.root) as root:
            fd, last = root.parent(self._rel(name))
            out = os.open(last, _FILE_FLAGS, dir_fd=fd)
        if not stat.S_ISREG(os.fstat(out).st_mode):
            mode = os.fstat(out).st_mode
            os.close(out)
            raise confine.NotConfined(
                errno.EINVAL, f"not a regular file ({confine.kind(mode)})", self.url(name)
            )
        return out

    def _opened(self, name: str, what: str = "") -> int:
        """``_open``: FileNotFoundError when there is none, any other failure one line."""
        try:
            return self._open(name)
        except FileNotFoundError:
            raise
        except OSError as e:
            raise ApplyError(f"cannot read {what}{self.url(name)}: {explain(e)}") from None

    def read(self, name: str, limit: int) -> bytes:
        fd = self._opened(name)
        try:
            chunks: list[bytes] = []
            left = limit
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def reader(self, name: str) -> Iterator[IO[bytes]]:
        with os.fdopen(self._opened(name), "rb") as f:
            yield f

    def _folder(self, name: str) -> int:
        """The descriptor of a record's folder, made (without following links) if missing."""
        try:
            with confine.OpenDirs(self.storage.root) as root:
                return os.dup(root.dir(self._rel(name).rpartition("/")[0], create=True))
        except OSError as e:
            raise ApplyError(f"cannot create {self.url(name)}'s folder: {explain(e)}") from None

    def _write_fd(self, fd: int, chunks: Iterable[bytes], *, new: bool = False) -> None:
        """Through the Disk, but a new record's bytes (a copy of the plan, the index: kept
        before anything moves) are written as they are."""
        write = os.write if new else self.disk.write
        for chunk in _joined(chunks):
            view = memoryview(chunk)
            while view:
                view = view[write(fd, view) :]
        os.fsync(fd)

    def write(self, name: str, chunks: Iterable[bytes], *, new: bool = False) -> None:
        folder = self._folder(name)
        last = name.rpartition("/")[2]
        tmp = last if new else f"{last}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if new else os.O_TRUNC)
        try:
            fd = os.open(tmp, flags, 0o644, dir_fd=folder)
            try:
                self._write_fd(fd, chunks, new=new)
            finally:
                os.close(fd)
            if not new:
                os.replace(tmp, last, src_dir_fd=folder, dst_dir_fd=folder)
            os.fsync(folder)
        except OSError as e:
            raise _disk_error(self.url(name), e) from None
        finally:
            os.close(folder)

    def append(self, name: str, data: bytes) -> None:
        folder = self._folder(name)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        try:
            fd = os.open(name.rpartition("/")[2], flags, 0o644, dir_fd=folder)
            try:
                self._write_fd(fd, [data])
            finally:
                os.close(fd)
        except OSError as e:
            raise _disk_error(f"journal {self.url(name)}", e) from None
        finally:
            os.close(folder)

    def lines(self, name: str) -> list[bytes]:
        try:
            fd = self._opened(name, "journal ")
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as f:
            return f.read().splitlines()

    # -- targets -------------------------------------------------------------------

    def check(self, item: Item) -> None:
        self.moves.check(item)

    def prepare(self, apply_id: str) -> None:
        top = self.storage.state / "quarantine" / apply_id
        self._state_dir(f"quarantine/{apply_id}")
        try:
            same_filesystem(self.storage.v2, top)
        except ApplyError:
            shutil.rmtree(top, ignore_errors=True)
            raise

    def _state_dir(self, name: str) -> None:
        """Make a folder of regplan-state/ (and its parents) without following a link."""
        try:
            with confine.OpenDirs(self.storage.root) as root:
                root.dir(self._rel(name), create=True)
        except OSError as e:
            raise ApplyError(f"cannot create {self.url(name)}: {explain(e)}") from None

    def taken(self, apply_id: str) -> str | None:
        top = self.storage.state / "quarantine" / apply_id
        try:
            names = sorted(n for n in os.listdir(top) if n.isdigit())
        except FileNotFoundError:
            return None
        return os.fspath(top / names[0]) if names else None

    def locate(self, apply_id: str, items: Sequence[Item]) -> list[Where]:
        return self.moves.locate(apply_id, items)

    def in_slots(self, apply_id: str, items: Sequence[Item]) -> list[bool]:
        return self.moves.in_slots(apply_id, items)

    def move_out(self, apply_id: str, items: Sequence[Item]) -> None:
        self.moves.move_out(apply_id, items)

    def holds(self, apply_id: str, items: Sequence[Item]) -> list[Holds]:
        return self.moves.holds(apply_id, items)

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        self.moves.move_back(apply_id, items)

    def empty_folders(self, path: str) -> list[Folder]:
        return self.moves.empty_folders(path)

    def remove_folders(self, folders: Sequence[Folder]) -> None:
        self.moves.remove_folders(folders)

    def make_folders(self, folders: Sequence[Folder]) -> None:
        self.moves.make_folders(folders)

    def delete(self, apply_id: str, progress: Progress | None) -> None:
        top = self.storage.state / "quarantine" / apply_id
        try:
            _delete_tree(os.fspath(top), progress)
        except OSError as e:
            raise StorageError(f"could not delete {top}: {explain(e)}") from None

    def digest(self, progress: Progress | None) -> fingerprint.TreeDigest:
        return fsscan.digest(self.storage, progress=progress)


def _joined(chunks: Iterable[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """``chunks`` a MiB at a time (an index of a line per target: one write per MiB)."""
    buffer: list[bytes] = []
    held = 0
    for chunk in chunks:
        buffer.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


def _delete_tree(top: str, progress: Progress | None) -> None:
    """Delete a quarantine entry by entry (each with rmtree, which follows no symlink),
    reporting (done, total); a quarantine that is not a real directory is refused."""
    try:
        mode = os.lstat(top).st_mode
    except FileNotFoundError:
        return  # a purge interrupted after the delete, run again
    if not stat.S_ISDIR(mode):
        raise StorageError(f"{top} is not a directory (a symlink?); nothing was deleted")
    names = sorted(os.listdir(top))
    for done, name in enumerate(names, 1):
        path = os.path.join(top, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        if progress is not None and (done % 512 == 0 or done == len(names)):
            progress(done, len(names))
    os.rmdir(top)
    fsync_dir(os.path.dirname(top))
